"""Paper-shaped ablation tables, regenerated from the grid's tidy CSV (nothing else is read).

Each table lists our value of the varied setting, mIoU as mean ± std over seeds (with the number of runs),
and the paper's number for the corresponding setting (ADE20K, ViT-Adapter-B + UperNet, 160k iterations).
Our runs are at CPU scale on the embedded synthetic dataset: compare directions, not magnitudes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..files import atomic_write_text

# ../shared/reference/method.md, the paper's ablations on ADE20K (mIoU)
PAPER = {
    "n_properties": {"by": "descriptions per property",
                     "rows": {23.1: "K=64: 47.8", 11.5: "K=128: 48.0", 5.8: "K=256: 48.3", 2.9: "K=512: 47.6"}},
    "loss": {"cos_sigmoid": "47.7", "bce": "47.4", "cos": "47.3"},
    "mode": {"property": "49.0", "category": "48.4"},
    "prompt": {"structured": "structured > naive by about 0.2", "naive": ""},
    "llm": {"note": "GPT-3.5 > LLaMA2-7B by about 0.5"},
    "embedder": {"note": "BGE-base > BGE-small > Sentence-Transformers base > small"},
    "method": {"note": "the paper uses K-Means only"},
    "temperature": {"note": "the paper uses T = 0.04 (0.01 with normalised embeddings)"},
}
TITLES = {"n_properties": "Number of properties", "embedder": "Embedder", "loss": "Loss", "prompt": "Prompt",
          "llm": "LLM", "mode": "Property vs category supervision", "method": "Clustering method",
          "temperature": "Temperature"}


def _fmt(values: pd.Series) -> str:
    v = values.dropna()
    if len(v) == 0:
        return "—"
    if len(v) == 1:
        return f"{v.iloc[0]:.2f}"
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}"


def _paper(axis: str, value, row: pd.Series, n_descriptions: float | None) -> str:
    spec = PAPER.get(axis, {})
    if axis == "n_properties" and n_descriptions and value and value == value:
        ratio = n_descriptions / float(value)
        best = min(spec["rows"], key=lambda r: abs(np.log(r / ratio)))
        return spec["rows"][best] if abs(np.log(best / ratio)) < 0.35 else ""
    if str(value) in spec:
        return spec[str(value)]
    return spec.get("note", "")


def ablation_table(runs: pd.DataFrame, axis: str, n_descriptions: float | None = None) -> pd.DataFrame:
    """One row per value of ``axis``: the base runs and the runs that varied this axis."""
    rows = runs[(runs["axis"] == "base") | (runs["axis"] == axis)]
    if rows.empty:
        return pd.DataFrame()
    key = rows[axis].astype(str)
    out = []
    for value, grp in rows.groupby(key, sort=False):
        out.append({TITLES.get(axis, axis): value, "mIoU (ours)": _fmt(grp["mIoU"]), "mAcc (ours)": _fmt(grp["mAcc"]),
                    "runs": len(grp), "base": "yes" if (grp["axis"] == "base").any() else "",
                    "paper (ADE20K)": _paper(axis, grp[axis].iloc[0], grp.iloc[0], n_descriptions)})
    df = pd.DataFrame(out)
    if axis in ("n_properties", "temperature"):
        df = df.sort_values(TITLES[axis], key=lambda s: pd.to_numeric(s, errors="coerce"))
    return df.reset_index(drop=True)


def all_tables(runs: pd.DataFrame, n_descriptions: float | None = None) -> dict[str, pd.DataFrame]:
    axes = [a for a in TITLES if a in set(runs["axis"])]
    return {a: ablation_table(runs, a, n_descriptions) for a in axes}


def write_tables(runs: pd.DataFrame, out_dir: str | Path, n_descriptions: float | None = None) -> Path:
    """tables/<axis>.csv for each varied axis and one tables.md with all of them."""
    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    md = ["# Ablation tables", "",
          "Generated from runs.csv by `prolab.pipeline.tables.write_tables`. Ours: mean ± std over seeds at CPU",
          "scale on the embedded synthetic dataset; paper: ADE20K, ViT-Adapter-B + UperNet, 160k iterations.", ""]
    for axis, df in all_tables(runs, n_descriptions).items():
        atomic_write_text(out / "tables" / f"{axis}.csv", df.to_csv(index=False))
        md += [f"## {TITLES.get(axis, axis)}", "", df.to_markdown(index=False, disable_numparse=True), ""]
    atomic_write_text(out / "tables.md", "\n".join(md))
    return out


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
