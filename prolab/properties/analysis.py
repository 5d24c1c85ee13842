"""Analyses of property spaces: class similarity, property statistics, 2-D maps, K sweeps, agreement."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from ..progress import tqdm

from .. import defaults
from .clustering import ClusteringDefaults, cluster
from .collisions import find_collisions
from .space import PropertySpace, signatures_from_assignments


def class_similarity(signatures: np.ndarray) -> np.ndarray:
    """Cosine similarity between class signatures (C x C). One-hot labels would give the identity."""
    y = signatures.astype(np.float32)
    y = y / np.clip(np.linalg.norm(y, axis=1, keepdims=True), 1e-12, None)
    return y @ y.T


def most_similar_pairs(space: PropertySpace, top: int = 10) -> pd.DataFrame:
    s = class_similarity(space.signatures)
    iu = np.triu_indices(len(s), 1)
    order = np.argsort(-s[iu])[:top]
    return pd.DataFrame([{"class_a": space.class_names[iu[0][i]], "class_b": space.class_names[iu[1][i]],
                          "cosine": round(float(s[iu][i]), 3),
                          "shared_properties": int((space.signatures[iu[0][i]] & space.signatures[iu[1][i]]).sum())}
                         for i in order])


def property_stats(space: PropertySpace) -> pd.Series:
    per_class = space.signatures.sum(1)
    per_prop = space.signatures.sum(0)
    return pd.Series({
        "classes": space.n_classes, "descriptions": len(space.descriptions), "properties": space.n_properties,
        "properties per class (mean)": round(float(per_class.mean()), 2),
        "properties per class (min-max)": f"{per_class.min()}-{per_class.max()}",
        "classes per property (mean)": round(float(per_prop.mean()), 2),
        "classes per property (min-max)": f"{per_prop.min()}-{per_prop.max()}",
        "colliding class groups": len(find_collisions(space.signatures)),
        "singleton properties": int((per_prop == 1).sum()),
    })


def project_2d(x: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D coordinates of embeddings: PCA (instant) or t-SNE (cosine metric, fixed seed)."""
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(5, (len(x) - 1) // 3)))
        return TSNE(n_components=2, metric="cosine", init="pca", perplexity=perplexity,
                    random_state=seed).fit_transform(x)
    raise ValueError(f"unknown projection {method!r}: use 'pca' or 'tsne'")


def k_sweep(x: np.ndarray, desc_class: np.ndarray, n_classes: int, ks: list[int],
            defaults: ClusteringDefaults = ClusteringDefaults(), progress: bool = True) -> pd.DataFrame:
    """For each K: inertia, silhouette (cosine), colliding class groups, mean properties per class."""
    from sklearn.metrics import silhouette_score

    rows = []
    for k in tqdm(ks, desc="K sweep", disable=not progress):
        if k > len(x):
            continue
        res = cluster(x, k, defaults)
        kk = res.centres.shape[0]
        y = signatures_from_assignments(desc_class, res.labels, n_classes, kk)
        sil = silhouette_score(x, res.labels, metric="cosine") if 1 < kk < len(x) else float("nan")
        rows.append({"n_properties": k, "non-empty": kk, "inertia": round(res.inertia, 3),
                     "silhouette": round(float(sil), 4), "collisions": len(find_collisions(y)),
                     "properties per class": round(float(y.sum(1).mean()), 2),
                     "descriptions per property": round(len(x) / kk, 2)})
    return pd.DataFrame(rows)


def compare_methods(x: np.ndarray, n_properties: int, methods: dict[str, ClusteringDefaults]) -> dict:
    """Cluster the same embeddings with several configurations: {name: Clustering}."""
    return {name: cluster(x, n_properties, d) for name, d in methods.items()}


def hungarian_overlap(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    """Share of items that stay together after matching clusters of A to clusters of B one to one
    (maximum-weight matching on the contingency table)."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics.cluster import contingency_matrix

    m = contingency_matrix(labels_a, labels_b)
    r, c = linear_sum_assignment(-m)
    return float(m[r, c].sum() / len(labels_a))


def agreement(a: PropertySpace | np.ndarray, b: PropertySpace | np.ndarray, name_a: str = "A",
              name_b: str = "B") -> dict:
    """How similar two property spaces are.

    Same descriptions (e.g. K-Means vs GMM, MiniLM vs mpnet): adjusted Rand index and Hungarian-matched overlap
    of the description -> property assignments. Different descriptions (e.g. our descriptors vs imported
    ones): only class-level comparisons apply: the correlation of the two class-similarity matrices and
    the mean Jaccard overlap of matched properties' class sets.
    """
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics import adjusted_rand_score

    out = {"pair": f"{name_a} vs {name_b}"}
    if isinstance(a, np.ndarray):
        return {**out, "ARI": round(float(adjusted_rand_score(a, b)), 4),
                "matched overlap": round(hungarian_overlap(a, b), 4)}
    same = a.descriptions == b.descriptions and (a.desc_property >= 0).all() and (b.desc_property >= 0).all()
    if same:
        out["ARI"] = round(float(adjusted_rand_score(a.desc_property, b.desc_property)), 4)
        out["matched overlap"] = round(hungarian_overlap(a.desc_property, b.desc_property), 4)
    if a.class_names == b.class_names:
        sa, sb = class_similarity(a.signatures), class_similarity(b.signatures)
        iu = np.triu_indices(len(sa), 1)
        out["class-similarity correlation"] = round(float(np.corrcoef(sa[iu], sb[iu])[0, 1]), 4)
        ya, yb = a.signatures.T.astype(bool), b.signatures.T.astype(bool)   # properties x classes
        inter = ya.astype(np.int32) @ yb.T.astype(np.int32)
        union = ya.sum(1)[:, None] + yb.sum(1)[None, :] - inter
        jac = inter / np.clip(union, 1, None)
        r, c = linear_sum_assignment(-jac)
        out["matched property Jaccard"] = round(float(jac[r, c].mean()), 4)
    return out


def methods_for_comparison(seed: int = 0) -> dict[str, ClusteringDefaults]:
    base = ClusteringDefaults(seed=seed)
    return {"kmeans": base, "gmm-spherical": replace(base, method="gmm", covariance_type="spherical"),
            "gmm-diag": replace(base, method="gmm", covariance_type="diag"), "vmf": replace(base, method="vmf")}


def property_table(space: PropertySpace, top: int | None = None) -> pd.DataFrame:
    """One row per property: name, number of member descriptions, the classes that have it."""
    rows = []
    for k in range(space.n_properties):
        members = space.desc_property == k
        classes = [space.class_names[c] for c in np.flatnonzero(space.signatures[:, k])]
        rows.append({"property": k, "name": space.property_names[k], "descriptions": int(members.sum()),
                     "classes": len(classes), "class_names": ", ".join(classes)})
    df = pd.DataFrame(rows).set_index("property")
    return df if top is None else df.sort_values("classes", ascending=False).head(top)


def class_table(space: PropertySpace) -> pd.DataFrame:
    """One row per class: its number of properties and their names."""
    return pd.DataFrame([{"class_name": c, "properties": int(space.signatures[i].sum()),
                          "property_names": " | ".join(space.properties_of(c))}
                         for i, c in enumerate(space.class_names)]).set_index("class_name")


def method_agreement(x: np.ndarray, n_properties: int, seed: int = 0) -> pd.DataFrame:
    """Cluster the same embeddings with K-Means, GMM (spherical, diagonal) and vMF; agreement with K-Means."""
    results = compare_methods(x, n_properties, methods_for_comparison(seed))
    return pd.DataFrame([{**agreement(results["kmeans"].labels, r.labels, "kmeans", name), "empty clusters": r.n_empty}
                         for name, r in results.items()]).set_index("pair")


def agreement_table(dataset: str, space: PropertySpace, descriptor_file=None, embedder: str = defaults.EMBEDDER,
                    embedder_kind: str = defaults.EMBEDDER_KIND, method: str = defaults.METHOD, seed: int = 0,
                    other_methods=("gmm", "vmf"), compare_embedder: str | None = None,
                    compare_descriptor_file=None) -> pd.DataFrame:
    """Agreement of ``space`` with spaces built the same way but for one changed ingredient each:
    the clustering method, the embedder, the descriptor file."""
    from .build import build_property_space

    common = dict(n_properties=space.n_properties, seed=seed, save=False, progress=False)
    rows = [agreement(space, build_property_space(dataset, descriptor_file, embedder, embedder_kind, method=m,
                                                  **common).space, method, m) for m in other_methods]
    if compare_embedder:
        other = build_property_space(dataset, descriptor_file, compare_embedder, method=method, **common).space
        rows.append(agreement(space, other, embedder, compare_embedder))
    if compare_descriptor_file:
        other = build_property_space(dataset, compare_descriptor_file, embedder, embedder_kind, method=method,
                                     **common).space
        rows.append(agreement(space, other, str(space.source.get("descriptor_file", "descriptors")),
                              str(getattr(compare_descriptor_file, "name", compare_descriptor_file))))
    return pd.DataFrame(rows).set_index("pair")
