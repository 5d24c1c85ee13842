"""Signatures for classes the clustering never saw: their descriptions assigned to an existing property bank.

This is how ProLab reaches classes without training pixels: a class outside the label set (or held out as
*unseen*) is described by the LLM like any other; each of its descriptions joins the property whose centre is
nearest (the rule K-Means itself assigns by, squared Euclidean distance in the embedder's space), and the
class's signature is the set of properties its descriptions joined. The bank, and so a trained model, stays as
it is: nothing is re-clustered or retrained.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..embed import Embedder, EmbeddingCache, make_embedder
from .space import PropertySpace


def nearest_properties(bank: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Index of the nearest bank row (squared Euclidean, as K-Means assigns) for every row of ``x``."""
    bank = np.asarray(bank, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    d = (x * x).sum(1)[:, None] - 2 * x @ bank.T + (bank * bank).sum(1)[None, :]
    return d.argmin(1).astype(np.int64)


def add_classes(space: PropertySpace, descriptions: dict[str, list[str]], embedder: str | Embedder | None = None,
                progress: bool = False) -> PropertySpace:
    """A copy of ``space`` with the classes of ``descriptions`` ({class: [description, ...]}) appended, each
    with the signature its descriptions are assigned to. ``embedder`` must be the one the bank was built with
    (default: the space's own, by its id); the bank and the existing signatures are unchanged, so a model
    trained on ``space`` scores the new classes as they are."""
    clash = [c for c in descriptions if c in space.class_names]
    if clash:
        raise ValueError(f"classes {clash} are already in the space ({space.dataset}); pick other names")
    empty = [c for c, d in descriptions.items() if not d]
    if empty:
        raise ValueError(f"classes without descriptions: {empty}; describe them first (prolab describe)")
    emb = _embedder_for(space, embedder)
    texts = [d for ds in descriptions.values() for d in ds]
    x = EmbeddingCache(emb.embedder_id).encode(emb, texts, progress=progress)
    assigned = nearest_properties(space.bank, x)
    first = space.n_classes
    new_class = np.array([first + i for i, ds in enumerate(descriptions.values()) for _ in ds], dtype=np.int64)
    sig = np.zeros((len(descriptions), space.n_properties), dtype=space.signatures.dtype)
    sig[new_class - first, assigned] = 1
    notes = dict(space.notes)
    notes["assigned_classes"] = list(notes.get("assigned_classes", [])) + list(descriptions)
    return replace(space, signatures=np.concatenate([space.signatures, sig]),
                   class_names=space.class_names + list(descriptions), descriptions=space.descriptions + texts,
                   desc_class=np.concatenate([space.desc_class, new_class]),
                   desc_property=np.concatenate([space.desc_property, assigned]), notes=notes).check()


def _embedder_for(space: PropertySpace, embedder) -> Embedder:
    if isinstance(embedder, Embedder):
        emb = embedder
    else:
        if not embedder and "__" not in space.embedder_id:
            raise ValueError("the space records no embedder id; pass the embedder its bank was built with")
        model_id, variant = space.embedder_id.rsplit("__", 1)
        emb = make_embedder(embedder or model_id, variant.split("-len")[0])
    if space.embedder_id and emb.embedder_id != space.embedder_id:
        raise ValueError(f"the space's bank was built with {space.embedder_id}, not {emb.embedder_id}: "
                         "descriptions must be embedded by the same model to be assigned to it")
    return emb


__all__ = ["nearest_properties", "add_classes"]
