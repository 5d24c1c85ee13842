"""The zero-shot segmentation protocol of GroupViT and PGSeg, and the oracle naming.

Each final group has an embedding in the joint image-text space; each class a text embedding (the template
"a photo of a {}." in the papers). A group is named by the softmax over ``logit_scale`` x cosine, restricted to the
image's top-k classes (ranked by the whole image's similarity; k = 5 in the papers) so that a group cannot take a
class the image as a whole does not support. A pixel's class scores are its (soft) weights on the groups times
the groups' class probabilities; where its best score is below the threshold it is background (PGSeg: VOC 0.95,
Pascal Context 0.36, COCO-Object 0.85). The **oracle** names each group by the majority ground-truth class of the
pixels it holds: its mIoU measures the grouping alone, whatever the naming does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

TOP_K = 5
BACKGROUND_THRESHOLD = {"voc": 0.95, "pascal_context": 0.36, "coco_object": 0.85}   # PGSeg's
# zero-shot mIoU reported with this protocol (PGSeg, arXiv 2310.19001, trained on GCC + RedCaps; GroupViT's
# released model for comparison, as PGSeg reports it)
REPORTED = {"PGSeg": {"voc": 53.2, "pascal_context": 23.8, "coco_object": 28.7},
            "GroupViT (released)": {"voc": 50.8, "pascal_context": 23.7, "coco_object": 27.5}}


def name_groups(groups: torch.Tensor, texts: torch.Tensor, image: torch.Tensor, logit_scale: float,
                top_k: int | None = TOP_K) -> torch.Tensor:
    """(G, D) group embeddings, (C, D) class text embeddings, (D,) image embedding -> (G, C) class
    probabilities per group, zero outside the image's ``top_k`` classes (None: every class)."""
    g, t = F.normalize(groups, dim=-1), F.normalize(texts, dim=-1)
    logits = logit_scale * g @ t.T
    if top_k is not None and top_k < t.shape[0]:
        keep = (F.normalize(image, dim=-1) @ t.T).topk(top_k).indices
        mask = torch.full_like(logits, float("-inf"))
        mask[:, keep] = 0.0
        logits = logits + mask
    return logits.softmax(-1)


def pixel_labels(assignment: torch.Tensor, group_probs: torch.Tensor, background: float | None = None,
                 background_index: int = 0) -> torch.Tensor:
    """(G, N) pixel -> group weights (columns summing to 1) and (G, C) group class probabilities -> (N,) labels:
    the argmax of ``group_probs.T @ assignment``; with ``background``, pixels whose best score is below it get
    ``background_index`` and the classes are numbered from ``background_index + 1``."""
    scores = group_probs.T @ assignment                                   # (C, N)
    best, label = scores.max(0)
    if background is None:
        return label
    return torch.where(best < background, torch.full_like(label, background_index), label + background_index + 1)


def oracle_labels(groups_of_pixels: torch.Tensor, truth: torch.Tensor, n_classes: int,
                  ignore_index: int = 255) -> torch.Tensor:
    """(N,) hard group index per pixel and (N,) ground truth -> (N,) labels: every pixel of a group gets the
    group's majority class among its labelled pixels (a group with none keeps ``ignore_index``)."""
    out = torch.full_like(truth, ignore_index)
    for grp in groups_of_pixels.unique():
        member = groups_of_pixels == grp
        labelled = truth[member & (truth != ignore_index)]
        if labelled.numel():
            out[member] = torch.bincount(labelled, minlength=n_classes).argmax()
    return out


__all__ = ["TOP_K", "BACKGROUND_THRESHOLD", "REPORTED", "name_groups", "pixel_labels", "oracle_labels"]
