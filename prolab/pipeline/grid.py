"""The ablation grid: one YAML names a base configuration and the axes to vary (one at a time, as the
paper's ablations do), the runner trains and evaluates every cell for every seed, and appends one tidy row
per run to a CSV. Cells already in the CSV are not run again, so a killed grid resumes where it stopped.

Axes: n_properties, embedder, method (clustering), loss, temperature, prompt, llm (descriptor file), mode
(property, category or name_embedding supervision), repair (identical signatures made unique; off in the base,
so a colliding space is measured as the clustering made it, with a warning), separate (near-collisions pulled
apart), and the training
settings iters, onehot_warmup_iters, normalize and unseen (held-out classes, scored by the unseen-class
protocol). Seeds are listed separately. ``cross`` names axes whose values multiply every cell (e.g. iters for a
budget sweep: every setting at every length). The dataset is a registered name or a dataset YAML (your own
data); ``prolab grid --dataset`` swaps it. ``splits`` lists the splits every run is scored on (default
``[val]``): the first fills ``mIoU``/``mAcc``/``aAcc`` and the tables, each further one adds ``mIoU_<split>``,
``mAcc_<split>`` and ``aAcc_<split>`` (and its rows of ``per_class.csv``).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import defaults, paths
from ..identity import GRID_CODE, code_hash
from ..datasets import dataset_key
from ..files import atomic_write_json, atomic_write_text, environment_info, read_yaml_mapping, stable_hash, utc_now

AXES: dict[str, type] = {"n_properties": int, "embedder": str, "method": str, "loss": str, "temperature": float,
                         "prompt": str, "llm": str, "mode": str, "repair": bool, "separate": bool, "iters": int,
                         "onehot_warmup_iters": int, "normalize": bool, "unseen": str, "lr": float,
                         "head_init": str, "normalize_bank": bool, "aux_weight": float}
# training settings as axes; None = the grid's `train` section (or the preset) decides
TRAIN_AXES = ("iters", "onehot_warmup_iters", "normalize", "unseen", "lr", "head_init", "normalize_bank",
              "aux_weight")
# the stage whose validation rules check each axis's values (prolab.validation): one set of rules for the
# CLI flags, the notebook parameters and the grid
AXIS_STAGE = {"n_properties": "properties", "embedder": "properties", "method": "properties", "separate": "properties",
              "repair": "properties",
              "loss": "train",
              "temperature": "train", "mode": "train", "prompt": "describe", "llm": "describe",
              **{a: "train" for a in TRAIN_AXES}}
# training settings each cell sets (cell_config): a grid's `train` section may not hold them
CELL_SET = ("mode", "loss", "temperature", "seed", "dataset", "run_name", "property_space")
DEFAULT_BASE = {"n_properties": None, "embedder": defaults.EMBEDDER, "method": defaults.METHOD,
                "loss": defaults.LOSS, "temperature": defaults.TEMPERATURE, "prompt": defaults.PROMPT,
                "llm": defaults.LLM, "mode": "property", "repair": False, "separate": False,
                **{a: None for a in TRAIN_AXES}}
# axes added after grids were committed: at these values they stay out of a cell's hash, so the cells that do
# not set them keep their hashes (and their committed rows)
HASH_NEUTRAL = {"repair": False}
SCORED = ("mIoU", "mAcc", "aAcc")


def dataset_id(dataset: str) -> str:
    """What names a grid's data in its cell hashes: a registered name, or a dataset YAML's name and content."""
    from ..datasets.spec import is_spec_path, spec_id

    return spec_id(dataset) if is_spec_path(dataset) else dataset


@dataclass
class GridConfig:
    name: str
    dataset: str
    base: dict[str, Any]
    vary: dict[str, list]
    seeds: list[int]
    train: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    cross: dict[str, list] = field(default_factory=dict)
    splits: list[str] = field(default_factory=lambda: ["val"])

    def cells(self) -> list[dict[str, Any]]:
        """Every (settings, seed) to run: the base, then each axis value on its own, each of them at every
        combination of the ``cross`` values, for every seed."""
        import itertools

        variants = [("base", dict(self.base))]
        for axis, values in self.vary.items():
            for v in values:
                if v != self.base.get(axis):
                    variants.append((axis, {**self.base, axis: v}))
        combos = [dict(zip(self.cross, vs)) for vs in itertools.product(*self.cross.values())] or [{}]
        out = []
        for combo in combos:            # the shortest settings of every variant first: a partial sweep compares
            for axis, params in variants:
                for seed in self.seeds:
                    cell = {"axis": axis, **params, **combo, "seed": seed}
                    key = {k: v for k, v in cell.items() if k != "axis" and k not in TRAIN_AXES
                           and not (k in HASH_NEUTRAL and v == HASH_NEUTRAL[k])}
                    # the resolved training config (preset, `train` section, the cell's settings): a changed
                    # preset re-runs exactly the cells whose settings it changes
                    cell["cell"] = stable_hash({"dataset": dataset_id(self.dataset), **key,
                                                "config": resolved_config(self, cell)}, 12)
                    out.append(cell)
        return out


def cell_config(cfg: GridConfig, cell: dict[str, Any], **extra):
    """The training config of a grid cell: the demo preset, the grid's ``train`` section, then the cell's own
    settings (mode, loss, T, seed and the training axes it sets)."""
    from ..train.config import TrainConfig

    over = {a: cell[a] for a in TRAIN_AXES if cell.get(a) is not None}
    return TrainConfig.preset("demo", mode=cell["mode"], loss=cell["loss"], temperature=cell["temperature"],
                              seed=cell["seed"], dataset=cfg.dataset, **{**cfg.train, **over, **extra})


def resolved_config(cfg: GridConfig, cell: dict[str, Any]) -> dict:
    """What of a cell's training config decides its numbers (no names, paths or logging settings)."""
    from ..train.config import RESUME_FREE

    return {k: v for k, v in cell_config(cfg, cell).to_dict().items()
            if k not in RESUME_FREE | {"property_space", "dataset"}}


def load_grid(path: str | Path, dataset: str | None = None, splits: list[str] | None = None) -> GridConfig:
    """Read and check a grid YAML; every problem is reported before anything runs. ``dataset`` (a registered
    name or a dataset YAML) replaces the file's dataset; the grid is then named ``<name>_<dataset name>``.
    ``splits`` replaces the file's ``splits`` (the splits every run is scored on)."""
    from ..datasets import DATASETS, dataset_key, is_spec_path, load_spec
    from ..describe import load_descriptors
    from ..describe.prompts import load_prompt
    from ..properties.build import resolve_n_properties
    from ..train.config import RULES as TRAIN_RULES
    from ..train.config import TrainConfig
    from ..validation import RULES, Rule, check, unknown_names

    path = paths.resolve(path)
    raw = read_yaml_mapping(path, "grid config", {"name", "dataset", "base", "vary", "seeds", "train", "cross",
                                                  "splits"})
    for key in ("name", "dataset"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ValueError(f"{path}: {key!r} must be a non-empty string")
    paths.slug(raw["name"], f"{path}: grid name")   # it names results/<name>/: refused now, not at the first write
    if dataset is not None:
        raw = {**raw, "dataset": str(dataset), "name": f"{raw['name']}_{dataset_key(dataset)}"}
    scored = list(splits) if splits is not None else raw.get("splits", ["val"])
    if not isinstance(scored, list) or not scored or not all(isinstance(x, str) and x.strip() for x in scored) \
            or len(set(scored)) < len(scored) or "train" in scored \
            or any(not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", x) for x in scored):
        raise ValueError(f"{path}: splits = {scored!r}: a list of distinct split names (letters, digits, . _ -) to "
                         "score, e.g. [val, test] ('train' is what the runs learn from, not a score)")
    if is_spec_path(raw["dataset"]):
        from ..datasets.spec import find_spec

        spec_file = find_spec(raw["dataset"] if dataset is not None else _beside(path, raw["dataset"]))
        # every split a cell reads is listed now (folders, pairs, the training-folder guard), not after training
        for split in ("train", *scored):
            try:
                load_spec(spec_file).open(split)
            except (ValueError, OSError) as e:
                raise ValueError(f"{path}: dataset {spec_file}: the grid trains on 'train' and scores "
                                 f"{', '.join(map(repr, scored))}: {e}") from None
        raw["dataset"] = str(spec_file)
    elif raw["dataset"] not in DATASETS:
        raise ValueError(f"{path}: unknown dataset {raw['dataset']!r}; registered: {', '.join(DATASETS)}, or give "
                         "a dataset YAML (your own data)")
    base = {**DEFAULT_BASE, **(raw.get("base") or {})}
    vary = raw.get("vary") or {}
    if not isinstance(vary, dict):
        raise ValueError(f"{path}: 'vary' must map axis names to lists of values")
    cross = raw.get("cross") or {}
    if not isinstance(cross, dict):
        raise ValueError(f"{path}: 'cross' must map axis names to lists of values")
    for section, mapping in (("base", raw.get("base") or {}), ("vary", vary), ("cross", cross)):
        unknown_names(mapping, AXES, f"axis in {section} (seeds go under 'seeds')", str(path))
    for section, mapping in (("vary", vary), ("cross", cross)):
        for axis, values in mapping.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{path}: {section}.{axis} must be a non-empty list")
    both = sorted(set(vary) & set(cross))
    if both:
        raise ValueError(f"{path}: {both} are in both 'vary' and 'cross'; an axis is varied one way")
    for axis in AXES:
        stage = AXIS_STAGE[axis]
        rule = (TRAIN_RULES if stage == "train" else RULES[stage]).get(axis) or Rule(AXES[axis])
        values = [base[axis]] + list(vary.get(axis, [])) + list(cross.get(axis, []))
        for v in values:
            if v is None and axis in TRAIN_AXES:
                continue
            if axis == "unseen":
                if not isinstance(v, str):
                    raise ValueError(f"{path}: unseen = {v!r}: must be comma-separated class names")
                continue
            check(axis, v, rule, where=str(path))
    seeds = raw.get("seeds", [0])
    check("seeds", seeds, Rule(list, item=int, min=0), where=str(path))
    train = raw.get("train") or {}
    if not isinstance(train, dict):
        raise ValueError(f"{path}: 'train' must map training settings to values")
    # what every cell sets itself: in `train` it would clash with the cell's value (or silently win over it)
    per_cell = sorted(k for k in train if k in CELL_SET or (k in AXES and k not in TRAIN_AXES))
    if per_cell:
        raise ValueError(f"{path}: train: {per_cell} are set by each cell (axes go under 'base' or 'vary', seeds "
                         "under 'seeds'; the grid names runs and builds their property spaces)")
    try:
        TrainConfig.preset("demo", **{**train, "dataset": raw["dataset"]})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: train: {e}") from None
    cfg = GridConfig(raw["name"], raw["dataset"], base, vary, seeds, train, str(path), cross, scored)
    if not is_spec_path(cfg.dataset):   # a registered dataset's extra splits are opened now, not after training
        from ..train.data import eval_split

        for split in scored[1:] if scored[0] == "val" else scored:
            try:
                eval_split(cell_config(cfg, cfg.cells()[0]), split)
            except (ValueError, OSError, KeyError) as e:
                raise ValueError(f"{path}: splits: cannot open the split {split!r} of {cfg.dataset} to score it: "
                                 f"{e}") from None
    from ..datasets import load_class_names
    from ..properties.build import unseen_indices

    for v in {c["unseen"] for c in cfg.cells() if c["unseen"]} | ({train["unseen"]} if train.get("unseen") else set()):
        unseen_indices(v, load_class_names(cfg.dataset), where=f"{path}: unseen = {v!r}")
    # every descriptor file the grid needs must exist now, and every K fit its descriptions, not halfway through
    for cell in cfg.cells():
        if cell["mode"] == "property":
            f = paths.descriptor_path(dataset_key(cfg.dataset), cell["llm"], load_prompt(cell["prompt"]).tag)
            if not f.exists():
                raise FileNotFoundError(f"{path}: cell {cell['axis']}={cell.get(cell['axis'])} needs the descriptor "
                                        f"file {_shown(f)}, which does not exist (run: prolab describe --dataset "
                                        f"{cfg.dataset} --prompt {cell['prompt']} --backend llama_cpp)")
            n_desc = sum(len(v) for v in load_descriptors(f).values())
            resolve_n_properties(cfg.dataset, cell["n_properties"], n_desc,
                                 where=f"{path}: cell {cell['axis']}={cell.get(cell['axis'])} ({f.name})")
    return cfg


def _shown(f: Path) -> Path:
    """A path as the user reads it: relative to the checkout when inside it."""
    return f.relative_to(paths.repo_root()) if f.is_relative_to(paths.repo_root()) else f


def _beside(grid_file: Path, dataset: str) -> str:
    """A dataset YAML named in a grid file: relative to the grid file if it is there, else as given."""
    p = Path(dataset).expanduser()
    return str(grid_file.parent / p) if not p.is_absolute() and (grid_file.parent / p).is_file() else dataset


def base_descriptions(cfg: GridConfig) -> int:
    """Number of descriptions in the base descriptor file (relates our K to the paper's)."""
    from ..datasets import dataset_key
    from ..describe import load_descriptors
    from ..describe.prompts import load_prompt

    f = paths.descriptor_path(dataset_key(cfg.dataset), cfg.base["llm"], load_prompt(cfg.base["prompt"]).tag)
    return sum(len(v) for v in load_descriptors(f).values())


def grid_dir(cfg: GridConfig) -> Path:
    return paths.results_dir(cfg.name)


def run_cell(cfg: GridConfig, cell: dict[str, Any], progress: bool = True) -> tuple[dict, list[dict]]:
    """Build the property space, train, evaluate; returns (row, training curve)."""
    from ..describe.prompts import load_prompt
    from ..properties import build_property_space
    from ..train import train
    from ..datasets import dataset_key
    from ..evaluate.score import evaluate_runs

    over = {a: cell[a] for a in TRAIN_AXES if cell.get(a) is not None}   # training settings this cell sets
    unseen = over.get("unseen", cfg.train.get("unseen")) or ""
    space_path = None
    if cell["mode"] == "property":
        dfile = paths.descriptor_path(dataset_key(cfg.dataset), cell["llm"], load_prompt(cell["prompt"]).tag)
        built = build_property_space(cfg.dataset, dfile, cell["embedder"], n_properties=cell["n_properties"],
                                     method=cell["method"], separate=bool(cell["separate"]),
                                     repair=bool(cell.get("repair")), out_root=paths.cache_root() / "grid_spaces",
                                     progress=False, unseen=unseen or None)
        space_path = str(built.path)
        collided = built.space.notes["collisions_after"]
        if collided:   # measured as made (the base does not repair), but never silently
            import sys

            print(f"warning: grid {cfg.name}, cell {cell['cell']} ({_cell_label(cell)}): the property space "
                  f"gives {'; '.join(' = '.join(g) for g in collided)} one signature, which property supervision "
                  "cannot tell apart; the axis `repair: [true]` measures the repaired space", file=sys.stderr,
                  flush=True)
    run_name = f"{cfg.name}-{cell['cell']}"
    t0 = time.time()
    res = train(cell_config(cfg, cell, run_name=run_name, property_space=space_path), progress=progress)
    seconds = time.time() - t0
    from ..train.runs import read_log

    log = read_log(run_name)
    if getattr(res, "reused", False):   # only re-scored: the training time is the run's own, from its log
        stamps = [r["seconds"] for r in log if "seconds" in r]
        seconds = stamps[-1] if stamps else float("nan")
    summary, _, results = evaluate_runs([run_name], split=cfg.splits[0], progress=False)
    metrics = summary.iloc[0].to_dict()
    row = {**cell, **{k: metrics[k] for k in SCORED if k in metrics},
           "unseen_IoU": metrics.get("unseen IoU (mean)"), "train_seconds": round(seconds, 1),
           "finished": utc_now()}
    if row["unseen_IoU"] is None and unseen:   # a dataset without reserved classes: the classes it held out
        from ..datasets import class_key

        iou = results[run_name].per_class["IoU"]
        keys = {class_key(c) for c in unseen.split(",") if c.strip()}   # spelt as unseen_indices matches them
        row["unseen_IoU"] = round(float(iou[[class_key(c) in keys for c in iou.index]].mean()), 2)
    for split in cfg.splits[1:]:
        more, _, _ = evaluate_runs([run_name], split=split, progress=False)
        row.update({f"{k}_{split}": more.iloc[0][k] for k in SCORED if k in more.columns})
    row["splits"] = ",".join(cfg.splits)
    if unseen:  # the unseen-class protocol: seen / unseen / harmonic mean, uncalibrated and calibrated
        row.update(unseen_protocol(run_name, cfg.splits[0]).row())
    curve = [{"cell": cell["cell"], "iteration": r["iteration"], "loss": r["loss"]} for r in log]
    return row, curve


def _cell_label(cell: dict[str, Any]) -> str:
    return "base" if cell["axis"] == "base" else f"{cell['axis']} = {cell.get(cell['axis'])}"


def row_is_current(row: dict, code: str, splits: list[str]) -> bool:
    """A row counts as done when the code that made it is the code now and it was scored on these splits
    (rows written before grids had ``splits`` were scored on val)."""
    scored = row.get("splits")
    return row.get("code") == code and (scored if isinstance(scored, str) else "val") == ",".join(splits)


def unseen_protocol(run_name: str, split: str = "val", progress: bool = False):
    """``evaluate.unseen.evaluate_unseen`` for a finished run: every class it never saw labelled (its unseen
    setting and the dataset's reserved classes), gamma chosen on the split's even images, scored on the odd."""
    from ..train.data import eval_split
    from ..train.runs import load_trained
    from ..train.build import run_unseen
    from ..evaluate.unseen import evaluate_unseen

    model, cfg, names = load_trained(run_name)
    return evaluate_unseen(model, eval_split(cfg, split), run_unseen(cfg, names), progress=progress)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """"I/N" -> (I, N) with 0 <= I < N: this process runs every N-th cell starting at the I-th."""
    if text is None:
        return None
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise ValueError(f"shard {text!r}: expected I/N, e.g. 0/2") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"shard {text!r}: need N >= 1 and 0 <= I < N")
    return i, n


def _read_csv(path: Path) -> pd.DataFrame:
    # hashes as text: an all-digit cell or code hash (or one like "12e5") must not be read as a number
    return pd.read_csv(path, dtype={"cell": str, "code": str, "splits": str}) if path.exists() else pd.DataFrame()


def run_grid(config: GridConfig | str | Path, progress: bool = True,
             shard: tuple[int, int] | None = None) -> pd.DataFrame:
    """Run every cell not yet in ``results/<name>/runs.csv`` with the current code (``identity.code_hash``);
    rows are written as cells finish, so a killed grid resumes, and rows of older code are run again.
    ``shard=(i, n)`` runs only every n-th cell from the i-th: n processes (one per core or machine, same
    results folder) share a grid; rows are merged into the CSVs under a file lock. Returns every row."""
    from filelock import FileLock

    from ..progress import tqdm

    cfg = config if isinstance(config, GridConfig) else load_grid(config)
    out = grid_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    runs_csv, curves_csv = out / "runs.csv", out / "curves.csv"
    lock = FileLock(str(out / ".write.lock"))
    with lock:
        done = _read_csv(runs_csv)
        atomic_write_json(out / "grid.json", {"name": cfg.name, "dataset": dataset_key(cfg.dataset), "base": cfg.base,
                                              "vary": cfg.vary, "cross": cfg.cross, "seeds": cfg.seeds,
                                              "splits": cfg.splits,
                                              "train": cfg.train, "n_descriptions": base_descriptions(cfg),
                                              "source": Path(cfg.source).name, "environment": environment_info()})
    # a row counts as done only if the code that made it is the code now: results of older code are redone
    code = code_hash(*GRID_CODE)
    current = {r["cell"] for r in done.to_dict("records") if row_is_current(r, code, cfg.splits)}
    cells = cfg.cells()
    if shard is not None:
        cells = cells[shard[0]::shard[1]]
    todo = [c for c in cells if c["cell"] not in current]
    for cell in tqdm(todo, desc=f"grid {cfg.name}" + (f" shard {shard[0]}/{shard[1]}" if shard else ""),
                     disable=not progress):
        row, curve = run_cell(cfg, cell, progress=False)
        row["code"] = code
        with lock:   # re-read: another shard may have written rows since
            done, curves = _read_csv(runs_csv), _read_csv(curves_csv)
            if not done.empty:
                done = done[done["cell"] != cell["cell"]]
            if not curves.empty:
                curves = curves[curves["cell"] != cell["cell"]]
            done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
            curves = pd.concat([curves, pd.DataFrame(curve)], ignore_index=True)
            atomic_write_text(curves_csv, curves.to_csv(index=False))
            atomic_write_text(runs_csv, done.to_csv(index=False))
    with lock:
        return _read_csv(runs_csv)
