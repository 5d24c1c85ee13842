"""Evaluation: confusion-matrix mIoU, mAcc, aAcc and per-class IoU, whole-image or sliding-window inference,
results written under results/ with the resolved config and versions beside them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from ..progress import tqdm

from ..files import atomic_write_json, atomic_write_text, environment_info, utc_now

from ..defaults import IGNORE_INDEX as IGNORE


def confusion_matrix(pred: np.ndarray, label: np.ndarray, n_classes: int, ignore_index: int = IGNORE) -> np.ndarray:
    """(C, C) counts, rows = ground truth, columns = prediction; ignored pixels left out."""
    m = label != ignore_index
    bad = label[m][label[m] >= n_classes]
    if bad.size:
        raise ValueError(f"label value {int(bad[0])} is neither a class (0..{n_classes - 1}) nor ignore ({ignore_index})")
    idx = label[m].astype(np.int64) * n_classes + pred[m].astype(np.int64)
    return np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def metrics_from_confusion(cm: np.ndarray, class_names: list[str], classes: list[str] | None = None) -> dict:
    """IoU = TP / (TP + FP + FN) and Acc = TP / (TP + FN) per class; classes absent from both ground truth and
    predictions are NaN and left out of the means (as mmseg does). ``classes`` restricts the means."""
    tp = np.diag(cm).astype(np.float64)
    gt, pr = cm.sum(1).astype(np.float64), cm.sum(0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (gt + pr - tp)
        acc = tp / gt
    if classes:
        unknown = [c for c in classes if c not in class_names]
        if unknown:
            raise ValueError(f"classes {unknown} are not among the dataset's classes")
    keep = np.array([c in classes for c in class_names]) if classes else np.ones(len(class_names), bool)
    per_class = pd.DataFrame({"class_name": class_names, "IoU": iou * 100, "Acc": acc * 100,
                              "gt_pixels": gt.astype(np.int64)}).set_index("class_name")
    return {"mIoU": float(np.nanmean(np.where(keep, iou, np.nan)) * 100),
            "mAcc": float(np.nanmean(np.where(keep, acc, np.nan)) * 100),
            "aAcc": float(tp.sum() / max(cm.sum(), 1) * 100),
            "per_class": per_class}


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


@dataclass
class EvalResult:
    metrics: dict
    confusion: np.ndarray
    class_names: list[str]
    n_images: int = 0

    @property
    def per_class(self) -> pd.DataFrame:
        return self.metrics["per_class"]

    def summary(self) -> dict:
        """Means rounded; NaN (no class to average) becomes None, which JSON writes as null."""
        return {k: (None if v != v else round(v, 2)) for k, v in self.metrics.items() if k != "per_class"}


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


def save_results(result: EvalResult, out_dir: str | Path, config: dict) -> Path:
    """metrics.json (+ config and environment), per_class.csv, confusion.csv in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", {**result.summary(), "n_images": result.n_images,
                                             "created": utc_now(), "config": config,
                                             "environment": environment_info()})
    atomic_write_text(out / "per_class.csv", result.per_class.round(2).to_csv())
    atomic_write_text(out / "confusion.csv", pd.DataFrame(result.confusion, index=result.class_names,
                                                          columns=result.class_names).to_csv())
    return out
