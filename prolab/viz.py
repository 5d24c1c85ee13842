"""Figures shared by the notebooks. Each function returns the matplotlib Figure (and never calls show)."""
from __future__ import annotations

import matplotlib.pyplot as plt


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
