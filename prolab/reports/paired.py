"""Two settings of a grid compared seed by seed: each seed's pair of runs, and the IoU gap class by class.

Two runs of a grid with the same seed share the initialisation, the data order and the augmentation, so their
difference removes what the seed alone does (notebook 07). ``paired_seeds`` and ``plot_paired_seeds`` show
those pairs for the whole-image metric; ``class_gap`` and ``plot_class_gap`` split the same comparison by class
(``per_class.csv``, written by ``prolab.reports.tables.write_class_iou``), which tells whether a gap in mIoU is
many classes moving a little or a few classes moving a lot.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .tables import setting_label


def _by_seed(frame: pd.DataFrame, setting: str, column: str) -> pd.Series:
    rows = frame[frame["setting"] == setting]
    if rows.empty:
        known = ", ".join(sorted(frame["setting"].unique()))
        raise KeyError(f"no runs of setting {setting!r}; the grid has: {known}")
    return rows.groupby("seed")[column].mean()


def paired_seeds(runs: pd.DataFrame, a: str = "base", b: str = "mode=category", metric: str = "mIoU") -> pd.DataFrame:
    """One row per seed that both settings ran: the metric of each (settings named as in ``per_class.csv``:
    ``base`` or ``axis=value``) and their difference ``a - b``."""
    frame = runs.assign(setting=runs.apply(setting_label, axis=1))
    sa, sb = _by_seed(frame, a, metric), _by_seed(frame, b, metric)
    seeds = sorted(set(sa.index) & set(sb.index))
    return pd.DataFrame({"seed": seeds, a: [sa[s] for s in seeds], b: [sb[s] for s in seeds],
                         f"{a} - {b}": [sa[s] - sb[s] for s in seeds]})


def plot_paired_seeds(pairs: pd.DataFrame, labels: tuple[str, str] | None = None, metric: str = "mIoU"):
    """A slope chart: one line per seed from setting a to setting b, so a difference that every seed shows
    reads as parallel lines, and one that flips with the seed as crossing ones."""
    import matplotlib.pyplot as plt

    a, b = pairs.columns[1], pairs.columns[2]
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    for _, r in pairs.iterrows():
        d = r[a] - r[b]
        ax.plot([0, 1], [r[a], r[b]], marker="o", color="#1f77b4" if d > 0 else "#d62728")
        ax.annotate(f"seed {int(r['seed'])}: {d:+.2f}", (1, r[b]), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=8)
    ax.set_xticks([0, 1], labels or (a, b))
    ax.set_xlim(-0.3, 1.8)
    ax.set_ylabel(f"{metric} (one run per seed)")
    ax.set_title("paired by seed (blue: first ahead, red: behind)", fontsize=9)
    fig.tight_layout()
    return fig


def class_gap(per_class: pd.DataFrame, a: str = "base", b: str = "mode=category") -> pd.DataFrame:
    """Per class: the mean IoU of settings ``a`` and ``b`` over the seeds both ran, the mean per-seed difference
    ``a - b`` with its standard error (``s_d / sqrt(n)``; NaN with one seed) and ``n``; sorted by the
    difference, largest first. ``per_class`` has the columns of ``per_class.csv`` (setting, seed, cell, then one
    column per class)."""
    if "split" in per_class:
        per_class = per_class[per_class["split"] == per_class["split"].iloc[0]]
    from ..pairing import paired

    classes = [c for c in per_class.columns if c not in ("setting", "seed", "cell", "split")]
    in_a, in_b = per_class["setting"] == a, per_class["setting"] == b
    for setting, mask in ((a, in_a), (b, in_b)):
        if not mask.any():
            _by_seed(per_class, setting, classes[0])          # the error that lists the grid's settings
    rows = []
    for c in classes:
        p = paired(per_class, in_a, in_b, a, b, metric=c)
        rows.append({"class": c, a: p.a_mean, b: p.b_mean, "difference": p.mean, "se": p.se, "n": p.n})
    return pd.DataFrame(rows).sort_values("difference", ascending=False, ignore_index=True)


def plot_class_gap(gap: pd.DataFrame, title: str = "per-class IoU difference"):
    """Horizontal bars, one per class, with two standard errors as whiskers: a bar whose whiskers cross zero is
    level at this number of seeds."""
    import matplotlib.pyplot as plt

    a, b = gap.columns[1], gap.columns[2]
    fig, ax = plt.subplots(figsize=(6.4, 0.26 * len(gap) + 1.2))
    y = np.arange(len(gap))[::-1]
    colours = np.where(gap["difference"] > 0, "#1f77b4", "#d62728")
    ax.barh(y, gap["difference"], xerr=2 * gap["se"].fillna(0), color=colours, edgecolor="black", linewidth=0.4,
            error_kw={"elinewidth": 0.8, "capsize": 2})
    ax.set_yticks(y, gap["class"])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"IoU {a} - {b} (mean over seeds; whiskers: 2 standard errors)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def class_gap_of(grid_folder, a: str = "base", b: str = "mode=category") -> pd.DataFrame | None:
    """``class_gap`` of a grid folder's ``per_class.csv``; None when the grid has none (it is written after the
    grid: ``prolab grid`` writes it when its last cell finishes, ``prolab.reports.tables.write_class_iou`` on demand)."""
    from .. import paths

    f = paths.resolve(grid_folder) / "per_class.csv"
    return class_gap(pd.read_csv(f), a, b) if f.is_file() else None


def paired_lines(pairs: pd.DataFrame, gap: pd.DataFrame | None = None, top: int = 3) -> list[str]:
    """What the two views say, in sentences: the per-seed differences and whether their sign holds; with the
    class gap, the classes that move most and their share of the summed per-class differences."""
    a, b, d = pairs.columns[1], pairs.columns[2], pairs.iloc[:, 3]
    sign = ("the same sign on every seed" if (d > 0).all() or (d < 0).all() else "the sign changes with the seed")
    lines = [f"{a} - {b} per seed: " + ", ".join(f"seed {int(s)} {v:+.2f}" for s, v in zip(pairs["seed"], d))
             + f" ({sign})."]
    if gap is not None and gap["difference"].abs().sum() > 0:
        big = gap.reindex(gap["difference"].abs().sort_values(ascending=False).index).head(top)
        share = big["difference"].abs().sum() / gap["difference"].abs().sum()
        lines.append("Class by class, the largest gaps: " + ", ".join(
            f"{r['class']} {r['difference']:+.2f} ± {r['se']:.2f}" for _, r in big.iterrows())
            + f"; these {len(big)} of {len(gap)} classes make {share:.0%} of the summed per-class differences.")
    return lines


__all__ = ["paired_seeds", "plot_paired_seeds", "class_gap", "plot_class_gap", "class_gap_of", "paired_lines"]
