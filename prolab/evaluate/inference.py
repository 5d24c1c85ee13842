"""Inference over a split: whole-image or sliding-window class scores, predicted labels, and the confusion
matrix of a model on a dataset."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..progress import tqdm
from .metrics import EvalResult, confusion_matrix, metrics_from_confusion


@torch.no_grad()
def predict_scores(model, image: torch.Tensor, out_size, mode: str = "whole", crop: int = 512,
                   stride: int = 341, score_resolution: str = "feature") -> torch.Tensor:
    """(C, H, W) softmax class scores for one normalised image (3, h, w); sliding windows average scores.
    ``score_resolution``: see ``SegModel.predict_scores`` (feature: score, then upsample; full: per pixel)."""
    x = image[None]
    if mode == "whole":
        return model.predict_scores(x, size=tuple(out_size), score_resolution=score_resolution)[0]
    if mode != "slide":
        raise ValueError(f"inference mode {mode!r}: use 'whole' or 'slide'")
    _, _, h, w = x.shape
    scores = torch.zeros((model.n_classes, h, w), device=x.device)
    count = torch.zeros((1, h, w), device=x.device)
    ys = list(range(0, max(h - crop, 0) + 1, stride)) or [0]
    xs = list(range(0, max(w - crop, 0) + 1, stride)) or [0]
    if ys[-1] + crop < h:
        ys.append(h - crop)
    if xs[-1] + crop < w:
        xs.append(w - crop)
    for y0 in ys:
        for x0 in xs:
            win = x[:, :, y0:y0 + crop, x0:x0 + crop]
            scores[:, y0:y0 + win.shape[2], x0:x0 + win.shape[3]] += model.predict_scores(
                win, score_resolution=score_resolution)[0]
            count[:, y0:y0 + win.shape[2], x0:x0 + win.shape[3]] += 1
    scores = scores / count
    return F.interpolate(scores[None], size=tuple(out_size), mode="bilinear", align_corners=False)[0]


@torch.no_grad()
def predict_labels(model, image: torch.Tensor, out_size, mode: str = "whole", crop: int = 512, stride: int = 341,
                   score_resolution: str = "feature") -> torch.Tensor:
    """(H, W) predicted classes for one normalised image: ``model.predict`` for whole images where the model
    has it (the argmax taken while upsampling, no (C, H, W) map), else the argmax of ``predict_scores``."""
    if mode == "whole" and hasattr(model, "predict"):
        return model.predict(image[None], size=tuple(out_size), score_resolution=score_resolution)[0]
    return predict_scores(model, image, out_size, mode, crop, stride, score_resolution).argmax(0)


def evaluate(model, dataset, device: str = "cpu", mode: str = "whole", crop: int = 512, stride: int = 341,
             limit: int | None = None, classes: list[str] | None = None, progress: bool = True,
             score_resolution: str = "feature") -> EvalResult:
    """Run the model over a dataset whose items are (normalised image, label) and accumulate the confusion."""
    model.eval().to(device)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    cm = np.zeros((model.n_classes, model.n_classes), np.int64)
    for i in tqdm(range(n), desc="evaluating", disable=not progress):
        image, label = dataset[i]
        pred = predict_labels(model, image.to(device), label.shape, mode, crop, stride, score_resolution)
        cm += confusion_matrix(pred.cpu().numpy(), label.numpy(), model.n_classes)
    names = list(dataset.class_names)
    return EvalResult(metrics_from_confusion(cm, names, classes), cm, names, n)
