"""Figures shared by the notebooks. Each function returns the matplotlib Figure (and never calls show)."""
from __future__ import annotations

import matplotlib.pyplot as plt

from ..defaults import IGNORE_INDEX
from .confusion import confusion_link, confusion_matrices, top_confusions  # noqa: F401  (notebook 06 imports them from here)


def descriptions_per_class(descriptions: dict[str, list[str]], title: str = "", min_line: int | None = 6,
                           band: tuple[float, float] | None = None, band_label: str = ""):
    """Bar chart: number of descriptions for every class, in class order. ``min_line`` draws the parser's
    minimum; ``band`` shades a reference range (e.g. the paper's 8-15 per class)."""
    from matplotlib.ticker import MaxNLocator

    names = list(descriptions)
    counts = [len(descriptions[c]) for c in names]
    width = max(6.0, min(24.0, 0.12 * len(names) + 3))
    fig, ax = plt.subplots(figsize=(width, 3.2))
    if band:
        ax.axhspan(band[0], band[1], color="#55A868", alpha=0.15, lw=0,
                   label=band_label or f"reference range ({band[0]:g}-{band[1]:g})")
    ax.bar(range(len(names)), counts, color="#4C72B0")
    if min_line:
        ax.axhline(min_line, color="#C44E52", lw=1, ls="--", label=f"minimum ({min_line})")
    if min_line or band:   # headroom above the bars and the band, for the legend
        ax.set_ylim(0, 1.3 * max(max(counts, default=0), band[1] if band else 0, min_line or 0) + 1)
        ax.legend(loc="upper right", ncol=2, fontsize=8, framealpha=0.9)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if len(names) <= 60:
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    else:
        ax.set_xlabel("class index")
    ax.set_ylabel("descriptions")
    ax.set_title(title or "Descriptions per class")
    fig.tight_layout()
    return fig


def word_length_histogram(groups: dict[str, dict[str, list[str]]], title: str = "Words per description"):
    """Histograms of description lengths, one per group (e.g. per prompt), drawn as outlines (steps) so that
    overlapping groups stay readable."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    lengths = {g: [len(d.split()) for ds in descs.values() for d in ds] for g, descs in groups.items()}
    top = max([max(v, default=1) for v in lengths.values()] + [1])
    bins = range(1, top + 2)
    for g, v in lengths.items():
        ax.hist(v, bins=bins, histtype="step", linewidth=1.8, label=f"{g} (n={len(v)})")
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


MARKERS = "os^DvPX*"


def _distinct_colours(n: int):
    """n colours for lines and bars: tab10 up to 10, then tab10 repeated (pair them with ``_styles``' markers
    where points must stay apart)."""
    import numpy as np

    base = np.asarray(plt.get_cmap("tab10").colors)
    return base[np.arange(max(n, 1)) % 10][:max(n, 1)]


def _styles(n: int) -> list[tuple]:
    """n (colour, marker) pairs that stay distinct for many groups: tab10's ten colours (chosen to be told
    apart, also with common colour-vision deficiencies) crossed with marker shapes, ten groups per shape, up to
    80. Evenly spaced hues, the usual fallback, make neighbouring groups look alike beyond about 12."""
    colours = _distinct_colours(n)
    return [(colours[i], MARKERS[(i // 10) % len(MARKERS)]) for i in range(n)]


def _readable_subset(xy, n: int, width: float = 0.36, height: float = 0.045, flip_at: float = 0.65,
                     seed: int = 0) -> list[int]:
    """Up to ``n`` point indices whose text labels (about ``width`` x ``height`` of the axes; written to the right
    of the point, or to its left beyond ``flip_at`` of the width) do not overlap."""
    import numpy as np

    span = np.ptp(xy, axis=0)
    span[span == 0] = 1
    u = (xy - xy.min(0)) / span
    left = np.where(u[:, 0] > flip_at, u[:, 0] - width, u[:, 0])   # left edge of each label
    chosen: list[int] = []
    for i in np.random.default_rng(seed).permutation(len(xy)):
        if len(chosen) >= n:
            break
        if all(abs(left[i] - left[j]) > width or abs(u[i, 1] - u[j, 1]) > height for j in chosen):
            chosen.append(int(i))
    return chosen


def description_map(xy, labels, texts=None, class_of=None, annotate: int = 0,
                    title: str = "Descriptions, coloured by property", projection: str | None = None,
                    color_by: str = "property", max_label_chars: int = 36):
    """2-D scatter of descriptions.

    ``color_by``: ``"property"`` (one colour and marker per property: ``_styles``), ``"class"`` (one colour and
    marker per class, with a legend up to 40 classes; needs ``class_of``) or
    ``"both"`` (the two side by side). In the property panel each property's index is written at the median
    of its points (up to 40 properties). ``annotate`` is the most descriptions to label; only labels that do
    not overlap are drawn. ``projection`` ("pca", "tsne") names the axes.
    """
    import numpy as np

    if color_by not in ("property", "class", "both"):
        raise ValueError(f"color_by = {color_by!r}: use 'property', 'class' or 'both'")
    if color_by != "property" and class_of is None:
        raise ValueError("color_by = 'class' or 'both' needs class_of (the class name of every description)")
    xy, labels = np.asarray(xy), np.asarray(labels)
    axis_name = {"pca": "PCA", "tsne": "t-SNE"}.get(projection or "", projection or "component")
    panels = ["property", "class"] if color_by == "both" else [color_by]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels) + (1.6 if "class" in panels else 0), 5.8),
                             squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "property":
            ids = sorted(set(labels.tolist()))
            styles = _styles(len(ids))
            colours = [c for c, _ in styles]
            index = {k: i for i, k in enumerate(ids)}
            for k in ids:
                m = labels == k
                ax.scatter(xy[m, 0], xy[m, 1], color=styles[index[k]][0], marker=styles[index[k]][1], s=16,
                           alpha=0.85, lw=0)
            if len(ids) <= 40:
                span = np.where(np.ptp(xy, axis=0) > 0, np.ptp(xy, axis=0), 1.0)
                placed: list = []
                for k in ids:
                    c = np.median(xy[labels == k], axis=0) / span   # in units of the data's extent
                    while any(abs(c[0] - q[0]) < 0.045 and abs(c[1] - q[1]) < 0.04 for q in placed):
                        c = c - [0, 0.04]   # move down until the index box does not cover another
                    placed.append(c)
                    ax.annotate(str(k), tuple(c * span), fontsize=8, weight="bold", ha="center", va="center",
                                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec=colours[index[k]], alpha=0.8))
            ax.set_title(title if len(panels) == 1 else f"coloured by property (K = {len(ids)})", fontsize=10)
        else:
            names = list(dict.fromkeys(class_of))
            styles = _styles(len(names))
            index = {c: i for i, c in enumerate(names)}
            for c in names:
                m = np.array([x == c for x in class_of])
                ax.scatter(xy[m, 0], xy[m, 1], color=styles[index[c]][0], marker=styles[index[c]][1], s=16,
                           alpha=0.85, lw=0, label=c)
            if len(names) <= 40:
                ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False,
                          markerscale=1.5, title="class", title_fontsize=8)
            ax.set_title(title if len(panels) == 1 else f"coloured by class ({len(names)} classes)", fontsize=10)
        text_panel = panels[-1] if color_by == "both" else panel
        if annotate and texts is not None and panel == text_panel:
            for i in _readable_subset(xy, annotate):
                label = texts[i] if class_of is None else f"{class_of[i]}: {texts[i]}"
                label = label if len(label) <= max_label_chars else label[: max_label_chars - 1] + "…"
                right = (xy[i, 0] - xy[:, 0].min()) > 0.65 * max(np.ptp(xy[:, 0]), 1e-12)  # as _readable_subset
                ax.scatter(xy[i, 0], xy[i, 1], s=26, facecolors="none", edgecolors="black", lw=0.7)
                ax.annotate(label, xy[i], xytext=(-4 if right else 4, 2), textcoords="offset points", fontsize=7,
                            ha="right" if right else "left", alpha=0.9)
        ax.set_xlabel(f"{axis_name} 1")
        ax.set_ylabel(f"{axis_name} 2")
        ax.set_xticks([])
        ax.set_yticks([])
    if len(panels) > 1:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def k_sweep_plot(table, reference_k: int | None = None, reference_label: str = ""):
    """Inertia, silhouette, collisions and properties per class against K (a K-sweep DataFrame); the tested K
    values are the ticks. ``reference_k`` draws a dashed line (e.g. the paper's rule, descriptions / 6)."""
    from matplotlib.ticker import MaxNLocator, NullLocator

    cols = ["inertia", "silhouette", "collisions", "properties per class"]
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3))
    ks = [int(k) for k in table["n_properties"]]
    for ax, col in zip(axes, cols):
        ax.plot(table["n_properties"], table[col], marker="o")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.xaxis.set_minor_locator(NullLocator())
        if reference_k:
            ax.axvline(reference_k, color="#C44E52", lw=1, ls="--", label=reference_label or f"K = {reference_k}")
        title = col
        if col == "collisions":
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylim(bottom=-0.5, top=max(1.5, float(table[col].max()) + 0.5))
        elif col in ("silhouette", "properties per class"):
            # from 0 (the silhouette's range is -1 to 1): a zoomed axis would make a small change look large
            top = float(table[col].max())
            ax.set_ylim(bottom=min(0.0, float(table[col].min()) * 1.1), top=top * 1.15 if top > 0 else 1.0)
            title = f"{col} (axis from 0)"
        else:
            title = f"{col} (axis zoomed)"    # inertia: only its fall with K matters, not its level
        ax.set_xlabel("K (n_properties)")
        ax.set_title(title, fontsize=10)
    if reference_k:
        axes[0].legend(fontsize=8)
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


SATURATION = (("sat_std", "std of z / T"), ("sat_frac", "share of |z / T| > 4 (saturated)"),
              ("sat_grad", "mean p (1 - p)  (at most 0.25)"))


def saturation_curves(logs: dict[str, list[dict]], title: str = "Saturation of the property sigmoids"):
    """The saturation the training log records at each logging interval (``train.loop.saturation``), main
    head solid, auxiliary head dashed, one line per run that has a property head; runs without one (category
    supervision) are named in the title instead."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    without = []
    for name, rows in logs.items():
        rows = [r for r in rows if "sat_std" in r]
        if not rows:
            without.append(name)
            continue
        it = [r["iteration"] for r in rows]
        for ax, (key, label) in zip(axes, SATURATION):
            line, = ax.plot(it, [r[key] for r in rows], label=f"{name}, main head")
            if f"aux_{key}" in rows[0]:
                ax.plot(it, [r.get(f"aux_{key}") for r in rows], ls="--", color=line.get_color(),
                        label=f"{name}, auxiliary head")
            ax.set_title(label, fontsize=10)
            ax.set_xlabel("iteration")
    axes[0].legend(fontsize=8)
    fig.suptitle(title + (f" (no sigmoid in: {', '.join(without)})" if without else ""))
    fig.tight_layout()
    return fig


def prediction_grid(images, labels, predictions: dict, palette, ignore_index: int = IGNORE_INDEX,
                    class_names: list[str] | None = None):
    """Rows = samples; columns = image, ground truth, then one column per model's prediction. With
    ``class_names``, a legend names the colour of every class that appears in the panels."""
    import numpy as np
    from matplotlib.patches import Patch

    pal = np.zeros((256, 3), np.uint8)
    pal[: len(palette)] = np.asarray(palette, np.uint8)
    pal[ignore_index] = 0
    cols = 2 + len(predictions)
    fig, axes = plt.subplots(len(images), cols, figsize=(2.2 * cols, 2.2 * len(images)), squeeze=False)
    shown: set[int] = set()
    for r, (img, lab) in enumerate(zip(images, labels)):
        panels = [("image", img), ("ground truth", pal[lab])]
        panels += [(name, pal[p[r]]) for name, p in predictions.items()]
        shown |= set(np.unique(lab).tolist()) | {int(v) for p in predictions.values() for v in np.unique(p[r])}
        for c, (name, arr) in enumerate(panels):
            axes[r, c].imshow(arr)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(name, fontsize=9)
    if class_names:
        ids = sorted(i for i in shown if i != ignore_index and i < len(class_names))
        # an edge on every swatch: a white class (snow) must not vanish into the page
        handles = [Patch(facecolor=pal[i] / 255.0, edgecolor="0.35", linewidth=0.6, label=class_names[i])
                   for i in ids]
        handles.append(Patch(facecolor="black", edgecolor="0.35", linewidth=0.6, label="ignored (255)"))
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def signature_matrix(space, max_classes: int = 60):
    """The signatures Y (classes x properties) as a black-and-white image: what the property head is asked
    to reproduce for each class. Class names on the y axis (up to ``max_classes`` rows)."""
    y = space.signatures[:max_classes]
    fig, ax = plt.subplots(figsize=(min(12, 2 + 0.12 * y.shape[1]), min(12, 1 + 0.22 * y.shape[0])))
    ax.imshow(y, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(y.shape[0]), space.class_names[:max_classes], fontsize=8)
    ax.set_xlabel(f"property k (K = {space.n_properties})")
    ax.set_ylabel("class c")
    ax.set_title("signatures $y_c$ (black = the class has the property)", fontsize=10)
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


def display_image(image):
    """uint8 (H, W, 3) for imshow: a uint8 array as it is; a normalised (3, H, W) or (1, 3, H, W) tensor or
    array un-normalised with the ImageNet statistics."""
    import numpy as np

    from ..datasets.transforms import IMAGENET_MEAN, IMAGENET_STD

    a = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if a.dtype == np.uint8:
        return a
    a = a.reshape(a.shape[-3:]).transpose(1, 2, 0) * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def property_activation_maps(image, maps, names, width: int = 24, max_lines: int = 3, pixel=None):
    """The image, then one heatmap per property (activation p_k, 0 to 1, one shared colour bar) titled with the
    property name wrapped to ``width`` characters (at most ``max_lines`` lines). ``maps``, ``names``: what
    ``analysis.explain.property_maps`` returns; ``pixel`` (row, col), if given, is marked with a cross on every
    panel. Axes: image + one per map + the colour bar."""
    import textwrap

    if len(maps) != len(names):
        raise ValueError(f"{len(maps)} maps but {len(names)} names")
    n = len(maps) + 1
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n + 0.6, 3.2), squeeze=False)
    axes = axes[0]
    axes[0].imshow(display_image(image))
    axes[0].set_title("image", fontsize=9)
    im = None
    for ax, m, name in zip(axes[1:], maps, names):
        im = ax.imshow(m, vmin=0, vmax=1, cmap="magma")
        lines = textwrap.wrap(name, width) or [""]
        if len(lines) > max_lines:
            lines = lines[: max_lines - 1] + [_short(" ".join(lines[max_lines - 1:]), width)]
        ax.set_title("\n".join(lines), fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        if pixel is not None:   # white under black: visible on dark and bright pixels
            ax.plot(pixel[1], pixel[0], marker="x", color="white", markersize=10, mew=3.5)
            ax.plot(pixel[1], pixel[0], marker="x", color="black", markersize=9, mew=1.5)
    fig.tight_layout()
    if im is not None:
        fig.colorbar(im, ax=list(axes), shrink=0.8, label="activation $p_k$")
    return fig


def contribution_bars(explanation, top: int = 10, max_label_chars: int = 40):
    """Horizontal bars: each property's contribution to the predicted class and to the rival (the runner-up of
    ``explain_pixel`` / ``explain_region``, or the class asked about in ``why_not``), for the ``top``
    properties with the largest contribution to either. A class's contributions sum to its cosine score."""
    import numpy as np

    e = explanation
    a, b = e.contribution(e.predicted), e.contribution(e.rival)
    ks = np.flatnonzero(np.maximum(np.abs(a), np.abs(b)) > 1e-3)   # a row without a visible bar says nothing
    ks = ks[np.argsort(-np.maximum(np.abs(a[ks]), np.abs(b[ks])), kind="stable")][:top]
    rows = np.arange(len(ks))
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.38 * max(len(ks), 1)))
    h = 0.4
    ax.barh(rows - h / 2, a[ks], h, color="#4C72B0",
            label=f"{e.predicted} (score {e.scores[e.predicted]:.3f})")
    ax.barh(rows + h / 2, b[ks], h, color="#DD8452", label=f"{e.rival} (score {e.scores[e.rival]:.3f})")
    ax.set_yticks(rows, [_short(e.property_names[k], max_label_chars) for k in ks], fontsize=8)
    ax.invert_yaxis()  # largest first
    ax.set_xlabel("contribution to the cosine score")
    ax.set_title(f"{e.where}: {e.predicted} vs {e.rival} (gap {e.gap:.3f})", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def class_score_figure(image, scores, class_names, show: list[str], pixel=None):
    """The image, then the cosine score map of each class in ``show`` (e.g. a class added to the bank after
    training), on one colour scale; ``pixel`` (row, col) is marked on every panel."""
    import matplotlib.pyplot as plt

    idx = [class_names.index(c) for c in show]
    fig, axes = plt.subplots(1, len(idx) + 1, figsize=(3.0 * (len(idx) + 1), 3.2))
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=10)
    lo, hi = float(scores[idx].min()), float(scores[idx].max())
    for ax, i in zip(axes[1:], idx):
        im = ax.imshow(scores[i], vmin=lo, vmax=hi, cmap="magma")
        ax.set_title(f"score: {class_names[i]}", fontsize=10)
    for ax in axes:
        ax.axis("off")
        if pixel is not None:
            ax.plot(pixel[1], pixel[0], marker="+", color="cyan", ms=12, mew=2)
    fig.colorbar(im, ax=list(axes[1:]), fraction=0.03, pad=0.02, label="cos(p, y_c)")
    return fig


def training_samples(dataset, n: int = 4, palette=None, ignore_index: int = IGNORE_INDEX):
    """The first ``n`` images of a split next to their label maps, as the network sees them (normalised images
    shown back in colour; ignored pixels black)."""
    import numpy as np

    pal = np.zeros((256, 3), np.uint8)
    if palette is not None:
        pal[: len(palette)] = np.asarray(palette, np.uint8)
    pal[ignore_index] = 0
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 4.4), squeeze=False)
    for i in range(n):
        image, label = dataset[i]
        axes[0, i].imshow(display_image(image))
        axes[1, i].imshow(pal[np.asarray(label)])
        for r in (0, 1):
            axes[r, i].set_xticks([])
            axes[r, i].set_yticks([])
    axes[0, 0].set_ylabel("image")
    axes[1, 0].set_ylabel("label map")
    fig.tight_layout()
    return fig
