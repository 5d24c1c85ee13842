"""Tables and figures of the grids behind notebooks 09 and 11: the unseen-class protocol (``configs/grid_unseen.yaml``)
the training budget (``configs/grid_budget.yaml``), the property-supervision settings
(``configs/grid_settings.yaml``) and the learning rate x head initialisation (``configs/grid_lr_init.yaml``), mean ±
std over seeds straight from their runs.csv."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..files import atomic_write_text
from ..fmt import mean_std
from .tables import load_grid_results

MODE_LABEL = {"property": "property (ProLab)", "category": "category (one-hot, cross-entropy)",
              "name_embedding": "class-name embedding (cosine to the name's MiniLM embedding)"}
UNSEEN_COLUMNS = [("seen_mIoU", "seen mIoU"), ("unseen_mIoU", "unseen mIoU"), ("HM", "HM"),
                  ("cal_seen_mIoU", "seen mIoU (cal.)"), ("cal_unseen_mIoU", "unseen mIoU (cal.)"),
                  ("cal_HM", "HM (cal.)")]


def _modes(runs: pd.DataFrame) -> list[str]:
    return [m for m in MODE_LABEL if m in set(runs["mode"])] + sorted(set(runs["mode"]) - set(MODE_LABEL))


def unseen_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per supervision mode: seen / unseen mIoU and their harmonic mean, uncalibrated and calibrated
    (mean ± std over seeds), the chosen gamma, and the number of runs."""
    missing = [c for c, _ in UNSEEN_COLUMNS if c not in runs]
    if missing:
        raise ValueError(f"these runs carry no unseen-protocol columns {missing}: was the grid run with "
                         "train.unseen set (configs/grid_unseen.yaml)?")
    rows = []
    for mode in _modes(runs):
        r = runs[runs["mode"] == mode]
        rows.append({"supervision": MODE_LABEL.get(mode, mode), **{label: mean_std(r[c]) for c, label in UNSEEN_COLUMNS},
                     "gamma (mean)": f"{r['gamma'].mean():.3g}", "runs": len(r)})
    return pd.DataFrame(rows)


def budget_table(runs: pd.DataFrame, meta: dict | None = None, metric: str = "mIoU") -> pd.DataFrame:
    """mIoU (mean ± std over seeds) per supervision mode (rows) and training length (columns: the lengths the
    grid plans, from its grid.json ``meta``, and any it holds); a cell not yet run says so, so a partly
    finished sweep reads as such."""
    planned = ((meta or {}).get("cross") or {}).get("iters") or []
    iters = sorted({int(i) for i in runs["iters"].dropna().unique()} | {int(i) for i in planned})
    out = pd.DataFrame(index=[MODE_LABEL.get(m, m) for m in _modes(runs)], columns=[f"{i} iters" for i in iters])
    for mode in _modes(runs):
        for i in iters:
            r = runs[(runs["mode"] == mode) & (runs["iters"] == i)][metric]
            out.loc[MODE_LABEL.get(mode, mode), f"{i} iters"] = mean_std(r) + f" (n={len(r)})" if len(r) else "not run"
    out.index.name = "supervision"
    return out.reset_index()


def budget_gaps(runs: pd.DataFrame, metric: str = "mIoU") -> pd.DataFrame:
    """Property minus category mIoU at each length, paired by seed (``claims.paired``: the mean of the per-seed
    differences and its standard error)."""
    from .claims import paired

    rows = []
    for i in sorted(int(i) for i in runs["iters"].dropna().unique()):
        at = runs["iters"] == i
        d = paired(runs, (runs["mode"] == "property") & at, (runs["mode"] == "category") & at, "property",
                   "category", metric)
        if d.n:
            rows.append({"iters": i, "property - category": round(d.mean, 2),
                         "standard error": None if np.isnan(d.se) else round(d.se, 2),
                         "seeds paired": d.n})
    return pd.DataFrame(rows)


SETTING_AXES = {"temperature": "T = {:g}", "normalize": "L2-normalised pixel embedding",
                "onehot_warmup_iters": "one-hot warm-up of {:d} iterations", "mode": "{}",
                "head_init": "embedding layer with the {} init",
                "normalize_bank": "raw K-Means centres as the bank (rows not L2-normalised)",
                "aux_weight": "auxiliary weight {:g} (the configs' value; the release trains with 1.0)",
                "lr": "lr {:g}"}


def _setting_value(axis: str, value):
    """A grid value as read back from CSV (1.0 for True, 30.0 for 30) in its own type."""
    if axis == "onehot_warmup_iters":
        return int(float(value))
    if axis in ("temperature", "aux_weight", "lr"):
        return float(value)
    return value


def settings_table(runs: pd.DataFrame, metric: str = "mIoU") -> pd.DataFrame:
    """One row per setting of a one-at-a-time grid (``configs/grid_settings.yaml``): the base property run,
    each varied setting, category supervision; mean ± std over seeds and the difference to category supervision
    paired by seed (mean of the per-seed differences, with its standard error)."""
    from .claims import paired

    cat = runs["mode"] == "category"
    rows = []
    for axis in dict.fromkeys(runs["axis"]):
        grp = runs[runs["axis"] == axis]
        for value, r in grp.groupby(grp[axis].astype(str) if axis != "base" else grp["axis"], sort=False):
            label = ("base: property, " + ", ".join(f"T = {float(r[a].iloc[0]):g}" for a in ("temperature",) if a in r)
                     if axis == "base" else SETTING_AXES.get(axis, f"{axis} = {{}}").format(
                         MODE_LABEL.get(value, value) if axis == "mode" else _setting_value(axis, value)))
            x = r[metric]
            d = paired(runs, runs.index.isin(r.index), cat, "setting", "category", metric)
            rows.append({"setting": label, metric: mean_std(x), "runs": len(x),
                         "- category": "" if axis == "mode" or not d.n else f"{d.mean:+.2f}",
                         "standard error": "" if axis == "mode" or np.isnan(d.se) else f"{d.se:.2f}"})
    return pd.DataFrame(rows)


def budget_verdict(budget_runs: pd.DataFrame, settings_runs: pd.DataFrame | None = None,
                   metric: str = "mIoU") -> str:
    """The answer to "is it the budget, the settings or a defect?" in words, computed from the two grids: the
    property - category gap at each length (paired by seed: mean difference ± its standard error; "level" within
    two standard errors), whether it shrinks as training gets longer, whether each mode improves with length, and
    which property settings, if any, reach category supervision."""
    gaps = budget_gaps(budget_runs, metric)
    if gaps.empty:
        return "The budget grid holds no length with both property and category runs yet."
    parts = []
    for _, g in gaps.iterrows():
        d, se = g["property - category"], g["standard error"]
        rel = "is level with" if se is not None and abs(d) <= 2 * se else ("trails" if d < 0 else "leads")
        parts.append(f"at {int(g['iters'])} iterations property {rel} category ({d:+.2f} ± {se} {metric})")
    text = "; ".join(parts) + "."
    if len(gaps) > 1:
        first, last = gaps.iloc[0], gaps.iloc[-1]
        shrink = abs(last["property - category"]) < abs(first["property - category"])
        text += (f" From {int(first['iters'])} to {int(last['iters'])} iterations the gap "
                 f"{'shrinks' if shrink else 'does not shrink'} ({first['property - category']:+.2f} -> "
                 f"{last['property - category']:+.2f}).")
        for mode in ("property", "category"):
            means = budget_runs[budget_runs["mode"] == mode].groupby("iters")[metric].mean().sort_index()
            rising = bool((means.diff().dropna() > 0).all())
            text += (f" {mode.capitalize()} {metric} {'rises' if rising else 'does not rise'} at every longer "
                     f"length ({' -> '.join(f'{v:.1f}' for v in means)}).")
    if settings_runs is not None and not settings_runs.empty and (settings_runs["mode"] == "category").any():
        t = settings_table(settings_runs, metric)
        t = t[t["- category"] != ""].reset_index(drop=True)
        diffs = t["- category"].astype(float)
        ses = pd.to_numeric(t["standard error"], errors="coerce").fillna(0.0)
        reach = t.loc[diffs >= -2 * ses, "setting"].tolist()
        best = t.loc[diffs.idxmax()]
        text += (f" Of the {len(t)} property settings of the settings grid, "
                 f"{'none reaches' if not reach else ', '.join(reach) + (' reaches' if len(reach) == 1 else ' reach')}"
                 f" category supervision within two standard errors; the closest is {best['setting']} "
                 f"({best['- category']} {metric}).")
    return text


def plot_budget(runs: pd.DataFrame, metric: str = "mIoU"):
    """mIoU against training iterations (log scale), one line per supervision mode: seeds as dots, means joined."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for mode in _modes(runs):
        r = runs[runs["mode"] == mode]
        ax.scatter(r["iters"], r[metric], s=14, alpha=0.45)
        m = r.groupby("iters")[metric].mean()
        ax.plot(m.index, m.values, marker="o", label=MODE_LABEL.get(mode, mode).split(" (")[0],
                color=ax.collections[-1].get_facecolor()[0][:3])
    ax.set_xscale("log")
    ax.set_xticks(sorted(runs["iters"].unique()))
    ax.set_xticklabels([str(int(i)) for i in sorted(runs["iters"].unique())])
    ax.set_xlabel("training iterations")
    ax.set_ylabel(f"{metric} (seeds; mean joined)")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_lr_init(runs: pd.DataFrame, metric: str = "mIoU"):
    """mIoU against the learning rate (log scale), one panel per initialisation of the head's last layer, one
    line per supervision mode: seeds as dots, means joined. The panels share their y axis."""
    import matplotlib.pyplot as plt

    inits = sorted(runs["head_init"].unique())
    lrs = sorted(runs["lr"].unique())
    fig, axes = plt.subplots(1, len(inits), figsize=(4.6 * len(inits), 3.8), sharey=True, squeeze=False)
    for ax, init in zip(axes[0], inits):
        r = runs[runs["head_init"] == init]
        for mode, marker in zip(_modes(r), ("o", "s", "^")):
            m = r[r["mode"] == mode]
            ax.scatter(m["lr"], m[metric], s=14, alpha=0.45, marker=marker)
            mean = m.groupby("lr")[metric].mean()
            ax.plot(mean.index, mean.values, marker=marker, label=MODE_LABEL.get(mode, mode).split(" (")[0],
                    color=ax.collections[-1].get_facecolor()[0][:3])
        ax.set_xscale("log")
        ax.set_xticks(lrs, [f"{v:g}" for v in lrs])
        ax.minorticks_off()
        ax.set_xlabel("learning rate")
        ax.set_title(f"{init} initialisation", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{metric} (seeds; mean joined)")
    axes[0][0].legend(frameon=False)
    fig.tight_layout()
    return fig


def lr_init_verdict(runs: pd.DataFrame, metric: str = "mIoU") -> str:
    """Property - category paired by seed at every (initialisation, learning rate), counted per initialisation:
    where property supervision is ahead, behind or level (within two standard errors)."""
    from .claims import paired

    parts = []
    for init, r in runs.groupby("head_init", sort=True):
        signs = []
        for lr, g in r.groupby("lr", sort=True):
            p = paired(g, g["mode"] == "property", g["mode"] == "category", "property", "category", metric)
            signs.append(p.sign)
        n = len(signs)
        parts.append(f"with the {init} initialisation property is ahead at {signs.count(1)} of {n} learning "
                     f"rates, behind at {signs.count(-1)}, level at {signs.count(0)}")
    return "Property - category, paired by seed: " + "; ".join(parts) + "."


def init_effect(runs: pd.DataFrame, metric: str = "mIoU", start: str = "pytorch", to: str = "release") -> str:
    """How the start moves each head: per mode, the change of mean mIoU from the ``start`` initialisation to the
    ``to`` one at every learning rate (means over seeds; the two starts share seeds)."""
    means = runs.groupby(["mode", "lr", "head_init"])[metric].mean().unstack("head_init")
    if start not in means or to not in means:
        return f"the grid lacks the {start!r} or the {to!r} initialisation"
    parts = []
    for mode in _modes(runs):
        d = (means.loc[mode, to] - means.loc[mode, start]).sort_index()
        parts.append(f"{mode} " + ", ".join(f"{v:+.2f} at lr {lr:g}" for lr, v in d.items()))
    return f"From the {start} to the {to} initialisation, {metric} changes by: " + "; ".join(parts) + "."


def plot_calibration(curve: pd.DataFrame, gamma: float):
    """Seen mIoU, unseen mIoU and their harmonic mean on the calibration images against gamma."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    c = curve.sort_values("gamma")
    for col in ("seen mIoU", "unseen mIoU", "HM"):
        ax.plot(c["gamma"], c[col], marker=".", label=col)
    ax.axvline(gamma, color="grey", ls="--", lw=1, label=f"chosen gamma = {gamma:.3g}")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("gamma (subtracted from every seen class's score)")
    ax.set_ylabel("IoU (calibration images)")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def write_protocol_tables(grid_folder: str | Path) -> Path:
    """tables.md in a grid folder: the unseen table when the runs carry the protocol, the budget table and
    gaps when they vary iters."""
    runs, _, meta = load_grid_results(grid_folder)
    dataset = meta.get("dataset", "?")
    on = "the embedded default" if dataset == "synthetic_outdoor" else f"the dataset '{dataset}'"
    parts = [f"# {meta.get('name', Path(grid_folder).name)}: generated from runs.csv by "
             f"`prolab.reports.protocols.write_protocol_tables` (mean ± std over seeds; CPU scale, {on}; "
             "not the paper's numbers)\n"]
    if "cal_HM" in runs:
        parts.append("## Unseen-class protocol (test: odd val images; gamma chosen on the even ones)\n\n"
                     + unseen_table(runs).to_markdown(index=False) + "\n")
    if "axis" in runs and set(runs["axis"]) & (set(SETTING_AXES) - {"mode"}):
        parts.append("## Property-supervision settings at one training length\n\n"
                     + settings_table(runs).to_markdown(index=False, disable_numparse=True) + "\n")
    if "iters" in runs and runs["iters"].notna().any() and runs["iters"].nunique() > 1:
        parts.append("## mIoU by training length\n\n" + budget_table(runs, meta).to_markdown(index=False) + "\n\n"
                     + budget_gaps(runs).to_markdown(index=False, floatfmt=".2f") + "\n")
    return atomic_write_text(Path(grid_folder) / "tables.md", "\n".join(parts))


__all__ = ["unseen_table", "budget_table", "budget_gaps", "settings_table", "budget_verdict", "plot_budget", "plot_calibration",
           "write_protocol_tables", "MODE_LABEL"]
