"""Pseudo-labels: the sparse Jaccard distance, DBSCAN on it, eps, track constraints."""

import numpy as np
import pytest
import scipy.sparse as sp

from kreid.adaptation import cluster as C
from kreid.data.records import Record
from kreid.evaluation.rerank import jaccard_graph, re_ranking_features


def _groups(num_groups=12, per_group=6, dim=32, spread=0.25, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_groups, dim))
    truth = np.repeat(np.arange(num_groups), per_group)
    x = centres[truth] + spread * rng.normal(size=(len(truth), dim))
    perm = rng.permutation(len(truth))
    return x[perm].astype(np.float32), truth[perm]


def _dense(graph):
    d = np.ones(graph.shape, np.float32)
    g = graph.toarray()
    d[g > 0] = g[g > 0]
    return d


def test_jaccard_graph_equals_the_re_ranking_jaccard():
    x, _ = _groups(num_groups=15, per_group=8, spread=0.8, seed=1)
    graph = jaccard_graph(x, k1=20, k2=6, chunk=29)      # several blocks of rows
    assert sp.issparse(graph) and graph.nnz < graph.shape[0] ** 2
    reranked = re_ranking_features(x[:40], x[40:], k1=20, k2=6, lambda_value=0.0)
    np.testing.assert_allclose(_dense(graph)[:40, 40:], np.maximum(reranked, 1e-6), atol=2e-6)
    np.testing.assert_allclose(np.diag(graph.toarray()), 1e-6)      # kept as entries
    cut = jaccard_graph(x, k1=20, k2=6, max_distance=0.5)
    assert cut.data.max() <= 0.5 and cut.nnz < graph.nnz
    small = jaccard_graph(x, k1=20, k2=6, budget=500)      # many groups of rows: the same
    np.testing.assert_allclose(small.toarray(), graph.toarray(), atol=1e-6)
    assert small.nnz == graph.nnz
    near = jaccard_graph(x, k1=20, k2=6, max_neighbors=7)
    assert np.diff(near.indptr).max() == 7
    full = graph.toarray()
    for i in (0, 57, 119):                                  # each row's 7 nearest, kept
        np.testing.assert_allclose(np.sort(near[i].data), np.sort(full[i][full[i] > 0])[:7],
                                   atol=1e-6)


def test_jaccard_graph_refuses_bad_features():
    with pytest.raises(ValueError, match="NaN"):
        jaccard_graph(np.full((10, 4), np.nan, np.float32), k1=3, k2=2)
    with pytest.raises(ValueError, match="more than k1"):
        jaccard_graph(np.zeros((5, 4), np.float32), k1=10, k2=2)


def test_dbscan_on_the_jaccard_distance_recovers_known_groups():
    from sklearn.metrics import adjusted_rand_score

    x, truth = _groups()
    result = C.cluster(x, eps=0.6, min_samples=4, k1=6, k2=2)     # k1 about a group's size
    assert result.num_clusters == 12 and result.num_outliers == 0
    assert adjusted_rand_score(truth, result.labels) == pytest.approx(1.0)
    merged = C.cluster(x, eps=0.6, min_samples=4, k1=30, k2=6)     # k1 5x a group: merged
    assert merged.num_clusters < 12
    auto = C.cluster(x, eps="auto", rho=12 * 15 / (72 * 71 / 2), k1=30, k2=6)
    assert adjusted_rand_score(truth[auto.labels >= 0], auto.labels[auto.labels >= 0]) > 0.95
    g = C.agreement(result.labels, truth)
    assert g["purity"] == pytest.approx(1.0) and g["clustered"] == 1.0
    assert g["clusters_per_identity"] == 1.0


def test_eps_rule_is_the_mean_of_the_smallest_rho_share_of_all_pairs():
    x, _ = _groups(num_groups=6, per_group=5, spread=0.6, seed=3)
    graph = jaccard_graph(x, k1=8, k2=3)
    d = _dense(graph)
    upper = np.sort(d[np.triu_indices(len(d), 1)])
    for rho in (0.01, 0.05, 0.5):
        count = int(round(rho * len(upper)))
        assert C.eps_from_rho(graph, rho) == pytest.approx(upper[:count].mean(), rel=1e-5)


def test_agreement_against_a_hand_count():
    labels = np.array([0, 0, 0, 1, 1, -1])
    truth = np.array([5, 5, 7, 7, 7, 9])
    g = C.agreement(labels, truth)
    assert g["purity"] == pytest.approx(4 / 5) and g["clustered"] == pytest.approx(5 / 6)


def _tracks(layout):
    """records from (camid, trackid, frames) tuples, one record per frame."""
    return [Record(f"/x/{i}_{f}.jpg", -1, cam, trackid=tid, frame=f)
            for i, (cam, tid, frames) in enumerate(layout) for f in frames]


def test_cannot_link_pairs_are_the_same_camera_tracks_overlapping_in_time():
    layout = [(0, 0, [1, 5]), (0, 1, [5, 9]), (0, 2, [10, 12]), (1, 3, [1, 12]),
              (0, 4, [2, 3]), (1, 5, [-1])]
    records = _tracks(layout)
    unit = C.units(records)
    pairs = {tuple(sorted(p)) for p in C.cannot_link(records, unit).tolist()}
    brute = set()
    spans = {t: (min(fr), max(fr), cam) for cam, t, fr in layout if min(fr) >= 0}
    for a in spans:
        for b in spans:
            if a < b and spans[a][2] == spans[b][2] and spans[a][0] <= spans[b][1] \
                    and spans[b][0] <= spans[a][1]:
                brute.add((a, b))
    assert pairs == brute == {(0, 1), (0, 4)}


def test_tracks_are_one_identity_and_overlapping_tracks_are_two():
    rng = np.random.default_rng(0)
    people = rng.normal(size=(6, 16))
    layout, emb = [], []
    for p in range(6):             # person p: track 2p in camera 0, track 2p+1 in camera 1
        for cam in (0, 1):
            frames = list(range(100 * p, 100 * p + 4))
            layout.append((cam, 2 * p + cam, frames))
            emb.extend(people[p] + 0.05 * rng.normal(size=(4, 16)))
    emb = np.array(emb, np.float32)
    emb[0] = rng.normal(size=16) * 5           # a crop of track 0 the model gets wrong
    records = _tracks(layout)
    free = C.cluster(emb, None, eps=0.6, min_samples=2, k1=2, k2=1)
    assert free.labels[0] != free.labels[1]     # without tracks the odd crop strays
    tied = C.cluster(emb, records, eps=0.6, min_samples=2, k1=2, k2=1)
    tracks = np.array([r.trackid for r in records])
    for t in range(12):                          # must-link: one label per track
        assert len(set(tied.labels[tracks == t].tolist())) == 1
    assert tied.num_clusters == 6 and tied.num_outliers == 0

    # a look-alike seen by camera 0 at the same time as person 0: two people
    twin = dict(layout=(0, 12, [0, 1, 2, 3]), emb=people[0] + 0.05 * rng.normal(size=(4, 16)))
    records2 = _tracks(layout + [twin["layout"]])
    emb2 = np.concatenate([emb, twin["emb"].astype(np.float32)])
    tracks2 = np.array([r.trackid for r in records2])
    loose = C.cluster(emb2, [Record(r.path, -1, r.camid, trackid=r.trackid) for r in records2],
                      eps=0.6, min_samples=2, k1=2, k2=1)      # no frames: no constraint
    assert loose.labels[tracks2 == 12][0] == loose.labels[tracks2 == 0][0]
    strict = C.cluster(emb2, records2, eps=0.6, min_samples=2, k1=2, k2=1)
    assert strict.cannot_link_pairs == 1
    assert strict.labels[tracks2 == 12][0] != strict.labels[tracks2 == 0][0]


def test_cluster_refuses_bad_input():
    with pytest.raises(ValueError, match="finite"):
        C.cluster(np.full((8, 4), np.inf, np.float32))
    with pytest.raises(ValueError, match="3 records for 8 embeddings"):
        C.cluster(np.zeros((8, 4), np.float32), [Record("/a", -1, 0)] * 3)
