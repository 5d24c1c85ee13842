"""``prolab verify``: re-run what made a results folder, from an empty cache, and compare every metric it holds
with the committed one.

Three kinds of results folder are recognised, each with the command that made it:

- a ``prolab run`` folder (``results/demo``): ``config.json`` (the resolved run config) names the notebooks;
  its metrics are what notebook 06 wrote to ``eval/<run>/`` (every number of ``metrics.json``'s top level,
  every cell of ``per_class.csv`` and ``confusion.csv``), plus the artefacts the run made (the descriptor
  file's content hash and description count, the property space's tensor hash, K and K-Means inertia);
- a grid folder (``grid.json`` + ``runs.csv``, ``prolab grid``, re-run from the resolved config ``grid.json``
  records): every metric column of ``runs.csv`` (mIoU, mAcc, aAcc, unseen IoU, the unseen-class protocol's
  columns) for every row, the training loss of every iteration (``curves.csv``) and, where the folder has it,
  ``per_class.csv`` (``tables.write_class_iou``). Rows are matched by their setting (axis, value, crossed
  values) and seed, not by the cell hash, which changes whenever the hashing does; the rows' ``code`` hashes
  are reported in a note when they differ;
- ``results/label_sets`` (``space.json`` + ``runs.csv``, ``python -m prolab.analysis.label_sets``).

Timings, timestamps, versions and the settings columns are not metrics and are not compared; tables derived
from ``runs.csv`` (``tables/``, ``tables.md``) are not compared either, their source is.

The re-run never touches the checkout: it runs in a scratch copy of it (the files git tracks or would track,
the package linked, the verified folder left out) named by ``PROLAB_ROOT``, with an empty ``PROLAB_CACHE``
(the dataset is rendered, the offline models assembled and every run trained again). Compiled kernels are
reused from ``PROLAB_EXTENSIONS`` (or the user cache) when they exist: they do not change numbers.

``compare`` is the whole verdict: absolute differences, NaN equal to NaN, a key missing on either side a
failure, and a single tolerance (0 by default: in one environment the kit's CPU computation is deterministic,
two regenerations from empty caches gave identical confusion matrices). Other library versions can move the
last bits of the embeddings and so everything after them; the report lists how the environment differs from
the one the folder records, and ``--tolerance`` accepts such differences explicitly.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import paths

from .collect import SEP, Value, collect, environment_of, folder_kind
DETERMINISTIC = "the kit's CPU computation is deterministic, so every value must be equal"


# --- comparison ----------------------------------------------------------------------------------------------

@dataclass
class Row:
    key: str
    committed: Value
    rerun: Value
    diff: float | None     # |rerun - committed| for numbers; None for hashes and missing values
    ok: bool
    note: str = ""


def _is_number(v: Value) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def compare(committed: dict[str, Value], rerun: dict[str, Value], tolerance: float = 0.0) -> tuple[list[Row], bool]:
    """One row per key of either side (committed order, then keys only the re-run has) and whether all agree.

    Numbers agree when ``|rerun - committed| <= tolerance`` (NaN or None on both sides agree; on one side they
    do not); strings (content hashes) agree when equal; a key present on one side only is a failure."""
    tolerance = float(tolerance)
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise ValueError(f"tolerance {tolerance!r}: must be a finite number >= 0")
    rows = []
    for key in list(committed) + [k for k in rerun if k not in committed]:
        if key not in rerun:
            rows.append(Row(key, committed[key], None, None, False, "missing in the re-run"))
            continue
        if key not in committed:
            rows.append(Row(key, None, rerun[key], None, False, "not in the committed results"))
            continue
        c, r = committed[key], rerun[key]
        if not (_is_number(c) and _is_number(r)):
            same = c == r
            rows.append(Row(key, c, r, None, same, "" if same else "differs"))
            continue
        cf = math.nan if c is None else float(c)
        rf = math.nan if r is None else float(r)
        if math.isnan(cf) or math.isnan(rf):
            both = math.isnan(cf) and math.isnan(rf)
            rows.append(Row(key, c, r, 0.0 if both else None, both, "" if both else "NaN on one side"))
            continue
        diff = 0.0 if cf == rf else abs(rf - cf)   # (inf == inf: equal; inf - inf would be NaN)
        ok = diff <= tolerance
        rows.append(Row(key, c, r, diff, ok, "" if ok else "beyond the tolerance"))
    return rows, all(r.ok for r in rows)


def _fmt(v: Value) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else (str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:.10g}")
    return str(v)


def group_of(key: str) -> str:
    return key.split(SEP, 1)[0]


def shown_key(key: str, width: int = 64) -> str:
    """A key as the table shows it: a long file name (descriptor files, property spaces) elided in the middle."""
    group, sep, rest = key.partition(SEP)
    if len(group) > width:
        group = group[: width // 2] + "..." + group[-(width // 2 - 3):]
    return group + sep + rest


def format_table(rows: list[Row], show: Callable[[Row], bool] | None = None, other: str = "re-run") -> str:
    """The rows that ``show`` keeps (all when None) as an aligned text table; ``other`` heads the second column
    of values."""
    shown = [r for r in rows if show is None or show(r)]
    if not shown:
        return ""
    head = ("key", "committed", other, "|diff|", "ok")
    body = [(shown_key(r.key), _fmt(r.committed), _fmt(r.rerun), "" if r.diff is None else _fmt(r.diff),
             "ok" if r.ok else f"FAIL ({r.note})") for r in shown]
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    line = lambda cells: "  ".join(c.ljust(w) if i in (0, 4) else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(head), line(tuple("-" * w for w in widths))] + [line(b) for b in body])


def summary_by_file(rows: list[Row]) -> str:
    """``<file>: N values, M differ`` for every file of the comparison."""
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(group_of(r.key), []).append(r)
    width = max(len(shown_key(g)) for g in groups)
    return "\n".join(f"  {shown_key(g).ljust(width)}  {len(rs):5d} value{'s' if len(rs) != 1 else ''}, "
                     f"{sum(not r.ok for r in rs)} differ" for g, rs in groups.items())


# printed even when equal (the summary metrics, the artefacts' hashes); the rest only when they differ (or --all)
HEADLINE = ("metrics.json", "runs.csv", "space.json", ".meta.json")
HEADLINE_PREFIX = ("descriptors/", "properties/")
MAX_DETAIL = 10                            # differing non-headline values listed per file (all with --all)


# --- re-running ----------------------------------------------------------------------------------------------

def _checkout_files(root: Path) -> list[str]:
    """The files a fresh clone has (plus local, not ignored, additions), relative to ``root``."""
    try:
        r = subprocess.run(["git", "-C", str(root), "ls-files", "-co", "--exclude-standard", "-z"],
                           capture_output=True, check=True)
        files = [f for f in r.stdout.decode().split("\0") if f]
        if files:
            return files
    except (OSError, subprocess.CalledProcessError):
        pass
    keep = ("notebooks", "descriptors", "properties", "configs", "results")
    return [p.relative_to(root).as_posix() for name in keep if (root / name).is_dir()
            for p in (root / name).rglob("*") if p.is_file()]


def scratch_checkout(dest: Path, leave_out: str) -> Path:
    """A copy of the checkout in ``dest`` (the package linked, not copied; ``results/<leave_out>`` left out, so
    the re-run starts from nothing), for ``PROLAB_ROOT``."""
    src = paths.repo_root()
    dest.mkdir(parents=True, exist_ok=True)
    skip = (f"results/{leave_out}/", "prolab/", ".git/")
    for rel in _checkout_files(src):
        if rel.startswith(skip) or not (src / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dest / rel)
    package = Path(__file__).resolve().parents[1]
    if not (dest / "prolab").exists():
        (dest / "prolab").symlink_to(package)
    return dest


def rerun_environment(root: Path, cache: Path, recorded: dict[str, Any] | None = None) -> tuple[dict[str, str], str]:
    """The re-run's environment variables (scratch root, empty cache, the recorded thread count) and lines
    saying where kernels come from and how many threads run."""
    env = dict(os.environ, PROLAB_ROOT=str(root), PROLAB_CACHE=str(cache))
    env.pop("PROLAB_DATASETS", None)          # the dataset is rendered again in the empty cache, as said above
    # the notebooks' kernels import this very package (not whatever an editable install elsewhere points at)
    here = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    threads = (recorded or {}).get("torch_threads")
    if threads:   # some of ATen's CPU reductions depend on the thread count: re-run with the recorded one
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(int(threads))
        thread_line = f"{int(threads)} torch thread(s), as recorded"
    else:
        thread_line = "thread count not recorded: the machine's default (numbers may differ with another count)"
    kernels = paths.extensions_dir()          # the caller's, read before PROLAB_CACHE changes
    if os.environ.get("PROLAB_EXTENSIONS") or (kernels.is_dir() and any(kernels.iterdir())):
        env["PROLAB_EXTENSIONS"] = str(kernels)
        said = f"compiled kernels reused from {kernels} (kernels do not change numbers)"
    else:
        env.pop("PROLAB_EXTENSIONS", None)
        said = "compiled kernels built again in the empty cache"
    return env, f"{said}\n  {thread_line}"


def grid_config(grid_json: dict[str, Any]) -> dict[str, Any]:
    """The grid YAML that reproduces a grid folder, from the resolved config its ``grid.json`` records."""
    from ..datasets import DATASETS

    if grid_json.get("dataset") not in DATASETS:
        raise ValueError(f"grid {grid_json.get('name')!r} ran on {grid_json.get('dataset')!r}, a dataset YAML (your "
                         "own data): grid.json records its name, not the file, so verify cannot re-run it; re-run "
                         "it with the commands results/README.md gives into another checkout and compare with "
                         "`prolab verify DIR --against OTHER`")
    cfg = {k: grid_json[k] for k in ("name", "dataset", "base", "vary", "seeds", "train", "splits") if k in grid_json}
    if grid_json.get("cross"):
        cfg["cross"] = grid_json["cross"]
    return cfg


def run_config(config_json: dict[str, Any]) -> dict[str, Any]:
    """The run config that reproduces a ``prolab run`` folder, from the resolved ``config.json``."""
    return {"run_name": config_json["run_name"], "parameters": config_json.get("parameters") or {},
            "notebooks": [{"notebook": s["notebook"], "parameters": s.get("parameters") or {}}
                          for s in config_json["notebooks"]]}


class RerunFailed(RuntimeError):
    """A command of the re-run failed; ``folder`` is where it was writing (it may hold part of the results)."""

    def __init__(self, message: str, folder: Path):
        super().__init__(message)
        self.folder = folder


def execute(cmd: list[str], cwd: Path, env: dict[str, str]) -> int:
    """One command of the re-run, its output going to the terminal; its exit status."""
    return subprocess.run(cmd, cwd=str(cwd), env=env).returncode


def rerun(folder: Path, scratch: Path, say: Callable[[str], None] = print) -> Path:
    """Make ``folder`` again in ``scratch`` (a copy of the checkout and an empty cache); returns the new folder."""
    import yaml

    folder = Path(folder)
    kind = folder_kind(folder)
    commands: list[list[str]] = []
    py = [sys.executable, "-m"]
    spec_dir = scratch / "verify"
    spec_dir.mkdir(parents=True, exist_ok=True)
    if kind == "run":
        config_json = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        cfg = run_config(config_json)
        name = paths.slug(cfg["run_name"])
        spec = spec_dir / (config_json.get("source") or f"{name}.yaml")
        spec.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        commands.append(py + ["prolab", "run", "--config", str(spec)])
        what = f"prolab run --config {spec.name} (the resolved config of {folder.name}/config.json)"
    elif kind == "grid":
        grid = json.loads((folder / "grid.json").read_text(encoding="utf-8"))
        cfg = grid_config(grid)
        name = paths.slug(cfg["name"])
        spec = spec_dir / (grid.get("source") or f"{name}.yaml")
        spec.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        commands.append(py + ["prolab", "grid", "--config", str(spec)])
        if (folder / "per_class.csv").is_file():
            commands.append([sys.executable, "-c", "from prolab.reports.tables import write_class_iou as w; "
                             f"w({cfg['name']!r}, progress=False)"])
        what = f"prolab grid --config {spec.name} (the resolved config of {folder.name}/grid.json)"
    else:
        space = json.loads((folder / "space.json").read_text(encoding="utf-8"))
        name = folder.name
        args = ["--seeds", *[str(s) for s in space.get("seeds", [0, 1, 2])], "--iters", str(space.get("iters", 100)),
                "--out_dir", f"results/{name}"]
        commands.append(py + ["prolab.analysis.label_sets", *args])
        what = "python -m prolab.analysis.label_sets " + " ".join(args)
    root = scratch_checkout(scratch / "repo", name)
    env, kernels = rerun_environment(root, scratch / "cache", environment_of(folder))
    say(f"re-running {what}\n  in a scratch copy of the checkout: {root}\n  with an empty PROLAB_CACHE: "
        f"{scratch / 'cache'}\n  {kernels}")
    out = root / "results" / name
    for cmd in commands:
        sys.stdout.flush()
        sys.stderr.flush()
        rc = execute(cmd, root, env)
        if rc != 0:
            raise RerunFailed(f"the re-run failed (exit status {rc}): {' '.join(cmd[2:])}; its scratch folder is "
                              f"{scratch} (kept with --keep)", out)
    if not out.is_dir():
        raise RuntimeError(f"the re-run finished but wrote no {out}")
    return out


# --- the command ---------------------------------------------------------------------------------------------

def tolerance_line(tolerance: float) -> str:
    if tolerance == 0:
        return f"tolerance 0 (absolute; {DETERMINISTIC})"
    return f"tolerance {tolerance:g} (absolute difference per value; 0 would demand equality)"


def _is_headline(row: Row) -> bool:
    g = group_of(row.key)
    return g.endswith(HEADLINE) or g.startswith(HEADLINE_PREFIX)


def report(rows: list[Row], ok: bool, tolerance: float, show_all: bool = False,
           notes: list[str] | None = None, other: str = "re-run", per_file: int = MAX_DETAIL) -> str:
    """The table, the count per file, notes and the verdict line that states the tolerance. The table holds the
    headline values (summary metrics, artefact hashes) and, of the other values, the first ``per_file`` that
    differ in each file; everything with ``show_all``."""
    if show_all:
        shown = list(rows)
    else:
        taken: dict[str, int] = {}
        shown = []
        for r in rows:
            if _is_headline(r):
                shown.append(r)
            elif not r.ok and taken.get(group_of(r.key), 0) < per_file:
                taken[group_of(r.key)] = taken.get(group_of(r.key), 0) + 1
                shown.append(r)
    kept = {id(r) for r in shown}
    table = format_table(shown, None, other)
    hidden_equal = sum(1 for r in rows if r.ok and id(r) not in kept)
    hidden_bad = sum(1 for r in rows if not r.ok and id(r) not in kept)
    parts = [table] if table else []
    if hidden_equal or hidden_bad:
        said = [f"{hidden_equal} equal values"] if hidden_equal else []
        said += [f"{hidden_bad} more differing values (the first {per_file} per file are listed)"] if hidden_bad else []
        parts.append(f"({' and '.join(said)} not shown; --all shows every value)")
    parts.append("per file:\n" + summary_by_file(rows))
    parts += notes or []
    bad = sum(not r.ok for r in rows)
    verdict = (f"REPRODUCED: all {len(rows)} values within {tolerance_line(tolerance)}" if ok else
               f"NOT REPRODUCED: {bad} of {len(rows)} values differ beyond {tolerance_line(tolerance)}")
    parts.append(verdict)
    return "\n".join(parts)


def _environment_notes(committed: dict[str, Any], other: dict[str, Any], other_name: str) -> list[str]:
    diffs = [f"{k} {committed.get(k, '-')} -> {other.get(k, '-')}" for k in list(committed) + [
        k for k in other if k not in committed] if committed.get(k) != other.get(k)]
    return [f"note: the {other_name} ran in another environment than the committed results: "
            + "; ".join(diffs)] if diffs and committed else []


def _code_notes(folder: Path, other: Path) -> list[str]:
    """For grids: whether the rows were made by the current code (``runs.csv`` column ``code``)."""
    import pandas as pd

    from ..identity import GRID_CODE, code_hash

    if folder_kind(folder) != "grid":
        return []
    codes = lambda f: set(pd.read_csv(f / "runs.csv").get("code", pd.Series(dtype=str)).dropna())  # noqa: E731
    mine, theirs, now = codes(folder), codes(other), code_hash(*GRID_CODE)
    if mine and mine != theirs:
        return [f"note: the committed rows were made by code {', '.join(sorted(mine))}, the compared rows by "
                f"{', '.join(sorted(theirs)) or '-'} (the current code is {now}; identity.GRID_CODE): differences "
                "may come from the code"]
    return []


def _report_partial(committed: dict[str, Value], made: Path, tolerance: float, show_all: bool,
                    say: Callable[[str], None]) -> None:
    """After a failed re-run: the values it did make, compared (what it never made is only counted)."""
    try:
        found = collect(made) if made.is_dir() else {}
    except (ValueError, OSError):
        found = {}
    shared = {k: committed[k] for k in found if k in committed}
    if not shared:
        return
    rows, ok = compare(shared, {k: found[k] for k in shared}, tolerance)
    bad = sum(not r.ok for r in rows)
    say("the re-run failed; what it made before it stopped, compared:\n" + report(rows, ok, float(tolerance),
                                                                                  show_all).rsplit("\n", 1)[0]
        + f"\n{len(shared)} of the {len(committed)} committed values were made again, {bad} of them differ "
          f"beyond {tolerance_line(float(tolerance))}; the other {len(committed) - len(shared)} were not made")


def verify(results_dir: str | Path, tolerance: float = 0.0, against: str | Path | None = None,
           keep: str | Path | None = None, show_all: bool = False, say: Callable[[str], None] = print) -> int:
    """Compare the folder's metrics with a re-run's (or with ``against``'s); prints the report and returns 0 when
    every value agrees within ``tolerance``, 1 otherwise."""
    folder = paths.resolve(results_dir)
    kind = folder_kind(folder)
    if not (float(tolerance) >= 0 and math.isfinite(float(tolerance))):
        raise ValueError(f"--tolerance {tolerance!r}: must be a finite number >= 0")
    committed = collect(folder)                      # read before anything runs
    committed_env = environment_of(folder)
    say(f"verify {paths.portable(folder)} (a {'prolab run' if kind == 'run' else kind} folder): "
        f"{len(committed)} values")
    scratch: Path | None = None
    if against is not None:
        other = paths.resolve(against)
        if folder_kind(other) != kind:
            raise ValueError(f"{other} is a {folder_kind(other)} folder, {folder} a {kind} folder")
        other_name = f"folder {paths.portable(other)}"
        say(f"against {paths.portable(other)} (no re-run)")
    else:
        if keep is not None:
            scratch = paths.resolve(keep)
            if scratch.exists() and any(scratch.iterdir()):
                raise ValueError(f"--keep {scratch}: must be a new or empty folder")
            scratch.mkdir(parents=True, exist_ok=True)
        else:
            scratch = Path(tempfile.mkdtemp(prefix="prolab-verify-"))
        other_name = "re-run"
        try:
            other = rerun(folder, scratch, say)
        except RerunFailed as e:
            try:
                _report_partial(committed, e.folder, tolerance, show_all, say)
            finally:
                if keep is None:
                    shutil.rmtree(scratch, ignore_errors=True)
            raise
        except BaseException:
            if keep is None:
                shutil.rmtree(scratch, ignore_errors=True)
            raise
    try:
        rows, ok = compare(committed, collect(other), tolerance)
        notes = _environment_notes(committed_env, environment_of(other), other_name) + _code_notes(folder, other)
        if keep is not None:
            notes.append(f"the re-run is kept in {other}")
        say(report(rows, ok, float(tolerance), show_all, notes, "re-run" if against is None else "other"))
    finally:
        if scratch is not None and keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0 if ok else 1
