"""Notebook-facing helpers: evaluate several runs the same way, and collect predictions to look at."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import paths
from ..datasets import seen_class_names, unseen_class_names
from ..train.data import eval_split
from ..train.runs import load_trained
from .inference import evaluate
from .metrics import EvalResult, save_results


def evaluate_runs(run_names: list[str], split: str = "val", inference: str = "whole", limit: int | None = None,
                  out_dir: str | Path | None = None, progress: bool = True, allow_train_folder: bool = False):
    """(summary table, per-class IoU table, {run: EvalResult}); means over the seen classes. With ``out_dir``
    each run's results go to ``out_dir/<run>/`` (metrics.json with config, the folders scored and versions,
    per_class.csv). A split read from the training folder is refused unless ``allow_train_folder``."""
    results: dict[str, EvalResult] = {}
    rows = []
    for name in run_names:
        model, cfg, classes = load_trained(name)
        seen = seen_class_names(cfg.dataset) if cfg.dataset != "custom" else None
        data = eval_split(cfg, split, allow_train_folder)
        res = evaluate(model, data, mode=inference, crop=cfg.crop_size,
                       stride=max(1, cfg.crop_size * 2 // 3), limit=limit, classes=seen, progress=progress)
        results[name] = res
        row = {"run": name, "mode": cfg.mode, "loss": {"property": cfg.loss, "category": "ce"}.get(cfg.mode, "cos"),
               "iters": cfg.iters, "seed": cfg.seed, **res.summary()}
        unseen = unseen_class_names(cfg.dataset) if cfg.dataset != "custom" else []
        if unseen:
            row["unseen IoU (mean)"] = round(float(res.per_class.loc[unseen, "IoU"].mean()), 2)
        rows.append(row)
        if out_dir is not None:
            # the folders really scored, so a metrics file can never claim a split it did not read
            folders = sorted({paths.portable(p.parent) for pair in data.pairs for p in pair})
            save_results(res, Path(out_dir) / paths.slug(name),
                         {"run": cfg.to_dict(), "split": split, "folders": folders[:8], "images": len(data),
                          "inference": inference, "limit": limit, "mean_over": seen})
    per_class = pd.DataFrame({n: r.per_class["IoU"].round(1) for n, r in results.items()})
    return pd.DataFrame(rows).set_index("run"), per_class, results


def run_signatures(run_names: list[str]):
    """The signatures (C x K, numpy) the first property run of ``run_names`` was trained with, read from its
    weights file without building the model; None when no run is a property run."""
    import json

    from safetensors import safe_open

    for name in run_names:
        f = paths.run_dir(name) / "model.safetensors"
        with safe_open(str(f), "pt") as h:
            if json.loads(h.metadata()["config"]).get("mode") == "property" and "signatures" in h.keys():
                return h.get_tensor("signatures").numpy()
    return None


def require_finished(run_names: list[str]) -> None:
    """Every run must have its final weights; otherwise say which notebook or command makes it, and where
    the kit looked."""
    missing = [n for n in run_names if not (paths.run_dir(n) / "model.safetensors").exists()]
    if missing:
        where = ", ".join(str(paths.run_dir(n) / "model.safetensors") for n in missing)
        raise FileNotFoundError(
            f"no finished training run {', '.join(map(repr, missing))} (looked for {where}). Run notebook "
            "05_train_segmentation first (its run_prefix names the runs <run_prefix>-property and "
            "<run_prefix>-category), or `prolab train --run_name <name>`, or `prolab run --config "
            "configs/demo.yaml`, which chains 05 into 06.")


@torch.no_grad()
def sample_predictions(run_names: list[str], n: int = 4, split: str = "val"):
    """(images uint8, labels, {run: predictions}) for the first ``n`` images of a split."""
    preds: dict[str, list[np.ndarray]] = {}
    images, labels = [], []
    for name in run_names:
        model, cfg, _ = load_trained(name)
        ds = eval_split(cfg, split)
        preds[name] = []
        for i in range(min(n, len(ds))):
            x, lab = ds[i]
            preds[name].append(model.predict(x[None], size=tuple(lab.shape))[0].numpy())
            if len(images) < min(n, len(ds)):
                img, raw_lab = ds.load(i)
                images.append(img)
                labels.append(raw_lab.astype(np.int64))
    return images, labels, preds


def split_image(run_name: str, index: int, split: str = "val"):
    """(uint8 RGB image, label map, normalised tensor) of one image of a run's dataset, for explanations."""
    model, cfg, _ = load_trained(run_name)
    ds = eval_split(cfg, split)
    if not 0 <= index < len(ds):
        raise ValueError(f"image_index = {index}: the {split} split of {cfg.dataset} has {len(ds)} images "
                         f"(0..{len(ds) - 1})")
    x, _ = ds[index]
    img, lab = ds.load(index)
    return img, lab.astype(np.int64), x


def find_example(run_name: str, class_name: str, split: str = "val", start: int = 0,
                 correct: bool = True) -> tuple[int, tuple[int, int]]:
    """A showcase pixel chosen by rule, not by accident: the first image (from ``start``) holding 16 or more
    pixels of ``class_name`` where the run predicts the class correctly at some of them (``correct=False``:
    misses it at some of them), and among those pixels the one farthest from the class's border. So an
    explanation shows a success when it says so, and a failure is shown as one."""
    from scipy.ndimage import distance_transform_edt

    from .inference import predict_labels

    model, cfg, names = load_trained(run_name)
    if class_name not in names:
        raise ValueError(f"focus_class = {class_name!r} is not a class of {cfg.dataset} ({', '.join(names)})")
    ds = eval_split(cfg, split)
    c = names.index(class_name)
    for i in range(start, len(ds)):
        _, lab = ds.load(i)
        mask = lab == c
        if mask.sum() < 16:
            continue
        x, _ = ds[i]
        pred = predict_labels(model, x, lab.shape).cpu().numpy()
        chosen = mask & ((pred == c) if correct else (pred != c))
        if chosen.any():
            # padded: the image's edge counts as the class's border, so the pixel is inside the picture too
            depth = np.where(chosen, distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1], -1.0)
            r, col = np.unravel_index(int(depth.argmax()), depth.shape)
            return i, (int(r), int(col))
    what = "predicted correctly" if correct else "missed"
    raise ValueError(f"no {split} image of {cfg.dataset} from index {start} holds 16 or more pixels of "
                     f"{class_name!r} with one {what} by run {run_name!r}")
