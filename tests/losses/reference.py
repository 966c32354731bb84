"""Independent NumPy implementations of the papers' equations, written as loops.

Deliberately naive (float64, explicit sums over indices) so they share no
code or trick with the TensorFlow implementations under test.
"""

import numpy as np
from scipy.special import logsumexp  # log(sum(exp(.))) without overflow for huge distances


def cdist(a, b, metric):
    out = np.zeros((len(a), len(b)))
    for i in range(len(a)):
        for j in range(len(b)):
            d = a[i] - b[j]
            if metric == "euclidean":
                out[i, j] = np.sqrt(np.sum(d * d))
            elif metric == "sqeuclidean":
                out[i, j] = np.sum(d * d)
            elif metric == "cityblock":
                out[i, j] = np.sum(np.abs(d))
            elif metric == "cosine":
                out[i, j] = 1 - a[i] @ b[j] / np.linalg.norm(a[i]) / np.linalg.norm(b[j])
    return out


def hinge(x, margin):
    if margin == "soft":
        return np.log1p(np.exp(x)) if x < 30 else x + np.log1p(np.exp(-x))
    if margin is None:
        return x
    return max(margin + x, 0.0)


def average(terms, nonzero):
    terms = [t for t in terms if t != 0] if nonzero else terms
    return float(np.mean(terms)) if terms else 0.0


def batch_hard(x, y, margin, metric="euclidean", nonzero=False):
    d = cdist(x, x, metric)
    terms = []
    for a in range(len(x)):
        pos = [d[a, p] for p in range(len(x)) if y[p] == y[a] and p != a]
        neg = [d[a, n] for n in range(len(x)) if y[n] != y[a]]
        if pos and neg:
            terms.append(hinge(max(pos) - min(neg), margin))
    return average(terms, nonzero)


def batch_all(x, y, margin, metric="euclidean", nonzero=False):
    d = cdist(x, x, metric)
    terms = []
    for a in range(len(x)):
        for p in range(len(x)):
            if p == a or y[p] != y[a]:
                continue
            for n in range(len(x)):
                if y[n] != y[a]:
                    terms.append(hinge(d[a, p] - d[a, n], margin))
    return average(terms, nonzero)


def lifted(x, y, margin, metric="euclidean", nonzero=False):
    d = cdist(x, x, metric)
    m = 0.0 if margin in ("soft", None) else margin
    outer = "soft" if margin == "soft" else (None if margin is None else 0.0)
    terms = []
    for a in range(len(x)):
        for p in range(a + 1, len(x)):
            if y[p] != y[a]:
                continue
            negs = [n for n in range(len(x)) if y[n] != y[a]]
            if not negs:
                continue
            log_s = logsumexp([m - d[a, n] for n in negs] + [m - d[p, n] for n in negs])
            terms.append(hinge(d[a, p] + log_s, outer))
    return average(terms, nonzero)


def lifted_generalized(x, y, margin, metric="euclidean", nonzero=False):
    d = cdist(x, x, metric)
    m = 0.0 if margin in ("soft", None) else margin
    outer = "soft" if margin == "soft" else (None if margin is None else 0.0)
    terms = []
    for a in range(len(x)):
        pos = [p for p in range(len(x)) if y[p] == y[a] and p != a]
        neg = [n for n in range(len(x)) if y[n] != y[a]]
        if pos and neg:
            t = logsumexp([d[a, p] for p in pos]) + logsumexp([m - d[a, n] for n in neg])
            terms.append(hinge(t, outer))
    return average(terms, nonzero)


def triplet(x, triplets, margin, metric="euclidean", nonzero=False):
    terms = []
    for a, p, n in triplets:
        dap = cdist(x[a:a + 1], x[p:p + 1], metric)[0, 0]
        dan = cdist(x[a:a + 1], x[n:n + 1], metric)[0, 0]
        terms.append(hinge(dap - dan, margin))
    return average(terms, nonzero)
