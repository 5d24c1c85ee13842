"""Figures shared by the notebooks. Each function returns the matplotlib Figure (and never calls show)."""
from __future__ import annotations

import matplotlib.pyplot as plt

from .defaults import IGNORE_INDEX


def descriptions_per_class(descriptions: dict[str, list[str]], title: str = "", min_line: int | None = 6):
    """Bar chart: number of descriptions for every class, in class order."""
    names = list(descriptions)
    counts = [len(descriptions[c]) for c in names]
    width = max(6.0, min(24.0, 0.12 * len(names) + 3))
    fig, ax = plt.subplots(figsize=(width, 3.2))
    ax.bar(range(len(names)), counts, color="#4C72B0")
    if min_line:
        ax.axhline(min_line, color="#C44E52", lw=1, ls="--", label=f"minimum ({min_line})")
        ax.legend(loc="upper right")
    if len(names) <= 60:
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    else:
        ax.set_xlabel("class index")
    ax.set_ylabel("descriptions")
    ax.set_title(title or "Descriptions per class")
    fig.tight_layout()
    return fig


def word_length_histogram(groups: dict[str, dict[str, list[str]]], title: str = "Words per description"):
    """Overlaid histograms of description lengths, one per group (e.g. per prompt)."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    lengths = {g: [len(d.split()) for ds in descs.values() for d in ds] for g, descs in groups.items()}
    top = max([max(v, default=1) for v in lengths.values()] + [1])
    bins = range(1, top + 2)
    for g, v in lengths.items():
        ax.hist(v, bins=bins, alpha=0.55, label=f"{g} (n={len(v)})")
    ax.set_xlabel("words")
    ax.set_ylabel("descriptions")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def similarity_heatmaps(class_names: list[str], similarity, title: str = "Class similarity from signatures"):
    """Two panels: cosine similarity of property signatures, and the identity that one-hot labels imply."""
    import numpy as np

    n = len(class_names)
    size = min(14.0, max(7.0, 0.09 * n + 5))
    fig, axes = plt.subplots(1, 2, figsize=(size, size / 2 + 0.6))
    for ax, mat, name in ((axes[0], similarity, "property signatures (cosine)"),
                          (axes[1], np.eye(n), "one-hot labels (identity)")):
        im = ax.imshow(mat, vmin=0, vmax=1, cmap="viridis")
        ax.set_title(name, fontsize=10)
        if n <= 40:
            ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
            ax.set_yticks(range(n), class_names, fontsize=7)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.suptitle(title)
    return fig


def property_histograms(signatures):
    """Histograms of properties per class and classes per property."""
    import numpy as np

    per_class, per_prop = signatures.sum(1), signatures.sum(0)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    axes[0].hist(per_class, bins=np.arange(per_class.min(), per_class.max() + 2) - 0.5, color="#4C72B0")
    axes[0].set_xlabel("properties per class")
    axes[0].set_ylabel("classes")
    axes[1].hist(per_prop, bins=np.arange(per_prop.min(), per_prop.max() + 2) - 0.5, color="#DD8452")
    axes[1].set_xlabel("classes per property")
    axes[1].set_ylabel("properties")
    fig.tight_layout()
    return fig


def description_map(xy, labels, texts=None, class_of=None, annotate: int = 0, title: str = "Descriptions, coloured by property"):
    """2-D scatter of descriptions coloured by property; optionally labels ``annotate`` random points."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 6.5))
    ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab20", s=12, alpha=0.85)
    if annotate and texts is not None:
        rng = np.random.default_rng(0)
        for i in rng.choice(len(xy), size=min(annotate, len(xy)), replace=False):
            label = texts[i] if class_of is None else f"{class_of[i]}: {texts[i]}"
            ax.annotate(label[:40], xy[i], fontsize=6, alpha=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    fig.tight_layout()
    return fig


def k_sweep_plot(table):
    """Inertia, silhouette, collisions and properties per class against K (a K-sweep DataFrame)."""
    cols = ["inertia", "silhouette", "collisions", "properties per class"]
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3))
    for ax, col in zip(axes, cols):
        ax.plot(table["n_properties"], table[col], marker="o")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("K (n_properties)")
        ax.set_title(col, fontsize=10)
    fig.tight_layout()
    return fig


def training_curves(logs: dict[str, list[dict]], smooth: int = 5, title: str = "Training loss"):
    """Loss against iteration for several runs (moving average over ``smooth`` iterations). Property and
    category losses are on different scales, so each run gets its own axis."""
    import numpy as np

    fig, axes = plt.subplots(1, len(logs), figsize=(4.5 * len(logs), 3.2), squeeze=False)
    for ax, (name, rows) in zip(axes[0], logs.items()):
        it = np.array([r["iteration"] for r in rows])
        loss = np.array([r["loss"] for r in rows])
        if len(loss) >= smooth > 1:
            loss = np.convolve(loss, np.ones(smooth) / smooth, mode="valid")
            it = it[smooth - 1:]
        ax.plot(it, loss)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def prediction_grid(images, labels, predictions: dict, palette, ignore_index: int = IGNORE_INDEX):
    """Rows = samples; columns = image, ground truth, then one column per model's prediction."""
    import numpy as np

    pal = np.zeros((256, 3), np.uint8)
    pal[: len(palette)] = np.asarray(palette, np.uint8)
    pal[ignore_index] = 0
    cols = 2 + len(predictions)
    fig, axes = plt.subplots(len(images), cols, figsize=(2.2 * cols, 2.2 * len(images)), squeeze=False)
    for r, (img, lab) in enumerate(zip(images, labels)):
        panels = [("image", img), ("ground truth", pal[lab])]
        panels += [(name, pal[p[r]]) for name, p in predictions.items()]
        for c, (name, arr) in enumerate(panels):
            axes[r, c].imshow(arr)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(name, fontsize=9)
    fig.tight_layout()
    return fig


def metric_vs_axis(runs, axis: str = "n_properties", metric: str = "mIoU"):
    """Mean ± std of a metric over seeds against a numeric axis (base runs and the runs varying it)."""
    rows = runs[(runs["axis"] == "base") | (runs["axis"] == axis)]
    g = rows.groupby(axis)[metric]
    mean, std = g.mean(), g.std(ddof=1).fillna(0)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.errorbar(mean.index, mean.values, yerr=std.values, marker="o", capsize=3)
    if axis == "n_properties":
        ax.set_xscale("log", base=2)
    ax.set_xlabel(axis)
    ax.set_ylabel(f"{metric} (mean ± std over seeds)")
    fig.tight_layout()
    return fig
