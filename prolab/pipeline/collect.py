"""What a results folder holds, as ``{key: value}`` for ``prolab verify`` and ``--restamp`` to compare: the kinds
of folder (``folder_kind``), their metrics (``collect_run``, ``collect_grid``, ``collect_label_sets``) and the
environment they record. The keys and what is (not) a metric are described in ``pipeline.verify``."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Union

Value = Union[float, int, str, None]   # a number (None: no value, compared as NaN) or a content hash
SEP = " | "                            # key = "<file> | <row> | <column>"; the file part groups the table
NOT_METRICS = {"axis", "cell", "seed", "code", "finished", "train_seconds", "iters"}   # grid / label-set columns


# --- what a folder holds -------------------------------------------------------------------------------------

def folder_kind(folder: Path) -> str:
    """``run`` (``prolab run``), ``grid`` (``prolab grid``) or ``label_sets``; a ValueError otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such results folder")
    cfg = folder / "config.json"
    if cfg.is_file() and isinstance(json.loads(cfg.read_text(encoding="utf-8")).get("notebooks"), list):
        return "run"
    if (folder / "grid.json").is_file() and (folder / "runs.csv").is_file():
        return "grid"
    if (folder / "space.json").is_file() and (folder / "runs.csv").is_file():
        return "label_sets"
    raise ValueError(f"{folder}: not a results folder that verify knows how to re-run: expected config.json "
                     "with notebooks (prolab run), grid.json + runs.csv (prolab grid) or space.json + runs.csv "
                     "(results/label_sets)")


def _number(v: Any) -> Value:
    """A CSV or JSON cell as a number (None for empty / NaN), or the text itself."""
    if v is None or isinstance(v, bool):
        return None if v is None else int(v)
    if isinstance(v, (int, float)):
        return v
    if hasattr(v, "item"):                     # numpy scalars
        return _number(v.item())
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def _is_numeric_column(series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _setting(v: Any) -> str:
    """A settings cell as a label: 24.0 -> 24, NaN -> ''."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _dig(obj: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return KeyError
        obj = obj[part]
    return obj


def collect_run(folder: Path) -> dict[str, Value]:
    """Metrics of a ``prolab run`` folder (see the module docstring)."""
    import pandas as pd

    folder = Path(folder)
    out: dict[str, Value] = {}
    eval_root = folder / "eval"
    for run in sorted(p for p in eval_root.iterdir() if p.is_dir()) if eval_root.is_dir() else []:
        rel = f"eval/{run.name}"
        for f in sorted(run.glob("*.json")):
            data = json.loads(f.read_text(encoding="utf-8"))
            for k, v in data.items():          # top level only: config and environment are not metrics
                if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)):
                    out[SEP.join((f"{rel}/{f.name}", k))] = v
        for f in sorted(run.glob("*.csv")):
            df = pd.read_csv(f, index_col=0)
            for col in df.columns:
                if not _is_numeric_column(df[col]):
                    continue
                for idx, v in df[col].items():    # confusion.csv: ground truth -> prediction
                    parts = (f"{idx}->{col}",) if f.name == "confusion.csv" else (str(idx), str(col))
                    out[SEP.join((f"{rel}/{f.name}", *parts))] = _number(v)
    for f in sorted((folder / "descriptors").rglob("*.json")) if (folder / "descriptors").is_dir() else []:
        rel = f.relative_to(folder).as_posix()
        if f.name.endswith(".meta.json"):
            n = _dig(json.loads(f.read_text(encoding="utf-8")), "n_descriptions")
            if n is not KeyError:
                out[SEP.join((rel, "n_descriptions"))] = n
        else:
            out[SEP.join((rel, "sha256"))] = _sha(f)
    for f in sorted((folder / "properties").rglob("*.json")) if (folder / "properties").is_dir() else []:
        rel = f.relative_to(folder).as_posix()
        meta = json.loads(f.read_text(encoding="utf-8"))
        for field in ("tensors_sha256", "n_properties", "clustering.inertia"):
            v = _dig(meta, field)
            if v is not KeyError:
                out[SEP.join((rel, field))] = v
    return out


def grid_label(row, cross: list[str]) -> str:
    axis = str(row.get("axis", ""))
    label = axis if axis in ("base", "") or axis not in row else f"{axis}={_setting(row[axis])}"
    label += "".join(f" {c}={_setting(row[c])}" for c in cross if c in row and c != axis)
    return f"{label} seed {_setting(row.get('seed'))}"


def collect_grid(folder: Path, cells: set[str] | None = None) -> dict[str, Value]:
    """Metrics of a grid folder (see the module docstring). With ``cells``: only those cells, keyed by cell hash
    (what a one-cell re-run of the same cell shares with the full grid; ``prolab verify --restamp``)."""
    import pandas as pd

    from .grid import AXES

    folder = Path(folder)
    # labels name the setting (axis, crossed values): only needed when keys are not cell hashes
    cross = [] if cells is not None else list(json.loads((folder / "grid.json").read_text(encoding="utf-8"))
                                              .get("cross") or {})
    settings = set(AXES) | NOT_METRICS
    out: dict[str, Value] = {}
    runs = pd.read_csv(folder / "runs.csv")
    metrics = [c for c in runs.columns if c not in settings and _is_numeric_column(runs[c])]
    if cells is not None:
        runs = runs[runs["cell"].isin(cells)]
    labels = {}
    for _, r in runs.iterrows():
        labels[r["cell"]] = r["cell"] if cells is not None else grid_label(r.to_dict(), cross)
        for c in metrics:
            out[SEP.join(("runs.csv", labels[r["cell"]], c))] = _number(r[c])
    if (folder / "per_class.csv").is_file():
        pc = pd.read_csv(folder / "per_class.csv")
        classes = [c for c in pc.columns if c not in ("setting", "seed", "cell") and _is_numeric_column(pc[c])]
        for _, r in pc.iterrows():
            if cells is not None and r["cell"] not in cells:
                continue
            label = labels.get(r["cell"], f"{r.get('setting', '')} seed {_setting(r.get('seed'))}")
            if isinstance(r.get("split"), str):   # a grid scored on several splits: one row per split
                label = f"{label} {r['split']}"
            for c in classes:
                out[SEP.join(("per_class.csv", label, c))] = _number(r[c])
    if (folder / "curves.csv").is_file():
        cv = pd.read_csv(folder / "curves.csv")
        values = [c for c in cv.columns if c not in ("cell", "iteration") and _is_numeric_column(cv[c])]
        for cell, it, *vals in cv[["cell", "iteration", *values]].itertuples(index=False):
            if cells is not None and cell not in cells:
                continue
            for c, v in zip(values, vals):
                out[SEP.join(("curves.csv", f"{labels.get(cell, f'[{cell}]')} iteration {_setting(it)}", c))] = \
                    _number(v)
    return out


def collect_label_sets(folder: Path) -> dict[str, Value]:
    """Metrics of ``results/label_sets`` (see the module docstring)."""
    import pandas as pd

    folder = Path(folder)
    runs = pd.read_csv(folder / "runs.csv")
    ids = [c for c in runs.columns if c in ("seed",) or not _is_numeric_column(runs[c])]
    metrics = [c for c in runs.columns if c not in ids and c not in NOT_METRICS]
    out: dict[str, Value] = {}
    for _, r in runs.iterrows():
        d = r.to_dict()
        label = (f"seed {_setting(d.get('seed'))} {d.get('trained_on')}->{d.get('scored_on')}: {d.get('how')}"
                 if {"trained_on", "scored_on", "how"} <= set(d) else " ".join(_setting(d[c]) for c in ids))
        for c in metrics:
            out[SEP.join(("runs.csv", label, c))] = _number(d[c])
    space = json.loads((folder / "space.json").read_text(encoding="utf-8"))
    if "n_properties" in space:
        out[SEP.join(("space.json", "n_properties"))] = space["n_properties"]
    return out


COLLECT = {"run": collect_run, "grid": collect_grid, "label_sets": collect_label_sets}

def collect(folder: Path) -> dict[str, Value]:
    """Every metric the folder holds, ``{key: value}``; a ValueError if it holds none."""
    folder = Path(folder)
    found = COLLECT[folder_kind(folder)](folder)
    if not found:
        raise ValueError(f"{folder}: holds no metrics to compare")
    return found


def environment_of(folder: Path) -> dict[str, Any]:
    """The environment a folder records (versions, platform, cores), flattened; {} when none."""
    folder = Path(folder)
    kind = folder_kind(folder)
    f = {"run": "environment.json", "grid": "grid.json", "label_sets": "space.json"}[kind]
    data = json.loads((folder / f).read_text(encoding="utf-8")) if (folder / f).is_file() else {}
    env = data if kind == "run" else data.get("environment") or {}
    flat = {k: v for k, v in env.items() if k != "versions"}
    flat.update(env.get("versions") or {})
    return flat
