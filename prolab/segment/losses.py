"""Losses for property-level and category-level supervision. Ignored pixels (255) are excluded from every
mean (the release mapped them to an all-zero target, which dilutes the loss)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = 255
LOSSES = ("cos_sigmoid", "bce", "cos", "ce")


def _valid(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int):
    """(N, channels) logits of the labelled pixels and their labels."""
    if logits.shape[2:] != labels.shape[1:]:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} differ in size; "
                         "upsample the logits to the label size first")
    mask = labels != ignore_index
    return logits.permute(0, 2, 3, 1)[mask], labels[mask]


def property_loss(logits: torch.Tensor, labels: torch.Tensor, signatures: torch.Tensor, temperature: float,
                  kind: str = "cos_sigmoid", ignore_index: int = IGNORE) -> torch.Tensor:
    """Mean over labelled pixels of the per-pixel loss between property logits z (B, K, H, W) and the
    signature y_c of the pixel's class.

    cos_sigmoid: 1 - cos(sigmoid(z/T), y_c)   (ProLab's loss)
    bce:         mean_k BCE(sigmoid(z/T), y_c[k])
    cos:         1 - cos(z, y_c)              (no sigmoid)
    """
    z, lab = _valid(logits, labels, ignore_index)
    if lab.numel() == 0:
        return logits.sum() * 0.0
    if int(lab.max()) >= signatures.shape[0]:
        raise ValueError(f"label {int(lab.max())} has no signature ({signatures.shape[0]} classes)")
    y = signatures.to(z.dtype)[lab]
    if kind == "cos_sigmoid":
        return (1 - F.cosine_similarity(torch.sigmoid(z / temperature), y, dim=1, eps=1e-8)).mean()
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(z / temperature, y)
    if kind == "cos":
        return (1 - F.cosine_similarity(z, y, dim=1, eps=1e-8)).mean()
    raise ValueError(f"unknown property loss {kind!r}; choose one of cos_sigmoid, bce, cos")


def category_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE) -> torch.Tensor:
    """Cross-entropy averaged over labelled pixels."""
    if (labels != ignore_index).sum() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=ignore_index)


def segmentation_loss(out: dict, labels: torch.Tensor, signatures: torch.Tensor | None, temperature: float,
                      kind: str, aux_weight: float = 0.4, ignore_index: int = IGNORE) -> torch.Tensor:
    """Main + weighted auxiliary loss, logits upsampled (bilinear) to the label size."""
    def one(logits):
        logits = F.interpolate(logits, size=labels.shape[1:], mode="bilinear", align_corners=False)
        if out["kind"] == "category":
            return category_loss(logits, labels, ignore_index)
        return property_loss(logits, labels, signatures, temperature, kind, ignore_index)

    loss = one(out["logits"])
    if out.get("aux_logits") is not None and aux_weight:
        loss = loss + aux_weight * one(out["aux_logits"])
    return loss
