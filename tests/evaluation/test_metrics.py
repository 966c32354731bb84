"""Metrics and protocols against the per-query reference loops; re-ranking against the dense one."""

import numpy as np
import pytest

from kreid.evaluation import distances, metrics, protocols, rerank
from kreid.evaluation.embed import EmbeddingSet
from tests.evaluation import reference as ref


def _problem(seed, nq=40, ng=300, ids=30, cams=4, junk=10, distractors=20):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, ids + 1, nq)
    g_pids = np.concatenate([rng.integers(1, ids + 1, ng - junk - distractors),
                             -np.ones(junk, int), np.zeros(distractors, int)])
    q_cams, g_cams = rng.integers(0, cams, nq), rng.integers(0, cams, ng)
    dist = rng.random((nq, ng)).astype(np.float32)
    dist[q_pids[:, None] == g_pids[None]] *= 0.6        # positives somewhat closer
    return dist, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("ap", ["standard", "market"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_reference_loop(seed, ap):
    args = _problem(seed)
    res = metrics.evaluate(*args, max_rank=50, ap=ap, chunk=7)
    m_ap, cmc, inp, valid = ref.eval_market(*args, max_rank=50, ap=ap)
    np.testing.assert_allclose(res["mAP"], m_ap, atol=1e-6)
    np.testing.assert_allclose(res["cmc"], cmc, atol=1e-6)
    np.testing.assert_allclose(res["mINP"], inp, atol=1e-6)
    assert res["num_valid_queries"] == valid
    assert res["num_valid_queries"] + res["num_skipped_queries"] == len(args[1])


def test_hand_checked_ranking_rules():
    # gallery: same id+cam (excluded), junk (ignored), distractor, true match
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    g_pids = np.array([7, -1, 0, 7, 3])
    g_cams = np.array([1, 2, 2, 2, 2])
    res = metrics.evaluate(dist, [7], g_pids, [1], g_cams)
    # valid ranking: distractor (0.3), match (0.4), 3 (0.5): first hit at rank 2
    assert res["cmc"].tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]   # length min(max_rank, G)
    assert res["mAP"] == pytest.approx(0.5) and res["mINP"] == pytest.approx(0.5)
    assert res["num_valid_queries"] == 1
    two = metrics.evaluate(np.vstack([dist, dist]), [7, 9], g_pids, [1, 1], g_cams)
    assert two["num_valid_queries"] == 1 and two["num_skipped_queries"] == 1
    assert two["mAP"] == pytest.approx(0.5)           # the query without a match is skipped
    with pytest.raises(ValueError, match="no query"):
        metrics.evaluate(dist, [9], g_pids, [1], g_cams)


def test_bad_inputs():
    with pytest.raises(ValueError, match="NaN"):
        metrics.evaluate(np.full((1, 2), np.nan), [1], [1, 2], [0], [1, 1])
    with pytest.raises(ValueError, match=r"\(Q, G\)"):
        metrics.evaluate(np.zeros((2, 3)), [1], [1, 2, 3], [0], [1, 1, 1])
    with pytest.raises(ValueError, match="ap"):
        metrics.evaluate(np.zeros((1, 1)), [1], [1], [0], [1], ap="voc")


@pytest.mark.parametrize("metric", distances.METRICS)
def test_chunked_distances(metric):
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(13, 6)), rng.normal(size=(29, 6))
    full = distances.distance_matrix(q, g, metric, chunk=4)
    from scipy.spatial.distance import cdist
    want = cdist(q, g, metric)
    np.testing.assert_allclose(full, want, atol=1e-4)
    parts = np.concatenate([d for _, d in distances.iter_distance_chunks(q, g, metric, 10)], 1)
    np.testing.assert_allclose(parts, full, atol=1e-6)
    with pytest.raises(ValueError, match="NaN"):
        distances.distance_matrix(np.full((1, 6), np.nan), g, metric)


@pytest.mark.parametrize("seed,k1,k2,lam", [(0, 20, 6, 0.3), (1, 5, 1, 0.5), (2, 7, 3, 0.1)])
def test_re_ranking_equals_reference(seed, k1, k2, lam):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, 8))
    q = centres[rng.integers(0, 12, 25)] + 0.5 * rng.normal(size=(25, 8))
    g = centres[rng.integers(0, 12, 90)] + 0.5 * rng.normal(size=(90, 8))
    q_g = distances.distance_matrix(q, g).astype(np.float64)
    q_q = distances.distance_matrix(q, q).astype(np.float64)
    g_g = distances.distance_matrix(g, g).astype(np.float64)
    want = ref.re_ranking_dense(q_g, q_q, g_g, k1, k2, lam)
    got = rerank.re_ranking(q_g, q_q, g_g, k1, k2, lam, chunk=16)
    np.testing.assert_allclose(got, want, atol=2e-3)
    from_features = rerank.re_ranking_features(q, g, k1, k2, lam, chunk=32)
    np.testing.assert_allclose(from_features, want, atol=2e-3)


def _set(emb, pid, cam, track=None):
    n = len(emb)
    return EmbeddingSet(np.asarray(emb, np.float32), np.asarray(pid), np.asarray(cam),
                        np.asarray(track if track is not None else np.full(n, -1)),
                        np.array([""] * n))


def test_multi_query_and_tracklet_pooling():
    q = _set([[0, 0], [0, 2], [5, 5]], [1, 1, 2], [0, 0, 1], [0, 0, 1])
    g = _set([[0, 1.2], [5, 4], [9, 9]], [1, 2, 3], [1, 0, 1], [5, 6, 7])
    res = protocols.multi_query(q, g, pool="avg")
    assert res["num_valid_queries"] == 2 and res["cmc"][0] == 1.0
    pooled, first = protocols.pool_groups(q.embeddings, np.stack([q.pid, q.camid], 1), "max")
    np.testing.assert_array_equal(pooled[0], [0, 2])
    res = protocols.tracklet(q, g)
    assert res["num_valid_queries"] == 2 and res["mAP"] == 1.0
    with pytest.raises(ValueError, match="tracklet id"):
        protocols.tracklet(_set([[0, 0]], [1], [0]), g)


def test_cuhk03_single_gallery_shot():
    args = _problem(4, nq=20, ng=120, ids=10, cams=2, junk=0, distractors=0)
    res = protocols.cuhk03_single_gallery_shot(*args, max_rank=10, repeats=10)
    full = metrics.evaluate(*args, max_rank=10)
    assert res["cmc"].shape == (10,) and (np.diff(res["cmc"]) >= 0).all()
    assert res["cmc"][0] >= full["cmc"][0] - 1e-9       # fewer distractors: rank-1 no worse
    assert res["mAP"] == full["mAP"]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_large_gallery_equals_full_evaluation(metric):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(20, 16))
    q_pids = rng.integers(1, 21, 30)
    g_pids = np.concatenate([rng.integers(1, 21, 400), np.zeros(300, int), -np.ones(20, int)])
    q = centres[q_pids - 1] + 0.8 * rng.normal(size=(30, 16))
    g = np.where(g_pids[:, None] > 0, centres[np.maximum(g_pids, 1) - 1], 0) + \
        0.8 * rng.normal(size=(720, 16))
    q_cams, g_cams = rng.integers(0, 3, 30), rng.integers(0, 3, 720)
    q_pids[0] = 99                                          # a query without any match
    from kreid.evaluation.large_gallery import evaluate_large
    got = evaluate_large(q, q_pids, q_cams, g, g_pids, g_cams, metric, max_rank=20,
                         query_chunk=7, gallery_chunk=64)
    want = metrics.evaluate(distances.distance_matrix(q, g, metric), q_pids, g_pids, q_cams,
                            g_cams, max_rank=20)
    for key in ("mAP", "mINP", "num_valid_queries", "num_skipped_queries"):
        np.testing.assert_allclose(got[key], want[key], atol=1e-6)
    np.testing.assert_allclose(got["cmc"], want["cmc"], atol=1e-6)


def test_ties_count_against_the_model():
    """One embedding for every image (a collapsed model): every distance ties, and every
    true match ranks after every valid negative, in the full, large-gallery and SGS
    protocols alike; AP written out by hand for that ranking."""
    from kreid.evaluation.large_gallery import evaluate_large

    q_pids, g_pids = np.array([1, 2, 3]), np.array([1, 1, 2, 3, 3, 3, 4, 0, -1])
    q_cams, g_cams = np.zeros(3, int), np.ones(9, int)
    g_cams[1] = 0                          # a same-camera match of query 1: removed
    q, g = np.ones((3, 4)), np.ones((9, 4))
    dist = distances.distance_matrix(q, g, "euclidean")
    assert np.ptp(dist) == 0
    res = metrics.evaluate(dist, q_pids, g_pids, q_cams, g_cams, max_rank=8)
    valid = 8                               # 9 minus the junk image (pid -1)
    aps = []
    for pid in q_pids:
        k = int(((g_pids == pid) & (g_cams != 0)).sum())
        ranks = (valid - (1 if pid == 1 else 0)) - k + np.arange(k)   # after the negatives
        aps.append(np.mean((np.arange(k) + 1) / (ranks + 1)))
    assert res["mAP"] == pytest.approx(np.mean(aps))
    assert res["cmc"][0] == 0.0
    large = evaluate_large(q, q_pids, q_cams, g, g_pids, g_cams, max_rank=8)
    assert large["mAP"] == pytest.approx(res["mAP"]) and large["cmc"][0] == 0.0
    sgs = protocols.cuhk03_single_gallery_shot(dist, q_pids, g_pids, q_cams, g_cams,
                                               max_rank=4, repeats=3)
    assert sgs["cmc"][0] == 0.0
    # a negative strictly farther than a match still ranks after it
    dist2 = dist.copy()
    dist2[0, 0] = -1.0
    assert metrics.evaluate(dist2, q_pids, g_pids, q_cams, g_cams, max_rank=8)["cmc"][0] > 0
