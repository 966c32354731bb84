"""XQDA metric learning (Liao, Hu, Zhu, Li, "Person Re-identification by Local
Maximal Occurrence Representation and Metric Learning", CVPR 2015).

The classic ReID metric learner, and the "ML" of Hermans et al.'s Table 2
baseline "IDE (R) + ML" (Zheng et al.'s IDE features + XQDA). It models the
differences of same-identity pairs (intra-personal, covariance Sigma_I) and of
different-identity pairs (extra-personal, Sigma_E) as zero-mean Gaussians and
learns a subspace W in which their log-likelihood ratio separates them best:

* ``W``: generalised eigenvectors of ``Sigma_E w = lambda Sigma_I w`` with
  ``lambda > 1`` (Liao et al. Eq. 12-13: "the subspace ... maximises
  sigma_E(w) / sigma_I(w)"; their code keeps the eigenvalues above 1),
  ``Sigma_I`` regularised by adding ``reg`` (0.001) to its diagonal;
* ``M = inv(W^T Sigma_I W) - inv(W^T Sigma_E W)``;
* ``d(x, z) = (x - z)^T W M W^T (x - z)``.

Both covariances come from class sums, not from the pairs: for a class of
``n_k`` samples with sum ``s_k`` the ordered pairs' outer products sum to
``2 n_k sum_i x_i x_i^T - 2 s_k s_k^T``; all pairs minus those is the
extra-personal sum. Cost O(N d^2), whatever the number of pairs. kreid uses
every same-identity pair (Liao et al. pair the two camera views of VIPeR);
NumPy only, fitted on training embeddings (:func:`fit`), then a query x
gallery distance like :func:`kreid.evaluation.distances.distance_matrix`.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class XQDA:
    W: np.ndarray            # [d, r] projection
    M: np.ndarray            # [r, r] metric in the projected space
    eigenvalues: np.ndarray  # [r] sigma_E / sigma_I along each kept direction

    def project(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) @ self.W

    def distance(self, query: np.ndarray, gallery: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """[Q, G] XQDA distances (float32), computed in gallery chunks. M is positive
        semi-definite when every kept eigenvalue exceeds 1; values are not clamped, so
        rounding below 0 keeps the ranking."""
        q = self.project(query)
        qm = q @ self.M
        q_sq = np.einsum("ij,ij->i", qm, q)
        out = np.empty((len(q), len(gallery)), np.float32)
        for s in range(0, len(gallery), chunk):
            g = self.project(gallery[s:s + chunk])
            g_sq = np.einsum("ij,jk,ik->i", g, self.M, g)
            out[:, s:s + chunk] = q_sq[:, None] + g_sq[None] - 2 * qm @ g.T
        return out


def pair_covariances(x: np.ndarray, labels: np.ndarray):
    """(Sigma_I, Sigma_E, n_I, n_E): mean outer products of the ordered same-label and
    different-label pair differences."""
    x = np.asarray(x, np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.shape != (len(x),):
        raise ValueError(f"x must be [N, d] with one label per row; got {x.shape} and "
                         f"{labels.shape}")
    x = x - x.mean(0)             # differences ignore the mean; centring keeps the sums exact
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    sums = np.zeros((len(counts), x.shape[1]))
    np.add.at(sums, inverse, x)
    weighted = x * counts[inverse][:, None]              # n_k x_i for x_i in class k
    intra = 2 * (weighted.T @ x) - 2 * (sums.T @ sums)
    total = 2 * len(x) * (x.T @ x) - 2 * np.outer(sums.sum(0), sums.sum(0))
    n_i = int((counts * (counts - 1)).sum())
    n_e = len(x) ** 2 - int((counts ** 2).sum())
    if n_i == 0 or n_e == 0:
        raise ValueError("XQDA needs at least one identity with two samples and two "
                         f"identities; got {len(counts)} identities of at most "
                         f"{counts.max() if len(counts) else 0} samples")
    return intra / n_i, (total - intra) / n_e, n_i, n_e


def fit(x: np.ndarray, labels: np.ndarray, reg: float = 1e-3, dim: int | None = None) -> XQDA:
    """Fit XQDA on features ``x`` [N, d] with identity ``labels`` [N].

    ``dim``: keep at most this many directions (the largest eigenvalues above
    1). ``reg`` is added to Sigma_I's diagonal as in Liao et al. (who fit
    L2-normalised features; it is absolute here, small against the variance of
    kreid's embeddings).
    """
    if not np.isfinite(x).all():
        raise ValueError("XQDA: the training features hold NaN/inf")
    sigma_i, sigma_e, _, _ = pair_covariances(x, labels)
    sigma_i = sigma_i + reg * np.eye(len(sigma_i))
    # Sigma_E w = l Sigma_I w via the Cholesky factor of Sigma_I (symmetric eigenproblem)
    chol = np.linalg.cholesky(sigma_i)
    inv_chol = np.linalg.inv(chol)
    a = inv_chol @ sigma_e @ inv_chol.T
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    above = max(1, int((vals > 1).sum()))          # Liao et al.'s code: at least one
    keep = min(int(dim), above) if dim else above
    w = inv_chol.T @ vecs[:, :keep]               # W^T Sigma_I W = I
    m = np.linalg.inv(w.T @ sigma_i @ w) - np.linalg.inv(w.T @ sigma_e @ w)
    return XQDA(w, (m + m.T) / 2, vals[:keep])
