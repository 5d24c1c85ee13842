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


# GroupViT's and PGSeg's evaluation: resized (keeping the ratio) to fit 2048 x 448, then windows of 448 every 224
SHORT_SIDE, LONG_SIDE, WINDOW, STRIDE = 448, 2048, 448, 224


@torch.no_grad()
def window_scores(model, pixels: torch.Tensor, texts: torch.Tensor, top_k: int | None = TOP_K) -> torch.Tensor:
    """One window (1, 3, h, w) through a ``GroupViTModel``: its final groups named among the window's ``top_k``
    classes, spread back to the pixels through the composed stage assignments (bilinear from the token grid):
    (C, h, w) class scores."""
    from .grouping import compose_assignments

    vm = model.vision_model
    size = tuple(model.config.vision_config.image_size for _ in range(2))
    # transformers' forward refuses other sizes; GroupViT evaluates 448-pixel windows with its 224-pixel position
    # embeddings interpolated, so the forward is spelled out here with interpolation on
    emb = vm.embeddings(pixels, interpolate_pos_encoding=tuple(pixels.shape[-2:]) != size)
    enc = vm.encoder(hidden_states=emb, output_attentions=True, return_dict=True)
    last = vm.layernorm(enc.last_hidden_state)
    stages = [a for a in enc.attentions if a is not None]
    assignment = stages[0]
    for nxt in stages[1:]:
        assignment = compose_assignments(assignment, nxt)                  # (1, G, tokens)
    b, g, d = last.shape
    groups = model.visual_projection(last.reshape(b * g, d))
    image = model.visual_projection(last.mean(1))[0]
    probs = name_groups(groups, texts, image, float(model.logit_scale.exp().clamp(max=100)), top_k)   # (G, C)
    patch = model.config.vision_config.patch_size
    h, w = pixels.shape[-2:]
    grid = assignment.view(1, g, h // patch, w // patch)
    spread = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)[0]   # (G, h, w)
    return torch.einsum("gc,ghw->chw", probs, spread)


@torch.no_grad()
def sliding_zero_shot(model, image: torch.Tensor, texts: torch.Tensor, short_side: int = SHORT_SIDE,
                      window: int = WINDOW, stride: int = STRIDE, background: float | None = None,
                      top_k: int | None = TOP_K, long_side: int = LONG_SIDE) -> torch.Tensor:
    """The protocol on one normalised image (3, H, W): resized, keeping its ratio, so that its short side is
    ``short_side`` unless its long side would pass ``long_side`` (mmseg's ``Resize`` to (2048, 448)), windows of ``window`` pixels
    every ``stride`` (the last one flush with the border; an image smaller than a window is one window of its
    size), each window's class scores (``window_scores``) averaged where windows overlap, resized back to
    (H, W); the argmax, with pixels whose best score is below ``background`` given class 0 and the classes
    numbered from 1 (``pixel_labels``' rule). ``texts``: (C, D) class text embeddings in the model's space."""
    if image.dim() != 3:
        raise ValueError(f"image of shape {tuple(image.shape)}: expected (3, H, W)")
    patch = model.config.vision_config.patch_size
    H, W = image.shape[-2:]
    f = min(short_side / min(H, W), long_side / max(H, W))
    h, w = max(patch, round(H * f / patch) * patch), max(patch, round(W * f / patch) * patch)
    x = F.interpolate(image[None], size=(h, w), mode="bilinear", align_corners=False)
    wh, ww = min(window, h), min(window, w)

    def starts(size, win):
        last = size - win
        return sorted({*range(0, last + 1, stride), last})

    scores = torch.zeros(texts.shape[0], h, w, device=x.device)
    count = torch.zeros(1, h, w, device=x.device)
    for top in starts(h, wh):
        for left in starts(w, ww):
            crop = x[..., top:top + wh, left:left + ww]
            scores[:, top:top + wh, left:left + ww] += window_scores(model, crop, texts, top_k).float()
            count[:, top:top + wh, left:left + ww] += 1
    scores = F.interpolate((scores / count)[None], size=(H, W), mode="bilinear", align_corners=False)[0]
    best, label = scores.max(0)
    if background is None:
        return label
    return torch.where(best < background, torch.zeros_like(label), label + 1)


__all__ = ["SHORT_SIDE", "LONG_SIDE", "WINDOW", "STRIDE", "window_scores", "sliding_zero_shot", "TOP_K", "BACKGROUND_THRESHOLD", "REPORTED", "name_groups", "pixel_labels", "oracle_labels"]
