"""Re-stamp a committed grid with the current code hash, on proof.

Every row of a grid's ``runs.csv`` carries the hash of the code that computed it (``identity.GRID_CODE``), and
``prolab grid`` runs a row again when the hash differs. A change that touches those files without changing what
they compute (a check, an error message, a lock) would so send every committed grid back to hours of training.
``restamp`` is the alternative, and it asks for evidence: it re-runs sample cells of the grid with the current
code, in a scratch copy of the checkout from an empty cache and with the recorded thread count (as
``prolab verify`` does), compares every value those cells hold (runs.csv metrics, the training curve, per-class
IoU where the folder has it) at tolerance 0, and only when all are identical rewrites the ``code`` column. The
proof (cells, number of values, old and new hash, environment) is appended to ``restamps.json`` in the folder.

It refuses when the grid's cells themselves changed (another preset, another axis: those rows are not the same
computation and must be run again), and when the rows carry several code hashes.

    prolab verify results/demo_grid --restamp            # one cell: the base setting, first seed
    prolab verify results/budget_grid --restamp --cells 3
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from .. import paths
from ..files import atomic_write_json, atomic_write_text, environment_info, read_json, utc_now

RESTAMPS = "restamps.json"


def sample_cells(cells: list[dict], n: int) -> list[dict]:
    """``n`` cells spread over the grid's order (the first is the base setting at the first seed)."""
    if n < 1:
        raise ValueError(f"--cells {n}: must be at least 1")
    n = min(n, len(cells))
    picks = sorted({round(i * (len(cells) - 1) / max(1, n - 1)) for i in range(n)}) if n > 1 else [0]
    return [cells[i] for i in picks]


def cell_grid(cfg, cell: dict[str, Any]) -> dict[str, Any]:
    """A grid YAML whose only cell is ``cell`` of the grid ``cfg`` (same dataset, settings, seed and training
    section: the same cell hash)."""
    from .grid import AXES

    out = {"name": cfg.name, "dataset": cfg.dataset, "base": {a: cell[a] for a in AXES if a in cell},
           "seeds": [int(cell["seed"])]}
    if cfg.train:
        out["train"] = dict(cfg.train)
    if list(cfg.splits) != ["val"]:   # scored as the grid was (the cell hash does not hold the splits)
        out["splits"] = list(cfg.splits)
    return out


def restamp(results_dir: str | Path, n_cells: int = 1, keep: str | Path | None = None,
            grid_file: str | Path | None = None, dataset: str | None = None,
            say: Callable[[str], None] = print) -> int:
    """Re-run ``n_cells`` sample cells of a grid folder; re-stamp its rows with the current code hash when every
    value is identical. Returns 0 (re-stamped, or nothing to do) or 1 (a difference: nothing changed).
    ``grid_file`` / ``dataset``: the grid YAML and ``--dataset`` that made the folder, for a grid on a dataset
    YAML (grid.json records its name, not its file); by default the resolved config in grid.json."""
    import pandas as pd
    import yaml

    from ..identity import GRID_CODE, code_hash
    from .grid import load_grid
    from .collect import SEP, collect_grid, environment_of, folder_kind
    from .verify import compare, execute, format_table, grid_config, rerun_environment, scratch_checkout

    folder = paths.resolve(results_dir)
    if folder_kind(folder) != "grid":
        raise ValueError(f"{folder}: --restamp applies to a grid folder (grid.json + runs.csv)")
    grid_json = read_json(folder / "grid.json")
    runs = pd.read_csv(folder / "runs.csv")
    now = code_hash(*GRID_CODE)
    codes = sorted(set(runs["code"].dropna().astype(str))) if "code" in runs else []
    if codes == [now]:
        say(f"{paths.portable(folder)}: every row already carries the current code hash {now}; nothing to do")
        return 0
    if len(codes) != 1:
        raise ValueError(f"{folder}/runs.csv: rows carry the code hashes {codes or 'none'}; re-stamping needs one "
                         "(run the grid again: prolab grid --config ...)")
    old = codes[0]
    # the grid as its folder records it: every committed cell must still be one of its cells
    scratch = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="prolab-restamp-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        if grid_file is None:
            spec = scratch / "grid.yaml"
            spec.write_text(yaml.safe_dump(grid_config(grid_json), sort_keys=False), encoding="utf-8")
            cfg = load_grid(spec)
        else:
            cfg = load_grid(grid_file, dataset=dataset, splits=grid_json.get("splits"))
            if paths.slug(cfg.name) != folder.name:
                raise ValueError(f"{grid_file} (dataset {dataset}) makes the grid {cfg.name!r}, not {folder.name!r}")
        cells = cfg.cells()
        made = set(runs["cell"])
        if made != {c["cell"] for c in cells}:
            raise ValueError(f"{folder}: its rows are not the cells its grid.json makes now (settings or presets "
                             "changed, not only code): run the grid again rather than re-stamping")
        chosen = sample_cells(cells, n_cells)
        root = scratch_checkout(scratch / "repo", grid_json["name"])
        env, kernels = rerun_environment(root, scratch / "cache", environment_of(folder))
        say(f"restamp {paths.portable(folder)}: code {old} -> {now}; re-running {len(chosen)} of {len(cells)} "
            f"cells with the current code\n  in {root}, empty PROLAB_CACHE {scratch / 'cache'}\n  {kernels}")
        rerun: dict[str, Any] = {}
        held = {f.name for f in folder.iterdir() if f.is_file()}   # the files the committed folder has
        out = root / "results" / cfg.name
        for i, cell in enumerate(chosen):
            one = scratch / f"cell-{i}.yaml"
            one.write_text(yaml.safe_dump(cell_grid(cfg, cell), sort_keys=False), encoding="utf-8")
            if load_grid(one).cells()[0]["cell"] != cell["cell"]:   # the same computation, or no proof at all
                raise RuntimeError(f"the one-cell grid of {cell['cell']} hashes differently; cannot sample it")
            label = f"{cell['axis']}" + (f"={cell.get(cell['axis'])}" if cell["axis"] != "base" else "")
            say(f"  cell {cell['cell']} ({label}, seed {cell['seed']})")
            for cmd in ([sys.executable, "-m", "prolab", "grid", "--config", str(one)],) + (
                    ([sys.executable, "-c", "from prolab.reports.tables import write_class_iou as w; "
                      f"w({cfg.name!r}, progress=False)"],) if (folder / "per_class.csv").is_file() else ()):
                rc = execute(cmd, root, env)
                if rc != 0:
                    raise RuntimeError(f"the re-run of cell {cell['cell']} failed (exit status {rc}); nothing was "
                                       "re-stamped")
            # read now: the next one-cell grid sets this row aside as a cell it does not make; only the files the
            # committed folder has (`prolab grid` also writes per_class.csv for a finished one-cell grid)
            rerun.update({k: v for k, v in collect_grid(out, {cell["cell"]}).items() if k.split(SEP, 1)[0] in held})
        ids = {c["cell"] for c in chosen}
        rows, ok = compare(collect_grid(folder, ids), rerun, 0.0)
        say(format_table([r for r in rows if not r.ok][:20] or rows[:5]))
        if not ok:
            bad = sum(not r.ok for r in rows)
            say(f"DIFFERENT: {bad} of {len(rows)} values differ: the current code computes other numbers; nothing "
                "was re-stamped (run the grid again)")
            return 1
        from filelock import FileLock

        with FileLock(str(folder / ".write.lock")):     # the lock prolab grid writes rows under
            fresh = pd.read_csv(folder / "runs.csv")
            fresh.loc[fresh["code"].astype(str) == old, "code"] = now
            atomic_write_text(folder / "runs.csv", fresh.to_csv(index=False))
            log = read_json(folder / RESTAMPS) if (folder / RESTAMPS).is_file() else []
            log.append({"from": old, "to": now, "date": utc_now(), "tolerance": 0,
                        "cells": [{"cell": c["cell"], "axis": c["axis"], "seed": c["seed"]} for c in chosen],
                        "values_compared": len(rows), "rows_restamped": int((runs["code"].astype(str) == old).sum()),
                        "environment": environment_info()})
            atomic_write_json(folder / RESTAMPS, log)
        say(f"IDENTICAL: all {len(rows)} values of {len(chosen)} cells; {len(runs)} rows re-stamped {old} -> {now} "
            f"(the proof: {paths.portable(folder / RESTAMPS)})")
        return 0
    finally:
        if keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
