"""A study's results: per-arm statistics over seeds, the claims' verdicts, the table
(``table.md``, ``summary.json``) and the figures (``bars.png``; ``distractors.png``).

Verdicts are mechanical, from the per-seed values of the metric the claim
names: *reproduced* when the claimed-better arm's mean is higher by more than
the larger of the two arms' seed spreads (sample standard deviation),
*not reproduced* when it is lower by more than that, and *not measurable at
this scale* when the difference is inside the spread (or only one seed ran).
"""

from __future__ import annotations

import json
import os

import numpy as np

from kreid.reproduction.studies import Study


def run_dir(out_dir: str, study: str, arm: str, seed: int) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in arm)
    return os.path.join(out_dir, study, safe, f"seed{seed}")


def _rows(result: dict) -> dict[str, dict]:
    """Every (row name -> metrics) one run contributes to its study's table."""
    arm = result["arm"]
    rows = {arm: result["main"]}
    for mode, metrics in result.get("tta", {}).items():
        rows[f"{arm} {mode}"] = metrics
    if "xqda" in result:
        rows[f"{arm} xqda"] = result["xqda"]
    return rows


def verdict(better: list[float], worse: list[float]) -> tuple[str, float, float]:
    """(verdict, mean difference, spread) for the claim ``better > worse``."""
    if len(better) < 2 or len(worse) < 2:
        return "not measurable (fewer than two seeds)", float("nan"), float("nan")
    diff = float(np.mean(better) - np.mean(worse))
    spread = float(max(np.std(better, ddof=1), np.std(worse, ddof=1)))
    if abs(diff) <= spread:
        return "not measurable at this scale (inside the seed spread)", diff, spread
    return ("reproduced" if diff > 0 else "not reproduced"), diff, spread


def summarise(study: Study, out_dir: str, seeds) -> dict:
    values: dict[str, dict[str, list[float]]] = {}
    distractors: dict[int, list[dict]] = {}
    for arm in (a for a in study.arms if a.trained):
        for seed in seeds:
            path = os.path.join(run_dir(out_dir, study.name, arm.name, seed), "result.json")
            if not os.path.exists(path):
                continue
            with open(path) as f:
                result = json.load(f)
            for row, metrics in _rows(result).items():
                for key, v in metrics.items():
                    if key in ("mAP", "rank1", "sgs_rank1"):
                        values.setdefault(row, {}).setdefault(key, []).append(float(v))
            if "distractors" in result:
                distractors[seed] = result["distractors"]
    rows = {row: {k: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1))
                      if len(v) > 1 else float("nan"), "values": v}
                  for k, v in metrics.items()} for row, metrics in values.items()}
    claims = []
    for claim in study.claims:
        a = values.get(claim.better, {}).get(claim.metric, [])
        b = values.get(claim.worse, {}).get(claim.metric, [])
        text, diff, spread = verdict(a, b) if a and b else ("not run", float("nan"),
                                                             float("nan"))
        claims.append(dict(better=claim.better, worse=claim.worse, paper=claim.text,
                           metric=claim.metric, difference=diff, spread=spread, verdict=text))
    curve = {}
    if distractors:
        per_seed = list(distractors.values())
        curve = {"gallery": [r["gallery"] for r in per_seed[0]]}
        for key in ("mAP", "rank1"):
            arr = np.array([[r[key] for r in rows_] for rows_ in per_seed])
            curve[key] = arr.mean(0).tolist()
            curve[f"{key}_std"] = (arr.std(0, ddof=1) if len(arr) > 1
                                   else np.zeros(arr.shape[1])).tolist()
    return {"study": study.name, "source": study.source, "setup": study.setup,
            "seeds": list(seeds), "rows": rows, "claims": claims, "distractors": curve,
            "paper": {a.name: a.paper for a in study.arms if a.paper}}


def _pct(stat: dict | None) -> str:
    if not stat:
        return "-"
    if np.isnan(stat["std"]):
        return f"{100 * stat['mean']:.1f}"
    return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"


def markdown(summary: dict) -> str:
    keys = [k for k in ("mAP", "rank1", "sgs_rank1")
            if any(k in m for m in summary["rows"].values())]
    names = {"mAP": "mAP %", "rank1": "rank-1 %", "sgs_rank1": "SGS rank-1 %"}
    lines = [f"### {summary['study']}: {summary['source']}", "",
             f"Setup: {summary['setup']}. Seeds {summary['seeds']}; mean ± sample std.", "",
             "| row | " + " | ".join(names[k] for k in keys) + " | paper (as the "
             "title says) |", "|---" * (len(keys) + 2) + "|"]
    for row, metrics in summary["rows"].items():
        lines.append(f"| {row} | " + " | ".join(_pct(metrics.get(k)) for k in keys)
                     + f" | {summary['paper'].get(row, '')} |")
    if summary["claims"]:
        lines += ["", "| claim (paper) | better | worse | metric | difference (pts) | "
                  "spread (pts) | verdict |", "|---|---|---|---|---|---|---|"]
        for c in summary["claims"]:
            lines.append(f"| {c['paper']} | {c['better']} | {c['worse']} | {c['metric']} | "
                         f"{100 * c['difference']:+.1f} | {100 * c['spread']:.1f} | "
                         f"{c['verdict']} |")
    if summary["distractors"]:
        d = summary["distractors"]
        lines += ["", "| gallery size | mAP % | rank-1 % |", "|---|---|---|"]
        for i, size in enumerate(d["gallery"]):
            lines.append(f"| {size} | {100 * d['mAP'][i]:.1f} ± {100 * d['mAP_std'][i]:.1f} "
                         f"| {100 * d['rank1'][i]:.1f} ± {100 * d['rank1_std'][i]:.1f} |")
    return "\n".join(lines) + "\n"


def write_outputs(study: Study, summary: dict, folder: str) -> dict:
    from kreid.evaluation import reports
    from kreid_edge.files import write_text

    os.makedirs(folder, exist_ok=True)
    files = {"json": reports.write_json(summary, os.path.join(folder, "summary.json")),
             "table": write_text(os.path.join(folder, "table.md"), markdown(summary))}
    if summary["rows"]:
        key = "sgs_rank1" if any("sgs_rank1" in m for m in summary["rows"].values()) else "mAP"
        files["bars"] = reports.plot_bars(
            {row: m[key] for row, m in summary["rows"].items() if key in m},
            os.path.join(folder, "bars.png"), ylabel=f"{key} % (mean ± std over seeds)",
            title=summary["source"])
    if summary["distractors"]:
        d = summary["distractors"]
        files["curve"] = reports.plot_distractor_curve(
            d["gallery"], d["mAP"], d["rank1"], os.path.join(folder, "distractors.png"))
    return files
