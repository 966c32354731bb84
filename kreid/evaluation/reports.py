"""Reports: a JSON of all metrics and the figures of the papers.

* CMC curves (several models on one plot),
* a ranked-retrieval grid: each query and its top-10 gallery images with
  green (same identity) or red borders (Hermans et al., Fig. 4),
* a 2-D map of test embeddings (t-SNE via scikit-learn, Fig. 1/5),
* the distractor curve: mAP and rank-1 against gallery size (Fig. 2),
* bars with error bars (a reproduction study's rows, mean and spread over seeds).
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from kreid.evaluation.metrics import ranked_gallery
from kreid_edge.files import atomic_write, write_text


def _save_figure(fig, path: str) -> None:
    with atomic_write(path, mode=None, suffix=os.path.splitext(path)[1] or ".png") as tmp:
        fig.savefig(tmp, dpi=120)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def to_jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def write_json(results: dict, path: str) -> str:
    return write_text(path, json.dumps(to_jsonable(results), indent=2))


def summary_line(res: dict, ranks: Sequence[int] = (1, 5, 10)) -> str:
    cmc = res["cmc"]
    parts = [f"mAP {100 * res['mAP']:.2f}%"]
    parts += [f"rank-{r} {100 * cmc[r - 1]:.2f}%" for r in ranks if r <= len(cmc)]
    if "mINP" in res:
        parts.append(f"mINP {100 * res['mINP']:.2f}%")
    return ", ".join(parts)


def plot_cmc(curves: dict[str, np.ndarray], path: str, max_rank: int = 20) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    for label, cmc in curves.items():
        n = min(max_rank, len(cmc))
        ax.plot(np.arange(1, n + 1), 100 * np.asarray(cmc[:n]), marker="o", ms=3, label=label)
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)
    return path


def _thumb(path: str, size=(128, 64), border=None, width=4):
    import cv2

    img = cv2.imread(path)
    img = np.zeros((*size, 3), np.uint8) if img is None else cv2.resize(img, size[::-1])
    img = img[..., ::-1].copy()
    if border is not None:
        img[:width], img[-width:], img[:, :width], img[:, -width:] = border, border, border, border
    return img


def plot_retrieval(distmat: np.ndarray, q_paths, g_paths, q_pids, g_pids, q_camids, g_camids,
                   path: str, num_queries: int = 8, top: int = 10, seed: int = 0) -> str:
    """Rows: a query (blue border) then its top gallery matches (green = correct, red = wrong)."""
    rng = np.random.default_rng(seed)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    rows = []
    for i in sorted(rng.choice(len(q_pids), min(num_queries, len(q_pids)), replace=False)):
        order = ranked_gallery(distmat[i], q_pids[i], q_camids[i], g_pids, g_camids)[:top]
        tiles = [_thumb(q_paths[i], border=(40, 90, 230))]
        tiles.append(np.full_like(tiles[0][:, :8], 255))
        tiles += [_thumb(g_paths[j], border=(30, 180, 60) if g_pids[j] == q_pids[i]
                         else (220, 40, 40)) for j in order]
        while len(tiles) < top + 2:
            tiles.append(np.full_like(tiles[0], 255))
        rows.append(np.concatenate(tiles, axis=1))
    import cv2

    grid = np.concatenate(rows, axis=0)
    cv2.imwrite(path, grid[..., ::-1])
    return path


def plot_embedding_map(embeddings: np.ndarray, pids: np.ndarray, path: str,
                       max_ids: int = 30, seed: int = 0) -> str:
    """t-SNE of the embeddings of up to ``max_ids`` identities, coloured by identity."""
    plt = _plt()
    rng = np.random.default_rng(seed)
    ids = np.unique(pids[pids > 0])
    ids = rng.choice(ids, min(max_ids, len(ids)), replace=False)
    sel = np.isin(pids, ids)
    x = embeddings[sel]
    try:
        from sklearn.manifold import TSNE

        xy = TSNE(2, perplexity=min(30, max(5, len(x) // 4)), init="pca",
                  random_state=seed).fit_transform(x)
        title = "t-SNE of test embeddings"
    except ImportError:  # scikit-learn is optional: fall back to PCA
        centred = x - x.mean(0)
        xy = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
        title = "PCA of test embeddings (install scikit-learn for t-SNE)"
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(xy[:, 0], xy[:, 1], c=np.searchsorted(np.sort(ids), pids[sel]), cmap="tab20",
               s=12)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)
    return path


def plot_distractor_curve(gallery_sizes: Sequence[int], maps: Sequence[float],
                          rank1s: Sequence[float], path: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(gallery_sizes, 100 * np.asarray(maps), marker="o", label="mAP")
    ax.plot(gallery_sizes, 100 * np.asarray(rank1s), marker="s", label="rank-1")
    ax.set_xscale("log")
    ax.set_xlabel("gallery size (with distractors)")
    ax.set_ylabel("%")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)
    return path


def plot_bars(rows: dict[str, dict], path: str, ylabel: str = "%", title: str = "") -> str:
    """One bar per row: ``{"mean", "std"}`` fractions, drawn in % with the std as error bar."""
    plt = _plt()
    names = list(rows)
    means = 100 * np.array([rows[n]["mean"] for n in names])
    stds = 100 * np.nan_to_num(np.array([rows[n]["std"] for n in names], float))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(names) + 1.5), 4))
    ax.bar(range(len(names)), means, yerr=stds, capsize=4, color="tab:blue", alpha=0.8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)
    return path


def batch_grid(images: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Tile a PK batch into one uint8 image: one row per identity (K images each)."""
    images = np.asarray(images, np.float32)
    lo, hi = images.min(), images.max()
    images = ((images - lo) / max(hi - lo, 1e-6) * 255).astype(np.uint8)
    n, h, w, _ = images.shape
    rows = images.reshape(n // k, k, h, w, 3)
    return rows.transpose(0, 2, 1, 3, 4).reshape(n // k * h, k * w, 3)

