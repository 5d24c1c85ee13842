"""The unseen-class protocol: seen mIoU, unseen mIoU and their harmonic mean, with and without calibration.

Held-out classes are never labelled in training (``TrainConfig.unseen``, or a dataset's reserved classes). At
test a model scores every class; a model trained on seen classes only prefers them everywhere (the seen-class
bias of generalised zero-shot segmentation), so the unseen mIoU alone says little. *Calibrated stacking*
(Chao et al., 2016) subtracts a constant gamma from every seen class's score before the arg-max:

    prediction = argmax_c [ s_c - gamma * 1(c is seen) ],

which moves a pixel to its best unseen class exactly when (best seen score - best unseen score) < gamma. So one
pass over the images, keeping that gap and the two candidate classes per labelled pixel, gives the confusion
matrix for every gamma. Gamma is chosen on calibration images (every other image of the split: even positions)
to maximise the harmonic mean and scored on the others (odd positions); gamma = 0 is the uncalibrated model.
Scores are the raw ones (cosines for property and class-name-embedding models, logits for the category model),
so the candidate gammas are quantiles of the observed gaps, which fits every score scale.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..defaults import IGNORE_INDEX as IGNORE
from ..progress import tqdm
from .metrics import confusion_matrix, metrics_from_confusion


@dataclass
class UnseenResult:
    seen: list[str]
    unseen: list[str]
    gamma: float                   # chosen on the calibration images
    table: pd.DataFrame            # rows: uncalibrated / calibrated; columns: seen mIoU, unseen mIoU, HM
    per_class: pd.DataFrame        # IoU per class on the test images, uncalibrated and calibrated
    curve: pd.DataFrame            # gamma, seen mIoU, unseen mIoU, HM on the calibration images
    n_calibration: int = 0
    n_test: int = 0
    notes: dict = field(default_factory=dict)

    def row(self) -> dict:
        """Flat numbers for a grid row."""
        u, c = self.table.loc["uncalibrated"], self.table.loc["calibrated"]
        return {"seen_mIoU": u["seen mIoU"], "unseen_mIoU": u["unseen mIoU"], "HM": u["HM"],
                "cal_seen_mIoU": c["seen mIoU"], "cal_unseen_mIoU": c["unseen mIoU"], "cal_HM": c["HM"],
                "gamma": round(self.gamma, 6)}


def harmonic_mean(seen: float, unseen: float) -> float:
    return 0.0 if seen + unseen <= 0 or not (np.isfinite(seen) and np.isfinite(unseen)) else \
        2 * seen * unseen / (seen + unseen)


def gzsl_scores(cm: np.ndarray, class_names: list[str], seen: list[str], unseen: list[str]) -> dict:
    """Seen mIoU, unseen mIoU (each over its classes present in the data) and their harmonic mean."""
    s = metrics_from_confusion(cm, class_names, seen)["mIoU"]
    u = metrics_from_confusion(cm, class_names, unseen)["mIoU"]
    s, u = (0.0 if v != v else v for v in (s, u))
    return {"seen mIoU": round(s, 2), "unseen mIoU": round(u, 2), "HM": round(harmonic_mean(s, u), 2)}


@torch.no_grad()
def collect_gaps(model, dataset, indices, unseen_ids: list[int], progress: bool = True):
    """Per labelled pixel of the images at ``indices``: (best seen - best unseen score, best seen class, best
    unseen class, label)."""
    n = model.n_classes
    is_unseen = torch.zeros(n, dtype=torch.bool)
    is_unseen[unseen_ids] = True
    parts = []
    model.eval()
    device = next(model.parameters()).device
    for i in tqdm(list(indices), desc="scoring (unseen protocol)", disable=not progress):
        image, label = dataset[i]
        s = model.predict_scores(image[None].to(device), size=tuple(label.shape), softmax=False)[0].cpu()
        seen_s = s.masked_fill(is_unseen[:, None, None], float("-inf"))
        unseen_s = s.masked_fill(~is_unseen[:, None, None], float("-inf"))
        bs, ps = seen_s.max(0)
        bu, pu = unseen_s.max(0)
        keep = label != IGNORE
        parts.append((bs[keep] - bu[keep], ps[keep], pu[keep], label[keep]))
    if not parts:
        raise ValueError("no images to score")
    return tuple(torch.cat([p[j] for p in parts]).numpy() for j in range(4))


def confusion_at(gamma: float, gaps, n_classes: int) -> np.ndarray:
    gap, ps, pu, lab = gaps
    return confusion_matrix(np.where(gap < gamma, pu, ps), lab, n_classes)


def evaluate_unseen(model, dataset, unseen: list[str], n_gammas: int = 41, progress: bool = True) -> UnseenResult:
    """The protocol on one split: gamma chosen on its even-position images, everything scored on the odd ones."""
    names = list(dataset.class_names)
    bad = [u for u in unseen if u not in names]
    if bad or not unseen:
        raise ValueError(f"unseen classes {bad or unseen} are not classes of the dataset ({names[:6]}...)")
    seen = [c for c in names if c not in unseen]
    ids = [names.index(u) for u in unseen]
    if len(dataset) < 2:
        raise ValueError(f"the unseen protocol needs at least 2 images (calibration + test), not {len(dataset)}")
    calib = collect_gaps(model, dataset, range(0, len(dataset), 2), ids, progress)
    test = collect_gaps(model, dataset, range(1, len(dataset), 2), ids, progress)
    finite = calib[0][np.isfinite(calib[0])]
    candidates = np.unique(np.concatenate([[0.0], np.quantile(finite, np.linspace(0, 1, n_gammas))])) \
        if finite.size else np.array([0.0])
    rows = []
    for g in candidates:
        rows.append({"gamma": float(g), **gzsl_scores(confusion_at(g, calib, len(names)), names, seen, unseen)})
    curve = pd.DataFrame(rows)
    best = curve.assign(abs_gamma=curve["gamma"].abs()).sort_values(["HM", "abs_gamma"], ascending=[False, True])
    gamma = float(best.iloc[0]["gamma"])
    cms = {"uncalibrated": confusion_at(0.0, test, len(names)), "calibrated": confusion_at(gamma, test, len(names))}
    table = pd.DataFrame({k: gzsl_scores(cm, names, seen, unseen) for k, cm in cms.items()}).T
    per_class = pd.DataFrame({k: metrics_from_confusion(cm, names)["per_class"]["IoU"].round(2)
                              for k, cm in cms.items()})
    return UnseenResult(seen, list(unseen), gamma, table, per_class, curve,
                        n_calibration=len(range(0, len(dataset), 2)), n_test=len(range(1, len(dataset), 2)))




def where_pixels_go(confusion: np.ndarray, class_names: list[str], classes: list[str], top: int = 3) -> pd.DataFrame:
    """For each of ``classes`` (e.g. the unseen ones), the classes its labelled pixels were predicted as, with
    their shares: the first thing to look at when a class's IoU is 0."""
    rows = []
    for c in classes:
        row = confusion[class_names.index(c)]
        total = int(row.sum())
        order = np.argsort(-row, kind="stable")[:top]
        rows.append({"class": c, "pixels": total,
                     **{f"predicted as #{j + 1}": (f"{class_names[k]} ({row[k] / total:.0%})" if total and row[k]
                                                  else "-") for j, k in enumerate(order)}})
    return pd.DataFrame(rows)


__all__ = ["UnseenResult", "evaluate_unseen", "gzsl_scores", "harmonic_mean", "collect_gaps", "confusion_at",
           "where_pixels_go"]
