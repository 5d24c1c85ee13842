"""Paper-shaped ablation tables, regenerated from the grid's tidy CSV (nothing else is read).

Each table lists our value of the varied setting, mIoU as mean ± std over seeds (with the number of runs),
and the paper's number for the corresponding setting, taken from ``prolab.paper`` (arXiv 2312.13764).
Our runs are at CPU scale on the embedded synthetic dataset: compare directions, not magnitudes.
Besides the tables: ``plot_axis`` (ours beside the paper's, one figure per axis), ``describe_grid`` and
``findings`` (sentences computed from the CSV, for notebook 07).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..fmt import mean_std

from .. import paper
from ..files import atomic_write_text

TITLES = {"n_properties": "Number of properties", "embedder": "Embedder", "loss": "Loss", "prompt": "Prompt",
          "llm": "LLM", "mode": "Property vs category supervision", "method": "Clustering method",
          "temperature": "Temperature", "separate": "Near-collisions separated (--separate)",
          "normalize": "L2-normalised pixel embedding", "onehot_warmup_iters": "One-hot warm-up (iterations)",
          "repair": "Identical signatures repaired (--repair)"}
PAPER_COLUMN = "paper (ADE20K)"
NUMERIC_AXES = ("n_properties", "temperature")
# which K row of the paper matches ours: same descriptions per property within a factor exp(0.35) ~ 1.4
_RATIO_TOLERANCE = 0.35


# --- the paper's side -----------------------------------------------------------------------------------------

def _paper_k_rows() -> dict[float, str]:
    """{descriptions per property on ADE20K: "K=..: mIoU"} for the paper's K ablation."""
    n_ade = paper.descriptor_count("ADE20K").descriptions
    k = paper.ablation("n_properties")
    return {n_ade / key: f"{k.labels[key]}: {value:.1f}" for key, value in k.values.items()}


def paper_cell(axis: str, value, n_descriptions: float | None = None) -> str:
    """The paper's number (or ordering) printed beside our row ``axis = value``; "" where there is none.

    K is matched by descriptions per property: our n/K against ADE20K's 1478/K.
    """
    if axis == "n_properties":
        if not n_descriptions or value is None or value != value or not float(value):
            return ""
        ratio = n_descriptions / float(value)
        rows = _paper_k_rows()
        best = min(rows, key=lambda r: abs(np.log(r / ratio)))
        return rows[best] if abs(np.log(best / ratio)) < _RATIO_TOLERANCE else ""
    if axis == "mode":
        ade = paper.main_result("ADE20K")
        return {"property": f"{ade.prolab:.1f}", "category": f"{ade.category:.1f}"}.get(str(value), "")
    if axis == "loss":
        v = paper.ablation("loss").values.get(str(value))
        return "" if v is None else f"{v:.1f}"
    if axis == "prompt":
        return paper.ablation("prompt").summary() if str(value) == "structured" else ""
    if axis in ("llm", "embedder"):
        return paper.ablation(axis).summary()
    if axis == "method":
        return f"the paper's release clusters with {paper.TRAINING.clustering}"
    if axis == "temperature":
        return f"the paper uses T = {paper.TRAINING.temperature:g} (0.01 with normalised embeddings)"
    if axis == "separate":
        return "not in the paper (it checks identical signatures only)" if str(value) == "False" else ""
    if axis == "repair":
        return "the release prints colliding signatures and leaves them" if str(value) in ("False", "nan") else ""
    return ""


def paper_source(axis: str) -> str:
    """Where the paper column of ``axis`` comes from (arXiv id and experiment)."""
    if axis == "mode":
        return f"{paper.MAIN_RESULTS_SOURCE}, ADE20K row, {paper.TRAINING.short}"
    if axis in paper.ABLATIONS:
        a = paper.ablation(axis)
        return f"{a.source}; dataset: {a.dataset}"
    if axis == "separate":
        return "none: the separation of near-collisions is this kit's own (prolab.properties.collisions)"
    if axis == "repair":
        return "none: the repair of identical signatures is this kit's own (prolab.properties.collisions)"
    return paper.TRAINING.source


# --- our side -------------------------------------------------------------------------------------------------

def _axis_rows(runs: pd.DataFrame, axis: str) -> pd.DataFrame:
    if axis not in runs.columns:
        return runs.iloc[0:0]
    return runs[(runs["axis"] == "base") | (runs["axis"] == axis)]


def axis_stats(runs: pd.DataFrame, axis: str, metric: str = "mIoU") -> pd.DataFrame:
    """Per value of ``axis`` (base runs and the runs varying it): mean, std (ddof 1), n, base flag, the runs."""
    rows = _axis_rows(runs, axis)
    out = []
    for value, grp in (rows.groupby(rows[axis].astype(str), sort=False) if len(rows) else []):
        v = grp[metric].dropna()
        out.append({"value": value, "raw": grp[axis].iloc[0], "mean": v.mean(), "std": v.std(ddof=1), "n": len(v),
                    "base": bool((grp["axis"] == "base").any()), "runs": v.tolist()})
    df = pd.DataFrame(out, columns=["value", "raw", "mean", "std", "n", "base", "runs"])
    if axis in NUMERIC_AXES and len(df):
        df = df.sort_values("raw", key=lambda s: pd.to_numeric(s, errors="coerce"))
    return df.reset_index(drop=True)


@lru_cache(maxsize=None)
def _demo_value(axis: str):
    """A training setting's value in the demo preset (the grids' starting point), resolved once."""
    from ..train.config import TrainConfig

    return getattr(TrainConfig.preset("demo"), axis, None)


def value_label(axis: str, value, train: dict | None = None) -> str:
    """A grid value as a table shows it: booleans as on/off (the CSV holds 1.0/0.0), whole numbers without
    ``.0``, and a training setting the base leaves to the preset as the value the runs used (the grid's
    ``train`` section, else the demo preset's)."""
    from ..pipeline.grid import AXES, DEFAULT_BASE, TRAIN_AXES

    if value is None or (isinstance(value, float) and value != value):
        if axis in TRAIN_AXES:     # left to the grid's `train` section, else the preset
            value = train[axis] if train and train.get(axis) is not None else _demo_value(axis)
            if value is None or value == "":
                return "none"
        elif DEFAULT_BASE.get(axis) is None:
            return "—"
        else:                      # a row written before the axis existed ran at its default
            value = DEFAULT_BASE[axis]
    if AXES.get(axis) is bool:
        return "on" if str(value).lower() in ("true", "1", "1.0") else "off"
    if AXES.get(axis) is int:
        return str(int(float(value)))
    if AXES.get(axis) is float:
        return f"{float(value):g}"
    return str(value)


def ablation_table(runs: pd.DataFrame, axis: str, n_descriptions: float | None = None,
                   train: dict | None = None) -> pd.DataFrame:
    """One row per value of ``axis``: the base runs and the runs that varied this axis (values as
    ``value_label`` shows them, so the base row of a training setting names the value it ran with)."""
    rows = _axis_rows(runs, axis)
    if rows.empty:
        return pd.DataFrame()
    key = rows[axis].map(lambda v: value_label(axis, v, train))
    out = []
    for value, grp in rows.groupby(key, sort=False):
        out.append({TITLES.get(axis, axis): value, "mIoU (ours)": mean_std(grp["mIoU"]), "mAcc (ours)": mean_std(grp["mAcc"]),
                    "runs": len(grp), "base": "yes" if (grp["axis"] == "base").any() else "",
                    PAPER_COLUMN: paper_cell(axis, grp[axis].iloc[0], n_descriptions)})
    df = pd.DataFrame(out)
    if axis in NUMERIC_AXES:
        df = df.sort_values(TITLES[axis], key=lambda s: pd.to_numeric(s, errors="coerce"))
    return df.reset_index(drop=True)


def all_tables(runs: pd.DataFrame, n_descriptions: float | None = None,
               train: dict | None = None) -> dict[str, pd.DataFrame]:
    axes = [a for a in TITLES if a in set(runs["axis"])]
    return {a: ablation_table(runs, a, n_descriptions, train) for a in axes}


def dataset_title(dataset: str) -> str:
    """How the tables name a grid's data (``dataset``: a registered name or a dataset YAML's name)."""
    from ..datasets import DATASETS

    if dataset == "synthetic_outdoor":
        return "the embedded synthetic dataset"
    return DATASETS[dataset].title if dataset in DATASETS else f"the dataset {dataset!r}"


def write_tables(runs: pd.DataFrame, out_dir: str | Path, n_descriptions: float | None = None,
                 dataset: str = "synthetic_outdoor", train: dict | None = None, split: str = "val") -> Path:
    """tables/<axis>.csv for each varied axis and one tables.md with all of them (``train``: the grid's
    ``train`` section, naming the values its base runs used; ``split``: the split mIoU is scored on)."""
    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    md = ["# Ablation tables", "",
          "Generated from runs.csv by `prolab.reports.tables.write_tables`. Ours: mean ± std over seeds at CPU",
          f"scale on {dataset_title(dataset)}, scored on its {split} split. Paper: " + paper.CITATION + ";",
          f"its main results are for {paper.TRAINING.short}. The source of each paper column is under its table.", ""]
    for axis, df in all_tables(runs, n_descriptions, train).items():
        atomic_write_text(out / "tables" / f"{axis}.csv", df.to_csv(index=False))
        md += [f"## {TITLES.get(axis, axis)}", "", df.to_markdown(index=False, disable_numparse=True), "",
               f"Paper column: {paper_source(axis)}.", ""]
    atomic_write_text(out / "tables.md", "\n".join(md))
    return out


def write_grid_tables(runs: pd.DataFrame, grid_folder: str | Path, meta: dict, enabled: bool = True) -> str:
    """``write_tables`` into the grid's folder when ``enabled``; returns a line saying what happened."""
    if not enabled:
        return "tables not written (write = False)"
    from .. import paths

    write_tables(runs, paths.resolve(grid_folder), meta.get("n_descriptions"), meta.get("dataset", "synthetic_outdoor"),
                 meta.get("train"), (meta.get("splits") or ["val"])[0])
    return f"tables written to {grid_folder}/tables.md and {grid_folder}/tables/"


def load_grid_results(grid_folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(runs, curves, grid description) from a grid's results folder."""
    import json

    from .. import paths

    d = paths.resolve(grid_folder)
    if not (d / "runs.csv").exists():
        raise FileNotFoundError(f"{d / 'runs.csv'} not found: run `prolab grid` first")
    runs = pd.read_csv(d / "runs.csv")
    curves = pd.read_csv(d / "curves.csv") if (d / "curves.csv").exists() else pd.DataFrame()
    meta = json.loads((d / "grid.json").read_text()) if (d / "grid.json").exists() else {}
    return runs, curves, meta


def mean_curves(runs: pd.DataFrame, curves: pd.DataFrame, axis: str = "mode") -> dict[str, list[dict]]:
    """Training loss per iteration averaged over seeds, per value of ``axis`` among the base and its variants."""
    sel = runs[(runs["axis"] == "base") | (runs["axis"] == axis)][["cell", axis]]
    merged = curves.merge(sel, on="cell")
    out = {}
    for value, grp in merged.groupby(axis):
        mean = grp.groupby("iteration")["loss"].mean()
        out[str(value)] = [{"iteration": int(i), "loss": float(v)} for i, v in mean.items()]
    return out


# --- figure ---------------------------------------------------------------------------------------------------

def _paper_points(axis: str) -> tuple[list, list[float], str]:
    """(x labels or values, mIoU, panel title) of the paper's numbers for ``axis``; empty when none recorded."""
    if axis == "n_properties":
        n_ade = paper.descriptor_count("ADE20K").descriptions
        k = paper.ablation("n_properties")
        title = f"paper: K ablation, ADE20K ({n_ade} descriptions)"
        return [n_ade / key for key in k.values], list(k.values.values()), title
    if axis == "mode":
        ade = paper.main_result("ADE20K")
        return ["property", "category"], [ade.prolab, ade.category], "paper: main results, ADE20K"
    if axis in paper.ABLATIONS and paper.ablation(axis).values:
        a = paper.ablation(axis)
        return [str(key) for key in a.values], list(a.values.values()), f"paper: {TITLES.get(axis, axis).lower()}"
    return [], [], f"paper: {TITLES.get(axis, axis).lower()}"


def _ratio_axis(ax, values: list[float], label: str) -> None:
    """Log x axis over ``values`` (both panels share it), ticks at round numbers, more properties to the left."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    lo, hi = min(values), max(values)
    ax.set_xlim(lo / 1.35, hi * 1.6)
    ticks = [t for t in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128) if lo / 1.35 <= t <= hi * 1.6]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(label)


def plot_axis(runs: pd.DataFrame, axis: str, metric: str = "mIoU", n_descriptions: float | None = None):
    """Ours (left: each seed as a dot, mean ± s as a bar) beside the paper's numbers for the same axis (right).

    For ``n_properties`` with ``n_descriptions`` given, both panels use descriptions per property n/K on the x
    axis, so our K and the paper's K sit where they are comparable. The two y axes have their own levels but the
    same span of points, so a gap looks as large on the right as on the left.
    """
    import matplotlib.pyplot as plt

    stats = axis_stats(runs, axis, metric)
    fig, (ax, axp) = plt.subplots(1, 2, figsize=(9, 3.4), gridspec_kw={"width_ratios": [3, 2]})
    by_ratio = axis == "n_properties" and bool(n_descriptions)
    if by_ratio:
        x = [n_descriptions / float(v) for v in stats["raw"]]
    else:
        x = list(range(len(stats)))
    for xi, (_, row) in zip(x, stats.iterrows()):
        ax.scatter([xi] * len(row["runs"]), row["runs"], s=14, color="0.6", zorder=2)
        ax.errorbar([xi], [row["mean"]], yerr=[0 if pd.isna(row["std"]) else row["std"]], fmt="o", color="C0",
                    capsize=4, zorder=3)
        label = f"K={row['value']}" if axis == "n_properties" else ""
        if label:
            ax.annotate(label, (xi, row["mean"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    px, py, ptitle = _paper_points(axis)
    if by_ratio:
        _ratio_axis(ax, x + px, "descriptions per property, n/K")
    else:
        ax.set_xticks(x, [v + (" (base)" if b else "") for v, b in zip(stats["value"], stats["base"])],
                      rotation=15, fontsize=8)
        ax.set_xlim(-0.5, len(x) - 0.5)
        ax.set_xlabel(TITLES.get(axis, axis))
    ax.set_ylabel(f"{metric} (seeds; mean ± s)")
    ax.set_title("ours (CPU, synthetic data)", fontsize=10)

    if py:
        pos = px if by_ratio else list(range(len(px)))
        axp.plot(pos, py, "D", color="C3")
        keys = list(paper.ablation("n_properties").values) if by_ratio else [None] * len(py)
        for p, v, k in zip(pos, py, keys):
            axp.annotate(f"{v:.1f}" if k is None else f"K={k}: {v:.1f}", (p, v), textcoords="offset points",
                         xytext=(6, 2), fontsize=8)
        if by_ratio:
            _ratio_axis(axp, x + px, f"descriptions per property, {paper.descriptor_count('ADE20K').descriptions}/K")
        else:
            axp.set_xticks(pos, px, rotation=15, fontsize=8)
            axp.set_xlim(-0.5, len(px) - 0.5)
        axp.set_ylabel(f"{metric} (paper)")
        # the same span of mIoU points as our panel, centred on the paper's values: a 0.6-point gap must not
        # fill the panel while ours spans ten times that
        span = max(float(np.subtract(*ax.get_ylim()[::-1])), max(py) - min(py) + 1.0)
        mid = (max(py) + min(py)) / 2
        axp.set_ylim(mid - span / 2, mid + span / 2)
    else:
        axp.axis("off")
        if axis in paper.ABLATIONS:
            text = "only an ordering is recorded:\n" + paper.ablation(axis).summary().replace(" > ", "\n> ")
        else:
            text = paper_cell(axis, None) or "no number recorded"
        axp.text(0.0, 0.5, text, fontsize=9, va="center", wrap=True, transform=axp.transAxes)
    axp.set_title(ptitle + f"\n(arXiv {paper.ARXIV_ID})", fontsize=9)
    fig.suptitle(f"{metric} vs {TITLES.get(axis, axis).lower()}", fontsize=11)
    fig.tight_layout()
    return fig


# --- sentences for "what you just saw" -------------------------------------------------------------------------

def grid_iterations(meta: dict) -> int:
    """Training iterations per cell: grid.json's ``train.iters``, else the demo preset's default."""
    train = dict(meta.get("train") or {})
    if "iters" in train:
        return int(train["iters"])
    from ..train.config import TrainConfig

    return TrainConfig.demo(**train).iters


def grid_provenance(folder) -> str:
    """Where a notebook's grid numbers come from: a committed grid folder, made by ``prolab grid`` beforehand,
    not by the notebook. One line: the folder, its config, its runs and seeds, and the CPU time its training
    took (``train_seconds``), so a student knows what re-making it costs."""
    from .. import paths

    runs, _, meta = load_grid_results(folder)
    seconds = float(runs["train_seconds"].sum()) if "train_seconds" in runs else float("nan")
    env = meta.get("environment") or {}
    return (f"read from {paths.portable(paths.resolve(folder))} (made by `prolab grid --config configs/"
            f"{meta.get('source', '?')}`, not by this notebook): {len(runs)} runs, seeds {meta.get('seeds', '?')}, "
            f"{seconds / 3600:.1f} hours of training on {env.get('cpu_count', '?')} CPU cores "
            f"({env.get('torch_threads', '?')} torch thread(s) per run)")


def describe_grid(runs: pd.DataFrame, meta: dict) -> str:
    """One paragraph: how many runs, on what, for how many iterations, against which paper setting."""
    keys = ["axis"] + [c for c in TITLES if c in runs.columns]
    settings = len(runs.drop_duplicates(subset=keys))
    src = "grid.json `train.iters`" if "iters" in (meta.get("train") or {}) else "the demo preset's default"
    return (f"{len(runs)} runs of grid {meta.get('name', '?')} on {meta.get('dataset', '?')}: {settings} settings, "
            f"seeds {meta.get('seeds', sorted(runs['seed'].unique().tolist()) if 'seed' in runs else '?')}, "
            f"each trained for {grid_iterations(meta)} iterations ({src}). "
            f"The paper: {paper.TRAINING.short}.")


def _ms(row) -> str:
    return f"{row['mean']:.2f}" + ("" if pd.isna(row["std"]) else f" ± {row['std']:.2f}") + f" (n={row['n']})"


def _gap(a, b) -> str:
    """``a - b`` in mIoU and in standard errors of the difference, sqrt(s_a^2/n_a + s_b^2/n_b)."""
    d = a["mean"] - b["mean"]
    if pd.isna(a["std"]) or pd.isna(b["std"]):
        return f"{abs(d):.2f}"
    se = np.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"])
    return f"{abs(d):.2f} ({abs(d) / se:.1f} standard errors of the difference)" if se > 0 else f"{abs(d):.2f}"


def _agree(same: bool) -> str:
    return "same direction as the paper" if same else "DIFFERS from the paper"


def _sentence(runs: pd.DataFrame, axis: str, n_descriptions: float | None) -> str | None:
    st = axis_stats(runs, axis)
    if len(st) < 2:
        return None
    by = {r["value"]: r for _, r in st.iterrows()}
    title = TITLES.get(axis, axis)
    listing = ", ".join(f"{r['value']} {_ms(r)}" for _, r in st.iterrows())

    if axis == "mode" and {"property", "category"} <= set(by):
        p, c = by["property"], by["category"]
        ade = paper.main_result("ADE20K")
        ahead = "property" if p["mean"] > c["mean"] else "category"
        return (f"{title}: property {_ms(p)} vs category {_ms(c)} mIoU; {ahead} ahead by "
                f"{_gap(p, c)}. The paper (ADE20K): property {ade.prolab} vs category {ade.category}, "
                f"property ahead by {ade.gain}: {_agree(ahead == 'property')}.")
    if axis == "n_properties":
        best = st.loc[st["mean"].idxmax()]
        k_ab = paper.ablation("n_properties")
        n_ade = paper.descriptor_count("ADE20K").descriptions
        kbest = max(k_ab.values, key=k_ab.values.get)
        per = (lambda k: f", {n_descriptions / float(k):.1f} descriptions per property") if n_descriptions else \
            (lambda k: "")
        largest = float(best["raw"]) == max(float(v) for v in st["raw"])
        trend = ("the largest K tried, so more properties were still helping" if largest
                 else "then mIoU falls again")
        return (f"{title}: {listing}. Best here K={best['value']}{per(best['raw'])}: {trend}. The paper's best on "
                f"ADE20K is K={kbest} ({n_ade / kbest:.1f} descriptions per property, {k_ab.values[kbest]}), and "
                f"beyond it K={max(k_ab.values)} drops to {k_ab.values[max(k_ab.values)]}: "
                f"{_agree(not largest)}.")
    if axis == "loss":
        a = paper.ablation("loss")
        common = [k for k in a.order() if k in by]
        ours = sorted(common, key=lambda k: -by[k]["mean"])
        verdict = "same order as the paper" if ours == common else "DIFFERS from the paper"
        return (f"{title}: ours in order {' > '.join(f'{k} {_ms(by[k])}' for k in ours)}; the paper: {a.summary()}: "
                f"{verdict if len(common) > 1 else 'no common settings'}.")
    if axis == "prompt" and {"structured", "naive"} <= set(by):
        s, n = by["structured"], by["naive"]
        ahead = "structured" if s["mean"] > n["mean"] else "naive"
        return (f"{title}: structured {_ms(s)} vs naive {_ms(n)}; {ahead} ahead by {_gap(s, n)}. The paper: "
                f"{paper.ablation('prompt').summary()}: {_agree(ahead == 'structured')}.")
    note = paper_cell(axis, None) if axis not in ("prompt", "mode") else ""
    return f"{title}: {listing}." + (f" The paper: {note}." if note else "")


# the order of the sentences: the main claim first
FINDINGS_ORDER = ("mode", "n_properties", "loss", "prompt", "embedder", "llm", "method", "temperature")


def findings(runs: pd.DataFrame, meta: dict | None = None) -> list[str]:
    """Sentences about this grid, computed from its runs: each varied axis against the paper, then the spread."""
    meta = meta or {}
    out = [describe_grid(runs, meta)]
    for axis in FINDINGS_ORDER:
        if axis in set(runs["axis"]):
            s = _sentence(runs, axis, meta.get("n_descriptions"))
            if s:
                out.append(s)
    stds = []
    for axis in TITLES:
        if axis in set(runs["axis"]):
            stds += [(r["std"], axis, r["value"]) for _, r in axis_stats(runs, axis).iterrows()
                     if not pd.isna(r["std"])]
    if stds:
        s_max = max(stds)
        s_med = float(np.median([s for s, _, _ in stds]))
        n_seeds = int(np.median([r["n"] for a in TITLES if a in set(runs["axis"]) for _, r in
                                 axis_stats(runs, a).iterrows()]))
        se = s_med * np.sqrt(2 / n_seeds)
        gaps = [max(a.values.values()) - min(a.values.values()) for a in paper.ABLATIONS.values() if a.values]
        gaps += [a.margin for a in paper.ABLATIONS.values() if a.margin is not None]
        verdict = ("so gaps of the paper's size cannot be resolved by this grid" if max(gaps) < 2 * se
                   else "so gaps of the paper's size would show here")
        out.append(f"Seed-to-seed spread: the standard deviation s over seeds has median {s_med:.2f} and reaches "
                   f"{s_max[0]:.2f} ({s_max[1]} = {s_max[2]}). With n = {n_seeds} seeds per setting the standard "
                   f"error of a difference between two settings is about s·sqrt(2/n) = {se:.2f}; the paper's "
                   f"ablation gaps are at most {max(gaps):.1f} mIoU, {verdict}.")
    return out


# --- per-class IoU of a grid's runs ---------------------------------------------------------------------------

def setting_label(row: pd.Series) -> str:
    """``base`` or ``axis=value``: how a grid row is named in per-class tables."""
    return "base" if row["axis"] == "base" else f"{row['axis']}={row[row['axis']]}"


def write_class_iou(grid_name: str, progress: bool = True) -> Path:
    """``results/<grid>/per_class.csv``: the IoU of every class for every run of a finished grid, from the
    runs' final weights in the cache (the same evaluation as the grid's; nothing is trained), on every split
    the grid scores (``grid.json`` ``splits``; a ``split`` column when there is more than one)."""
    import json

    from .. import paths
    from ..progress import tqdm
    from ..evaluate.score import evaluate_runs

    out = paths.results_dir(grid_name)
    runs = pd.read_csv(out / "runs.csv")
    meta = json.loads((out / "grid.json").read_text(encoding="utf-8")) if (out / "grid.json").is_file() else {}
    splits = meta.get("splits") or ["val"]
    rows = []
    for _, r in tqdm(list(runs.iterrows()), desc=f"per-class IoU of {grid_name}", disable=not progress):
        for split in splits:
            _, per_class, _ = evaluate_runs([f"{grid_name}-{r['cell']}"], split=split, progress=False)
            rows.append({"setting": setting_label(r), "seed": r["seed"], "cell": r["cell"],
                         **({"split": split} if len(splits) > 1 else {}), **per_class.iloc[:, 0].to_dict()})
    atomic_write_text(out / "per_class.csv", pd.DataFrame(rows).to_csv(index=False))
    return out / "per_class.csv"
