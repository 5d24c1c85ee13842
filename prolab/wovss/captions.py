"""Captions from image-level labels, and the contrastive loss they need.

PGSeg and GroupViT learn from image-text pairs. The kit's datasets have label maps instead, so a training caption
is built from the classes an image shows: every class covering at least ``min_share`` of the labelled pixels,
largest first, put into a template ("a photo of road, sky and tree."). Unseen classes (the kit's held-out split)
are never named in training. Two images showing the same classes get captions that say the same thing, so the
plain InfoNCE loss, which treats every other caption of the batch as a negative, would push true matches apart:
``multi_positive_infonce`` takes a positives matrix instead (images with the same label set are positives of each
other's captions), and with the identity it is the usual symmetric InfoNCE.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

# the kit's own templates; GroupViT/PGSeg evaluate with the single template "a photo of a {}."
TEMPLATES = ("a photo of {}.", "an image of {}.", "a picture showing {}.", "a scene with {}.")
EVAL_TEMPLATE = "a photo of a {}."
MIN_SHARE = 0.05       # the kit's choice: a class must cover 5% of an image's labelled pixels to be named


def image_labels(label_map: np.ndarray, n_classes: int, min_share: float = MIN_SHARE, ignore_index: int = 255,
                 exclude: Sequence[int] = ()) -> list[int]:
    """The classes of one label map that cover at least ``min_share`` of its labelled pixels, largest first,
    without the classes in ``exclude`` (the unseen ones)."""
    if not 0.0 < min_share <= 1.0:
        raise ValueError(f"min_share = {min_share}: must be in (0, 1]")
    lab = np.asarray(label_map).ravel()
    lab = lab[lab != ignore_index]
    if lab.size == 0:
        return []
    if lab.max() >= n_classes or lab.min() < 0:
        raise ValueError(f"label value {int(lab.max() if lab.max() >= n_classes else lab.min())} outside the "
                         f"{n_classes} classes")
    share = np.bincount(lab, minlength=n_classes) / lab.size
    banned = set(int(c) for c in exclude)
    order = np.argsort(-share, kind="stable")
    return [int(c) for c in order if share[c] >= min_share and int(c) not in banned]


def caption(names: Sequence[str], rng: np.random.Generator | None = None, template: str | None = None) -> str:
    """One caption naming ``names`` in order ("road, sky and tree") in ``template`` (else one of ``TEMPLATES``
    drawn by ``rng``, else the first)."""
    if not names:
        raise ValueError("a caption needs at least one class name")
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    if template is None:
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))] if rng is not None else TEMPLATES[0]
    return template.format(listed)


def positives_from_labels(labels: Sequence[Sequence[int]]) -> torch.Tensor:
    """(B, B) bool: image i and caption j match when the two label sets are equal (their captions name the same
    classes); the diagonal is always true."""
    sets = [frozenset(int(c) for c in x) for x in labels]
    pos = torch.tensor([[a == b for b in sets] for a in sets], dtype=torch.bool)
    return pos | torch.eye(len(sets), dtype=torch.bool)


def multi_positive_infonce(image: torch.Tensor, text: torch.Tensor, positives: torch.Tensor,
                           logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric contrastive loss with several positives per row: the cross-entropy of the softmax over
    ``logit_scale`` x cosine against the positives spread evenly (image -> text over rows, text -> image over
    columns), averaged over the two directions. ``positives`` = identity gives the usual InfoNCE."""
    if positives.shape != (image.shape[0], text.shape[0]):
        raise ValueError(f"positives {tuple(positives.shape)} for {image.shape[0]} images and {text.shape[0]} texts")
    logits = logit_scale * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    pos = positives.to(logits.dtype)
    i2t = -(pos / pos.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    t2i = -(pos.T / pos.T.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1).mean()
    return (i2t + t2i) / 2


__all__ = ["TEMPLATES", "EVAL_TEMPLATE", "MIN_SHARE", "image_labels", "caption", "positives_from_labels",
           "multi_positive_infonce"]
