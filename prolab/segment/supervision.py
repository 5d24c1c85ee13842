"""Supervision as types: what a head's output means and how it is trained, one class per mode.

``property`` (K property logits, cosine or BCE loss on sigmoid(z/T) against the class signatures), ``category``
(C class logits, cross-entropy) and ``name_embedding`` (d-dimensional pixel embeddings, cross-entropy over their
cosine with the class names' sentence embeddings). A fourth mode is one more class here and an entry in
``SUPERVISIONS`` (``SegModel`` projects and scores through it). Each loss is taken at label resolution from the head's quarter-resolution output, exactly
(the fused kernels of ``segment.fused`` avoid materialising the full-resolution map).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..defaults import IGNORE_INDEX as IGNORE
from . import fused
from .losses import category_loss, upsampled_name_embedding_loss


class Supervision:
    """One mode of supervision. The model calls the class methods (``project``: decoder features -> the head's
    output; ``class_scores``: that output -> class scores), with itself for the buffers it holds (bank,
    signatures, class-name bank); an instance, made per batch, computes the loss."""
    kind = ""

    def __init__(self, ignore_index: int = IGNORE):
        self.ignore_index = ignore_index

    @classmethod
    def project(cls, model, x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
        return conv(x)

    @classmethod
    def class_scores(cls, model, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class PropertySupervision(Supervision):
    kind = "property"

    def __init__(self, signatures: torch.Tensor, temperature: float, loss: str, ignore_index: int = IGNORE):
        super().__init__(ignore_index)
        self.signatures, self.temperature, self.loss_kind = signatures, temperature, loss

    @classmethod
    def project(cls, model, x, conv):
        return property_logits(x, conv, model.bank, model.normalize)

    @classmethod
    def class_scores(cls, model, logits):
        return property_class_scores(logits, model.signatures, model.temperature, model.score)

    def loss(self, logits, labels):   # fused on CPU: no full-resolution K-channel map
        return fused.upsampled_property_loss(logits, labels, self.signatures, self.temperature, self.loss_kind,
                                             self.ignore_index)


class CategorySupervision(Supervision):
    kind = "category"

    def loss(self, logits, labels):
        logits = F.interpolate(logits, size=labels.shape[1:], mode="bilinear", align_corners=False)
        return category_loss(logits, labels, self.ignore_index)


class NameEmbeddingSupervision(Supervision):
    kind = "name_embedding"

    def __init__(self, name_bank: torch.Tensor, ignore_index: int = IGNORE):
        super().__init__(ignore_index)
        self.name_bank = name_bank

    @classmethod
    def class_scores(cls, model, logits):   # cosine between the pixel embedding and each class name's
        return torch.einsum("bdhw,cd->bchw", F.normalize(logits, dim=1), model.name_bank)

    def loss(self, logits, labels):   # exact, without the full-resolution d-channel map
        return upsampled_name_embedding_loss(logits, labels, self.name_bank, self.ignore_index)


SUPERVISIONS = {s.kind: s for s in (PropertySupervision, CategorySupervision, NameEmbeddingSupervision)}


def property_logits(x: torch.Tensor, conv: nn.Conv2d, bank: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Property logits z = e . E^T from decoder features x, with e = conv(x) the d-dim pixel embedding and E the
    frozen (K, d) bank. Without L2 normalisation of e, the 1x1 conv and the bank compose into a single K-output
    1x1 conv (weights E.W, bias E.b): the d-dim map is never built."""
    if normalize:
        return torch.einsum("bdhw,kd->bkhw", F.normalize(conv(x), dim=1), bank)
    w = conv.weight.flatten(1)                                   # (d, channels)
    weight = (bank @ w).view(bank.shape[0], -1, 1, 1)
    bias = bank @ conv.bias if conv.bias is not None else None
    return F.conv2d(x, weight, bias)


def property_class_scores(logits: torch.Tensor, signatures: torch.Tensor, temperature: float,
                          score: str = "sigmoid") -> torch.Tensor:
    """s_c = cos(sigmoid(z / T), y_c) for every pixel: (B, K, H, W) logits -> (B, C, H, W). ``score="cos"``:
    s_c = cos(z, y_c), for models trained with the plain cosine loss (the release scores them so)."""
    if score not in ("sigmoid", "cos"):
        raise ValueError(f"score must be 'sigmoid' or 'cos', not {score!r}")
    p = torch.sigmoid(logits / temperature) if score == "sigmoid" else logits
    p = F.normalize(p, dim=1)
    y = F.normalize(signatures.to(p.dtype), dim=1)
    return torch.einsum("bkhw,ck->bchw", p, y)


def supervision_for(kind: str, signatures: torch.Tensor | None = None, temperature: float = 1.0, loss: str = "",
                    name_bank: torch.Tensor | None = None, ignore_index: int = IGNORE) -> Supervision:
    """The supervision of an output of ``kind`` (``out["kind"]``: a property model in its one-hot warm-up
    outputs ``category``)."""
    if kind == "property":
        return PropertySupervision(signatures, temperature, loss, ignore_index)
    if kind == "name_embedding":
        return NameEmbeddingSupervision(name_bank, ignore_index)
    if kind == "category":
        return CategorySupervision(ignore_index)
    raise ValueError(f"supervision {kind!r}: one of {sorted(SUPERVISIONS)}")


def segmentation_loss(out: dict, labels: torch.Tensor, signatures: torch.Tensor | None, temperature: float,
                      kind: str, aux_weight: float = 0.4, ignore_index: int = IGNORE,
                      name_bank: torch.Tensor | None = None) -> torch.Tensor:
    """Main + weighted auxiliary loss at label resolution, each through the output's supervision. ``kind`` names
    the property loss (``cos_sigmoid``, ``cos``, ``bce``)."""
    sup = supervision_for(out["kind"], signatures, temperature, kind, name_bank, ignore_index)
    loss = sup.loss(out["logits"], labels)
    if out.get("aux_logits") is not None and aux_weight:
        loss = loss + aux_weight * sup.loss(out["aux_logits"], labels)
    return loss
