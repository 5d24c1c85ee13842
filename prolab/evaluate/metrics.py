"""Metrics from a confusion matrix (mIoU, mAcc, aAcc, per-class IoU and Acc) and the files a scored split
writes (with the resolved config and versions beside them)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

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
