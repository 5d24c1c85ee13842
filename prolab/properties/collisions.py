"""Collisions (classes with identical signatures, which property supervision cannot tell apart) and their repair;
unused and singleton properties."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .space import PropertySpace


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
