"""A trained property model read through another label set's signatures, with no retraining.

The network predicts property activations; which classes they are read as is only the signature matrix. So a
model trained on one label set is evaluated on another by swapping its signatures for that label set's view of
the same property space (``properties.joint.subset``). The fair baseline for a *coarser* label set, when the
class correspondence is known, is to map the fine prediction to its coarse class (``MappedScores``).
"""
from __future__ import annotations

import copy

import numpy as np
import torch


def with_signatures(model, space):
    """A copy of a property-mode model whose classes are ``space``'s (same bank, other signatures)."""
    if getattr(model, "mode", None) != "property":
        raise ValueError(f"reading a model through other signatures needs a property-mode run, not {model.mode!r}")
    if not model.has_bank(space.bank):
        raise ValueError(f"the space's bank ({space.bank.shape}) is not the one this model was trained with "
                         f"({tuple(model.bank.shape)}): a label set can only be swapped within one property space")
    out = copy.deepcopy(model)
    out.signatures = torch.as_tensor(np.asarray(space.signatures) > 0, dtype=torch.float32,
                                     device=model.signatures.device)
    out.n_classes = space.n_classes
    return out.eval()


class MappedScores(torch.nn.Module):
    """A fine-label model scored on coarse labels through a known class map: a coarse class's score is the
    highest score of its fine classes."""

    def __init__(self, model, fine_names: list[str], coarse_names: list[str], fine_to_coarse: dict[str, str]):
        super().__init__()
        self.model = model
        self.n_classes = len(coarse_names)
        self.groups = [[fine_names.index(f) for f in fine_names if fine_to_coarse[f] == c] for c in coarse_names]
        empty = [c for c, g in zip(coarse_names, self.groups) if not g]
        if empty:
            raise ValueError(f"coarse classes {empty} have no fine class in the map")

    @torch.no_grad()
    def predict_scores(self, images, size=None, **kw):
        s = self.model.predict_scores(images, size=size, **kw)
        return torch.stack([s[:, g].max(1).values for g in self.groups], 1)


__all__ = ["with_signatures", "MappedScores"]
