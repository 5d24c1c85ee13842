"""Clustering description embeddings into properties: one interface, three methods.

- ``kmeans``: scikit-learn KMeans as in the ProLab release (random_state 0). The release passed
  ``n_init="auto"``, which for k-means++ means a single run; we pass ``n_init=1`` explicitly.
- ``gmm``: GaussianMixture with spherical or diagonal covariance, k-means initialisation and ``reg_covar``
  (full covariance cannot be estimated from about 6 points per component in hundreds of dimensions).
- ``vmf``: a spherical (von Mises-Fisher-like) mixture fitted by a few EM steps, as PGSeg computes its
  prototypes: E-step softmax(kappa * x . mu), M-step mu = normalise(sum of responsibility-weighted x).

Every method returns hard assignments, centres and soft responsibilities. Clusters left empty (possible for
gmm and vmf) are dropped and the remaining ones renumbered; ``n_empty`` reports how many.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..defaults import METHOD, METHODS


@dataclass(frozen=True)
class ClusteringDefaults:
    method: str = METHOD
    seed: int = 0
    n_init: int = 1              # k-means restarts (the release's n_init="auto" = 1 for k-means++)
    max_iter: int = 300
    covariance_type: str = "spherical"   # gmm: spherical or diag
    reg_covar: float = 1e-4      # gmm: added to variances; embeddings have unit norm, tiny variances
    kappa: float = 50.0          # vmf: concentration; below ~50 some of K clusters stay empty
    vmf_iters: int = 10          # vmf: EM iterations (PGSeg uses a handful)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Clustering:
    labels: np.ndarray            # (n,) int, property index of each description
    centres: np.ndarray           # (K, d) float32
    responsibilities: np.ndarray  # (n, K) float32, rows sum to 1
    n_requested: int
    n_empty: int
    inertia: float                # sum of squared distances to the assigned centre


def _drop_empty(labels, centres, resp, k):
    used = np.unique(labels)
    n_empty = k - len(used)
    if n_empty == 0:
        return labels, centres, resp, 0
    remap = -np.ones(k, dtype=np.int64)
    remap[used] = np.arange(len(used))
    resp = resp[:, used]
    resp = resp / np.clip(resp.sum(1, keepdims=True), 1e-12, None)
    return remap[labels], centres[used], resp, n_empty


def _kmeans(x, k, d: ClusteringDefaults):
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, random_state=d.seed, n_init=d.n_init, max_iter=d.max_iter).fit(x)
    labels = km.labels_.astype(np.int64)
    resp = np.zeros((len(x), k), np.float32)
    resp[np.arange(len(x)), labels] = 1.0
    return labels, km.cluster_centers_.astype(np.float32), resp


def _gmm(x, k, d: ClusteringDefaults):
    from sklearn.mixture import GaussianMixture

    if d.covariance_type not in ("spherical", "diag"):
        raise ValueError(f"gmm covariance_type {d.covariance_type!r}: use 'spherical' or 'diag' (full covariance "
                         "cannot be estimated from a handful of descriptions per property)")
    gm = GaussianMixture(n_components=k, covariance_type=d.covariance_type, reg_covar=d.reg_covar,
                         init_params="kmeans", random_state=d.seed, n_init=d.n_init, max_iter=d.max_iter).fit(x)
    resp = gm.predict_proba(x).astype(np.float32)
    return resp.argmax(1).astype(np.int64), gm.means_.astype(np.float32), resp


def _vmf(x, k, d: ClusteringDefaults):
    rng = np.random.default_rng(d.seed)
    xn = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
    mu = rng.standard_normal((k, x.shape[1])).astype(np.float64)
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    for _ in range(d.vmf_iters):
        logits = d.kappa * (xn @ mu.T)
        logits -= logits.max(1, keepdims=True)
        resp = np.exp(logits)
        resp /= resp.sum(1, keepdims=True)
        new = resp.T @ xn
        norms = np.linalg.norm(new, axis=1, keepdims=True)
        alive = norms[:, 0] > 1e-8       # a prototype that attracts no mass keeps its previous direction
        mu[alive] = new[alive] / norms[alive]
    logits = d.kappa * (xn @ mu.T)  # a last E-step, so labels and responsibilities match the returned centres
    logits -= logits.max(1, keepdims=True)
    resp = np.exp(logits)
    resp /= resp.sum(1, keepdims=True)
    return resp.argmax(1).astype(np.int64), mu.astype(np.float32), resp.astype(np.float32)


_METHODS = {"kmeans": _kmeans, "gmm": _gmm, "vmf": _vmf}


def cluster(x: np.ndarray, n_properties: int, defaults: ClusteringDefaults = ClusteringDefaults()) -> Clustering:
    """Group the rows of ``x`` (one per description) into ``n_properties`` clusters."""
    if defaults.method not in _METHODS:
        raise ValueError(f"unknown clustering method {defaults.method!r}; choose one of {', '.join(METHODS)}")
    x = np.asarray(x, dtype=np.float32)
    if not 1 <= n_properties <= len(x):
        raise ValueError(f"n_properties={n_properties} must be between 1 and the number of descriptions ({len(x)})")
    labels, centres, resp = _METHODS[defaults.method](x, n_properties, defaults)
    labels, centres, resp, n_empty = _drop_empty(labels, centres, resp, n_properties)
    inertia = float(((x - centres[labels]) ** 2).sum())
    return Clustering(labels, centres, resp, n_properties, n_empty, inertia)
