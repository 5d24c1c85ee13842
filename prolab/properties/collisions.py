"""When property supervision cannot tell classes apart, and what to do about it.

- **Collisions**: classes with identical signatures. ``cos(p, y_a) = cos(p, y_b)`` for every prediction ``p``,
  so they can never be told apart (``find_collisions``, repaired by ``repair_collisions``).
- **Near-collisions**: different but close signatures. A signature that is a subset of another is nearly as
  bad: ``cos(y_a, y_b) = sqrt(|a| / |b|)`` for ``a`` inside ``b``, and a pixel of ``a`` that activates exactly
  its own properties scores almost as high for ``b`` (``near_collisions``: subset, cosine at or above a
  threshold, or Hamming distance 1).
- **Over-shared properties**: a property on most classes says little about any of them, yet it raises the
  cosine between every pair of classes that has it (``overshared_properties``).
- ``separate_signatures`` repairs all three in place: identical signatures made unique, over-shared properties
  split in two by 2-means over their descriptions, near pairs pulled apart by giving the smaller class a
  property (nearest its own descriptions) that the other class lacks.
- ``signature_report`` / ``report_lines``: the one summary of a space's signatures (CLI, notebook 04), with
  unused and singleton properties (``property_usage``).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from .space import PropertySpace

_EPS = 1e-9  # cosines are compared with a tolerance: 4/5 computed through square roots may land just below 0.8


@dataclass(frozen=True)
class NearDefaults:
    cos_threshold: float = 0.8   # a pair at or above this cosine is a near-collision
    max_share: float = 0.5       # a property on at least this share of the classes is over-shared
    max_added: int = 3           # properties one class may gain when pulling near pairs apart
    seed: int = 0                # 2-means of a split (random_state)
    n_init: int = 10             # 2-means restarts: cheap on a handful of descriptions, and stabler


NEAR = NearDefaults()


def find_collisions(signatures: np.ndarray) -> list[list[int]]:
    """Groups (size >= 2) of class indices whose signatures are identical, in class order."""
    groups: dict[bytes, list[int]] = defaultdict(list)
    for c, row in enumerate(np.asarray(signatures, dtype=np.uint8)):
        groups[row.tobytes()].append(c)
    return [g for g in groups.values() if len(g) > 1]


def property_usage(space: PropertySpace) -> dict[str, list[int]]:
    """Properties no class uses, and properties only one class uses."""
    per_prop = space.signatures.sum(0)
    return {"unused": np.flatnonzero(per_prop == 0).tolist(), "singleton": np.flatnonzero(per_prop == 1).tolist()}


def repair_collisions(space: PropertySpace, desc_embeddings: np.ndarray) -> list[dict]:
    """Make every signature unique, in place. In each colliding group the first class keeps its signature;
    each other class gains the property it lacks whose centre is nearest (cosine) to one of its own
    descriptions and that makes its signature unique. Returns one report row per change."""
    x = desc_embeddings / np.clip(np.linalg.norm(desc_embeddings, axis=1, keepdims=True), 1e-12, None)
    bank = space.bank / np.clip(np.linalg.norm(space.bank, axis=1, keepdims=True), 1e-12, None)
    report = []
    for group in find_collisions(space.signatures):
        for c in group[1:]:
            before = space.signatures[c].copy()
            mine = x[space.desc_class == c]
            scores = (mine @ bank.T).max(0) if len(mine) else np.zeros(space.n_properties)
            taken = {row.tobytes() for i, row in enumerate(space.signatures) if i != c}
            for k in np.argsort(-scores):
                if before[k]:
                    continue
                trial = before.copy()
                trial[k] = 1
                if trial.tobytes() not in taken:
                    space.signatures[c] = trial
                    report.append({"class_name": space.class_names[c],
                                   "collided_with": [space.class_names[o] for o in group if o != c],
                                   "added_property": int(k), "property_name": space.property_names[k],
                                   "score": round(float(scores[k]), 4)})
                    break
            else:
                report.append({"class_name": space.class_names[c], "collided_with": [space.class_names[o] for o in group
                                                                                   if o != c],
                               "added_property": None, "property_name": "(no property separates it)",
                               "score": None})
    space.notes["collisions_repaired"] = report
    return report


# -- near-collisions and over-shared properties -------------------------------------------------------------
def _relation(n_a, n_b, shared, cos_threshold):
    """Cosine, Hamming distance, strict-subset flags and the near test from property counts (|a|, |b|,
    |a & b|); works on scalars and on whole matrices, so the pair test and the table agree by construction."""
    n_a, n_b, shared = (np.asarray(v, dtype=np.int64) for v in (n_a, n_b, shared))
    denom = np.sqrt((n_a * n_b).astype(np.float64))
    cos = np.divide(shared, denom, out=np.zeros(np.broadcast(n_a, n_b, shared).shape), where=denom > 0)
    hamming = n_a + n_b - 2 * shared
    # strict and non-empty: an empty signature is a problem of its own, not "nearly" another class
    a_in_b = (shared == n_a) & (n_a < n_b) & (n_a > 0)
    b_in_a = (shared == n_b) & (n_b < n_a) & (n_b > 0)
    near = (hamming > 0) & (a_in_b | b_in_a | (cos >= cos_threshold - _EPS) | (hamming == 1))
    return cos, hamming, a_in_b, b_in_a, near


def _pair_is_near(y: np.ndarray, i: int, j: int, cos_threshold: float) -> bool:
    a, b = y[i].astype(np.int64), y[j].astype(np.int64)
    return bool(_relation(a.sum(), b.sum(), (a & b).sum(), cos_threshold)[4])


def _cosine(y: np.ndarray, i: int, j: int) -> float:
    a, b = y[i].astype(np.int64), y[j].astype(np.int64)
    return round(float(_relation(a.sum(), b.sum(), (a & b).sum(), 1.0)[0]), 4)


def near_collisions(signatures: np.ndarray, class_names: list[str] | None = None,
                    cos_threshold: float = NEAR.cos_threshold) -> list[dict]:
    """Pairs of classes whose signatures differ but barely: one a strict subset of the other, cosine at or
    above ``cos_threshold``, or Hamming distance 1. Identical signatures are collisions, not listed here.
    One row per pair (i < j), highest cosine first."""
    y = np.asarray(signatures, dtype=np.int64)
    sizes = y.sum(1)
    cos, hamming, a_in_b, b_in_a, near = _relation(sizes[:, None], sizes[None, :], y @ y.T, cos_threshold)
    name = (lambda c: class_names[c]) if class_names is not None else int
    rows = []
    for i, j in zip(*np.nonzero(np.triu(near, 1))):
        tests = (("subset", a_in_b[i, j] or b_in_a[i, j]), ("cosine", cos[i, j] >= cos_threshold - _EPS),
                 ("hamming 1", hamming[i, j] == 1))
        reasons = [reason for reason, hit in tests if hit]
        rows.append({"a": name(i), "b": name(j), "i": int(i), "j": int(j), "cosine": round(float(cos[i, j]), 4),
                     "hamming": int(hamming[i, j]),
                     "subset": "a<b" if a_in_b[i, j] else "b<a" if b_in_a[i, j] else None, "reasons": reasons})
    return sorted(rows, key=lambda r: (-r["cosine"], r["i"], r["j"]))  # stable order for equal cosines


def _overshared(n_with, n_classes, max_share):
    return (n_with / max(n_classes, 1) >= max_share - _EPS) & (n_with >= 3)


def overshared_properties(signatures: np.ndarray, max_share: float = NEAR.max_share) -> list[dict]:
    """Properties on at least ``max_share`` of the classes (and on at least 3): they carry little information
    but raise the cosine of every pair of classes that has them. Most widely shared first."""
    y = np.asarray(signatures, dtype=np.int64)
    per_prop = y.sum(0)
    share = per_prop / max(len(y), 1)
    hits = np.flatnonzero(_overshared(per_prop, len(y), max_share))
    rows = [{"property": int(k), "classes": int(per_prop[k]), "share": round(float(share[k]), 4)} for k in hits]
    return sorted(rows, key=lambda r: (-r["classes"], r["property"]))


# -- separating signatures ----------------------------------------------------------------------------------
def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.clip(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12, None)


def _row(action, class_name, other, k, name, detail, before, after) -> dict:
    """One report row; the same keys for every action so that the rows make one table."""
    return {"action": action, "class_name": class_name, "other": other, "property": name, "property_index": k,
            "detail": detail, "cosine_before": before, "cosine_after": after}


def _mean_cosine(y: np.ndarray, classes: np.ndarray) -> float:
    """Mean cosine over the pairs of ``classes`` (how alike a split property made them)."""
    sub = y[classes].astype(np.int64)
    sizes = sub.sum(1)
    cos = _relation(sizes[:, None], sizes[None, :], sub @ sub.T, 1.0)[0]
    upper = np.triu_indices(len(classes), 1)
    return round(float(cos[upper].mean()), 4) if len(upper[0]) else 0.0


def _split_property(space: PropertySpace, x: np.ndarray, k: int, defaults: NearDefaults) -> dict:
    """Split property k in two by 2-means over its descriptions; the new half is appended as property K."""
    from sklearn.cluster import KMeans

    from .names import nearest_member_names

    name = space.property_names[k]
    had = np.flatnonzero(space.signatures[:, k])
    before = _mean_cosine(space.signatures, had)
    idx = np.flatnonzero(space.desc_property == k)
    if len(np.unique(x[idx], axis=0)) < 2:
        return _row("split", None, None, k, name, f"'{name}' not split: fewer than 2 distinct descriptions",
                    before, before)
    km = KMeans(n_clusters=2, n_init=defaults.n_init, random_state=defaults.seed).fit(x[idx])
    half, centres = km.labels_.astype(np.int64), km.cluster_centers_.astype(np.float32)
    if half[0] == 1:  # the half holding k's first description keeps index k: independent of label order
        half, centres = 1 - half, centres[::-1]
    new = space.n_properties
    space.bank = np.vstack([space.bank, centres[1:]]).astype(np.float32)
    space.bank[k] = centres[0]
    space.desc_property = space.desc_property.copy()
    space.desc_property[idx[half == 1]] = new
    # a class keeps k / gets the new property iff one of its descriptions falls in that half
    y = np.hstack([space.signatures, np.zeros((space.n_classes, 1), np.uint8)])
    y[:, k] = 0
    y[space.desc_class[idx[half == 0]], k] = 1
    y[space.desc_class[idx[half == 1]], new] = 1
    # a class that had k without a description in it (added by an earlier repair) follows its nearest half
    for c in had[y[had, k] + y[had, new] == 0]:
        mine = _unit(x[space.desc_class == c])
        y[c, [k, new][int(np.argmax((mine @ _unit(centres).T).max(0)))]] = 1
    space.signatures = y
    space.property_names = list(space.property_names) + [""]
    names = nearest_member_names(space, x)  # both halves named after the description nearest their centre
    space.property_names[k], space.property_names[new] = names[k], names[new]
    side = [", ".join(space.class_names[c] for c in np.flatnonzero(y[:, p])) for p in (k, new)]
    return _row("split", None, None, k, name,
                f"'{name}' ({len(had)} classes) split into '{names[k]}' (property {k}: {side[0]}) and "
                f"'{names[new]}' (property {new}: {side[1]})", before, _mean_cosine(y, had))


def _pull_apart(space, x, bank, i, j, budget, defaults) -> list[dict]:
    """Give the smaller class of a near pair (ties: the later one) properties that both lack, nearest its own
    descriptions first, until the pair is no longer near or its budget is spent."""
    y = space.signatures
    small, big = (j, i) if y[j].sum() <= y[i].sum() else (i, j)
    cname, oname = space.class_names[small], space.class_names[big]
    mine = x[space.desc_class == small]
    scores = (mine @ bank.T).max(0) if len(mine) else np.zeros(space.n_properties)
    rows = []
    while _pair_is_near(y, i, j, defaults.cos_threshold) and budget[small] > 0:
        taken = {row.tobytes() for row in y}
        per_prop = y.sum(0).astype(np.int64)
        pick = None
        for k in np.argsort(-scores, kind="stable"):
            if y[small, k] or y[big, k] or _overshared(per_prop[k] + 1, space.n_classes, defaults.max_share):
                continue  # a property both lack; one that would become over-shared raises every other cosine
            trial = y[small].copy()
            trial[k] = 1
            if trial.tobytes() not in taken:  # never trade a near-collision for a collision
                pick = int(k)
                break
        if pick is None:
            break
        before = _cosine(y, small, big)
        y[small, pick] = 1
        budget[small] -= 1
        rows.append(_row("add", cname, oname, pick, space.property_names[pick],
                         f"{cname} gains '{space.property_names[pick]}' (neither {cname} nor {oname} had it)",
                         before, _cosine(y, small, big)))
    return rows


def separate_signatures(space: PropertySpace, desc_embeddings: np.ndarray,
                        defaults: NearDefaults = NEAR) -> list[dict]:
    """Make signatures unique, split over-shared properties and pull near-collisions apart, in place.

    1. ``repair_collisions``: identical signatures made unique.
    2. Every over-shared property is split by 2-means over the embeddings of its descriptions; the second half
       becomes a new property (K grows by one per split) and each class keeps the halves its descriptions fall in.
    3. For every near pair, the smaller class gains (at most ``max_added`` in all) the property that both
       classes lack (and that would not become over-shared) whose centre is nearest to one of its
       descriptions, until the pair is no longer near.
       Pairs that stay near are reported, never raised.

    Returns report rows (action "unique", "split" or "add"), also stored in ``space.notes["separated"]``.
    Deterministic: the only randomness is the seeded 2-means."""
    x = np.asarray(desc_embeddings, dtype=np.float32)
    if len(x) != len(space.descriptions):
        raise ValueError(f"{len(x)} embeddings for {len(space.descriptions)} descriptions")
    space.signatures = np.array(space.signatures, dtype=np.uint8)  # a writable copy (loaded arrays may not be)
    rows = _unique_rows(space, x)
    for p in overshared_properties(space.signatures, defaults.max_share):
        rows.append(_split_property(space, x, p["property"], defaults))
    xn, bank = _unit(x), _unit(space.bank)
    budget = np.full(space.n_classes, defaults.max_added)
    while True:  # passes until nothing changes: a property added for one pair can make another pair near
        added = [r for n in near_collisions(space.signatures, cos_threshold=defaults.cos_threshold)
                 for r in _pull_apart(space, xn, bank, n["i"], n["j"], budget, defaults)]
        rows += added
        if not added:  # ends: every pass adds at least one property, and the budget is finite
            break
    rows += _stay_near_rows(space, defaults)
    space.check()
    # notes written by the build describe the space before; keep them true
    if "usage" in space.notes:
        space.notes["usage"] = property_usage(space)
    if "collisions_after" in space.notes:
        space.notes["collisions_after"] = [[space.class_names[c] for c in g] for g in find_collisions(space.signatures)]
    space.notes["separated"] = rows
    return rows


def _unique_rows(space: PropertySpace, x: np.ndarray) -> list[dict]:
    """``repair_collisions``, its rows in the report's format."""
    rows = []
    for r in repair_collisions(space, x):
        k, name, other = r["added_property"], r["class_name"], r["collided_with"][0]  # other: kept its signature
        detail = (f"{name} gains '{r['property_name']}' (its signature was identical to {other}'s)" if k is not None
                  else f"{name} stays identical to {other}: no property separates it")
        after = _cosine(space.signatures, space.class_names.index(name), space.class_names.index(other))
        rows.append(_row("unique", name, other, k, None if k is None else r["property_name"], detail, 1.0, after))
    return rows


def _stay_near_rows(space: PropertySpace, defaults: NearDefaults) -> list[dict]:
    """One row per pair still near after the additions (property None): reported, never raised."""
    rows = []
    for n in near_collisions(space.signatures, space.class_names, defaults.cos_threshold):
        later_smaller = space.signatures[n["j"]].sum() <= space.signatures[n["i"]].sum()
        small, other = (n["b"], n["a"]) if later_smaller else (n["a"], n["b"])
        rows.append(_row("add", small, other, None, None,
                         f"{n['a']} and {n['b']} stay near ({', '.join(n['reasons'])}; cosine {n['cosine']}): "
                         f"no property both lack is left, or {small} has gained {defaults.max_added} already",
                         n["cosine"], n["cosine"]))
    return rows


# -- the summary ---------------------------------------------------------------------------------------------
def signature_report(space: PropertySpace, defaults: NearDefaults = NEAR) -> dict:
    """Everything that weakens a space's signatures, in one dict (CLI, notebook 04): colliding groups,
    near-collisions, over-shared, unused and singleton properties (with names)."""
    usage = property_usage(space)
    return {"n_classes": space.n_classes, "n_properties": space.n_properties,
            "collisions": [[space.class_names[c] for c in g] for g in find_collisions(space.signatures)],
            "near": near_collisions(space.signatures, space.class_names, defaults.cos_threshold),
            "overshared": [{**r, "name": space.property_names[r["property"]]}
                           for r in overshared_properties(space.signatures, defaults.max_share)],
            "unused": [{"property": k, "name": space.property_names[k]} for k in usage["unused"]],
            "singleton": [{"property": k, "name": space.property_names[k]} for k in usage["singleton"]]}


def report_lines(report: dict) -> list[str]:
    """Short human-readable lines of a ``signature_report``: "near: fence < building (cosine 0.93)"."""
    lines = [f"collision: {' = '.join(g)}" for g in report["collisions"]]
    for n in report["near"]:
        a, b = (n["b"], n["a"]) if n["subset"] == "b<a" else (n["a"], n["b"])
        rel = "<" if n["subset"] else "~"
        lines.append(f"near: {a} {rel} {b} (cosine {n['cosine']:.2f}, Hamming {n['hamming']})")
    lines += [f"over-shared: property '{o['name']}' on {o['classes']}/{report['n_classes']} classes"
              for o in report["overshared"]]
    if report["unused"]:
        lines.append(f"unused: {len(report['unused'])} of {report['n_properties']} properties")
    if report["singleton"]:
        lines.append(f"singleton: {len(report['singleton'])} of {report['n_properties']} properties on one class")
    if not (report["collisions"] or report["near"] or report["overshared"]):
        lines.insert(0, f"no collisions, near-collisions or over-shared properties among {report['n_classes']} "
                        f"classes and {report['n_properties']} properties")
    return lines
