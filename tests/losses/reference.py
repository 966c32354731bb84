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


def lifted_generalized(x, y, margin, metric="euclidean", nonzero=False, positives="all"):
    """Eq. (7): positives p = 1..K (the anchor included) as printed, or p != a."""
    d = cdist(x, x, metric)
    m = 0.0 if margin in ("soft", None) else margin
    outer = "soft" if margin == "soft" else (None if margin is None else 0.0)
    terms = []
    for a in range(len(x)):
        pos = [p for p in range(len(x)) if y[p] == y[a] and (p != a or positives == "all")]
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


def log_softmax_at(logits, index):
    return logits[index] - logsumexp(logits)


def am_softmax(features, weights, labels, scale, margin):
    """Eq. (2) of Sabri et al. with the theta + m > pi continuation."""
    total, count = 0.0, 0
    for f, y in zip(features, labels):
        cos = np.array([f @ w / np.linalg.norm(f) / np.linalg.norm(w) for w in weights.T])
        cos = np.clip(cos, -1 + 1e-7, 1 - 1e-7)
        logits = scale * cos
        theta = np.arccos(cos[y])
        if margin:
            if theta + margin <= np.pi:
                logits[y] = scale * np.cos(theta + margin)
            else:
                logits[y] = scale * (cos[y] - margin * np.sin(margin))
        total -= log_softmax_at(logits, y)
        count += 1
    return total / count


def ntuplet(x, tuplets, temperature, kind="cosine"):
    losses = []
    for row in tuplets:
        a = x[row[0]]
        sims = []
        for j in row[1:]:
            if kind == "cosine":
                sims.append(a @ x[j] / np.linalg.norm(a) / np.linalg.norm(x[j]))
            else:
                sims.append(-np.linalg.norm(a - x[j]))
        losses.append(-log_softmax_at(np.array(sims) / temperature, 0))
    return float(np.mean(losses))


def _protos(x, y, a):
    classes = sorted(set(y.tolist()), key=lambda c: list(y).index(c))
    out = []
    for c in classes:
        members = [i for i in range(len(x)) if y[i] == c and not (c == y[a] and i == a)]
        out.append(np.mean([x[i] for i in members], axis=0) if members else None)
    return classes, out


def prototypical(x, y, temperature, mapping=None, leave_one_out=False):
    """PN-tuplet / MPN-tuplet (Zhang et al. Eq. 10): each class's prototype averages its
    samples - mapped by phi first when ``mapping`` is given - over all K of them, the
    anchor included (``leave_one_out``: the anchor left out of its own prototype)."""
    refs = np.array([mapping(v) for v in x]) if mapping is not None else x
    classes = sorted(set(y.tolist()))
    losses = []
    for a in range(len(x)):
        protos = []
        for c in classes:
            members = [i for i in range(len(x)) if y[i] == c and not (leave_one_out and i == a)]
            protos.append(np.mean(refs[members], axis=0) if members else None)
        if protos[classes.index(y[a])] is None or len(classes) < 2:
            continue
        sims = np.array([x[a] @ p / np.linalg.norm(x[a]) / np.linalg.norm(p) for p in protos])
        losses.append(-log_softmax_at(sims / temperature, classes.index(y[a])))
    return float(np.mean(losses)) if losses else 0.0


def point_to_set(x, y, margin, set_distance="prototype"):
    terms = []
    for a in range(len(x)):
        classes = sorted(set(y.tolist()))
        own = [i for i in range(len(x)) if y[i] == y[a] and i != a]
        if not own or len(classes) < 2:
            continue

        def dist(members):
            if set_distance == "prototype":
                return np.linalg.norm(x[a] - np.mean([x[i] for i in members], axis=0))
            return np.mean([np.linalg.norm(x[a] - x[i]) for i in members])

        d_neg = min(dist([i for i in range(len(x)) if y[i] == c]) for c in classes if c != y[a])
        terms.append(hinge(dist(own) - d_neg, margin))
    return average(terms, False)


def given_positive(x, y, positive_index, margin, hardest=False):
    d = cdist(x, x, "euclidean")
    terms = []
    for a, p in enumerate(positive_index):
        neg = [d[a, n] for n in range(len(x)) if y[n] != y[a]]
        if p >= 0 and neg:
            d_ap = max(d[a, q] for q in range(len(x)) if q != a and y[q] == y[a]) if hardest \
                else d[a, p]
            terms.append(hinge(d_ap - min(neg), margin))
    return average(terms, False)


def triplet_unified(x, y, temperature, kind="cosine", hard=False):
    """Zhang et al. Eq. 4 with 1/tau: log(1 + exp((S(a,n) - S(a,p)) / tau)), S the cosine
    similarity (or minus the Euclidean distance); every triplet, or per anchor the least
    similar positive and most similar negative."""
    s = (1 - cdist(x, x, "cosine")) if kind == "cosine" else -cdist(x, x, "euclidean")
    terms = []
    for a in range(len(x)):
        pos = [p for p in range(len(x)) if p != a and y[p] == y[a]]
        neg = [n for n in range(len(x)) if y[n] != y[a]]
        if not pos or not neg:
            continue
        pairs = ([(min(pos, key=lambda p: s[a, p]), max(neg, key=lambda n: s[a, n]))] if hard
                 else [(p, n) for p in pos for n in neg])
        terms += [hinge((s[a, n] - s[a, p]) / temperature, "soft") for p, n in pairs]
    return average(terms, False)
