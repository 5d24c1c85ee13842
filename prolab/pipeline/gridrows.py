"""Rows of a grid's CSVs that the grid no longer makes.

A grid's ``runs.csv`` and ``curves.csv`` grow as cells finish; a cell whose settings the config no longer
produces (an axis value removed, a changed preset or training section: the cell hash covers the resolved
training config) keeps its old row, which tables and verdicts would otherwise mix with the current ones.
``set_aside_stale_rows`` moves those rows to ``runs.stale.csv`` / ``curves.stale.csv`` beside them (appended,
never deleted). `prolab grid` calls it before running.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..files import atomic_write_text


def set_aside_stale_rows(folder: str | Path, cells: set[str]) -> int:
    """Move the rows of ``folder``'s runs.csv and curves.csv whose ``cell`` is not in ``cells`` to the
    ``.stale.csv`` files beside them; returns how many runs were moved. The caller holds the grid's write lock."""
    folder = Path(folder)
    moved = 0
    for name in ("runs", "curves"):
        f = folder / f"{name}.csv"
        if not f.is_file():
            continue
        df = pd.read_csv(f)
        if "cell" not in df or df.empty:
            continue
        stale = ~df["cell"].isin(cells)
        if not stale.any():
            continue
        if name == "runs":
            moved = int(stale.sum())
        old = folder / f"{name}.stale.csv"
        kept = pd.concat([pd.read_csv(old), df[stale]], ignore_index=True) if old.is_file() else df[stale]
        atomic_write_text(old, kept.to_csv(index=False))
        atomic_write_text(f, df[~stale].to_csv(index=False))
    return moved
