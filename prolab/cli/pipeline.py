"""``prolab doctor``, ``prolab run``, ``prolab grid`` and ``prolab verify``: the whole pipeline."""
from __future__ import annotations

import argparse

from .common import DATASET_HELP, help_text, here, subparser


def add_doctor(sub: argparse._SubParsersAction) -> None:
    p = subparser(sub, "doctor", "print versions, device and which offline models are installed")
    p.set_defaults(func=run_doctor)


def run_doctor(a: argparse.Namespace) -> int:
    from .. import offline, paths
    from ..datasets import DATASETS
    from ..files import environment_info

    env = environment_info()
    print(f"python {env['python']} on {env['platform']} ({env['cpu_count']} CPUs)")
    for k, v in env["versions"].items():
        print(f"  {k:24s} {v}")
    try:
        import torch

        dev = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
        extra = f" ({torch.cuda.get_device_name(0)})" if dev == "cuda" else ""
        print(f"device: {dev}{extra}")
    except ImportError:
        print("device: torch not installed")
    try:
        import llama_cpp

        print(f"llama-cpp-python {llama_cpp.__version__}")
    except ImportError:
        print("llama-cpp-python: not installed (`make llm` builds it)")
    print(f"repo root:  {paths.repo_root()}\ncache root: {paths.cache_root()}")
    print("offline models:")
    for row in offline.inventory():
        print(f"  {row['model']:40s} {row['kind']:14s} {row['status']}")
    print("datasets: " + ", ".join(f"{k} ({d.n_classes})" for k, d in DATASETS.items()))
    return 0


def add_run(sub: argparse._SubParsersAction) -> None:
    p = subparser(sub, "run", "run the notebook pipeline from a YAML config (papermill)")
    p.add_argument("--config", default="configs/demo.yaml",
                   help=help_text("run config (relative to the repository root)", "configs/demo.yaml"))
    p.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                   help="set a parameter for every step that declares it (value read as YAML); repeatable")
    p.add_argument("-f", "--parameters_file", action="append", default=[], metavar="FILE",
                   help="YAML mapping of parameters, applied like -p (before the -p flags); repeatable")
    p.add_argument("--force", action="store_true",
                   help=help_text("run every notebook even if its inputs are unchanged", "off"))
    p.set_defaults(func=run_run)


def run_run(a: argparse.Namespace) -> int:
    import time

    from ..pipeline import parse_overrides, run_pipeline

    t0 = time.time()
    out = run_pipeline(a.config, force=a.force, overrides=parse_overrides(a.parameter, a.parameters_file))
    print(f"pipeline finished in {time.time() - t0:.0f} s; results in {out}")
    return 0


def add_grid(sub: argparse._SubParsersAction) -> None:
    p = subparser(sub, "grid", "run an ablation grid (YAML): every setting for every seed, then its tables")
    p.add_argument("--config", default="configs/grid_demo.yaml", help=help_text("grid YAML", "configs/grid_demo.yaml"))
    p.add_argument("--dataset", default=None,
                   help=help_text(DATASET_HELP.replace(" or a class-list file (.txt/.json)", "") + "; results go to "
                           "results/<grid name>_<dataset name>/", "the grid YAML's dataset"))
    p.add_argument("--splits", nargs="+", default=None, metavar="SPLIT",
                   help=help_text("the splits every run is scored on (the first fills mIoU and the tables; e.g. --splits "
                           "val test)", "the grid YAML's splits, else val"))
    p.add_argument("--check", action="store_true", help=help_text("only validate the config and list the runs", "off"))
    p.add_argument("--shard", default=None,
                   help=help_text("I/N: run every N-th run from the I-th, so N processes (cores or machines sharing the "
                           "results folder) split one grid; rows merge under a file lock", "all runs"))
    p.set_defaults(func=run_grid)


def run_grid(a: argparse.Namespace) -> int:
    from ..pipeline.grid import base_descriptions, grid_dir, load_grid, parse_shard, run_grid
    from ..reports.tables import write_tables

    shard = parse_shard(a.shard)           # checked before the config is loaded or anything runs
    cfg = load_grid(a.config, dataset=a.dataset, splits=a.splits)
    cells = cfg.cells()
    print(f"grid {cfg.name}: {len(cells)} runs ({len(cells) // max(1, len(cfg.seeds))} settings x "
          f"{len(cfg.seeds)} seeds) on {cfg.dataset}, scored on {', '.join(cfg.splits)}")
    if a.check:
        if shard is not None:
            cells = cells[shard[0]::shard[1]]   # the runs this shard would make
            print(f"shard {shard[0]}/{shard[1]}: {len(cells)} of them")
        for c in cells:
            crossed = ", ".join(f"{k} = {c[k]}" for k in cfg.cross)
            print(f"  {c['cell']}  {c['axis']:>12s} = {str(c.get(c['axis'], '')) if c['axis'] != 'base' else '':<24} "
                  f"seed {c['seed']}" + (f"  ({crossed})" if crossed else ""))
        return 0
    from filelock import FileLock

    from ..pipeline.gridrows import set_aside_stale_rows

    out = grid_dir(cfg)
    if out.is_dir():
        with FileLock(str(out / ".write.lock")):   # the lock run_grid and the other shards write under
            moved = set_aside_stale_rows(out, {c["cell"] for c in cells})
        if moved:
            print(f"{moved} rows of settings this grid no longer makes moved to {out / 'runs.stale.csv'}")
    runs = run_grid(cfg, shard=shard)
    from ..datasets import dataset_key

    tables = write_tables(runs, grid_dir(cfg), base_descriptions(cfg), dataset_key(cfg.dataset), cfg.train,
                          cfg.splits[0])
    print(f"tables -> {tables}")
    # per-class IoU once every cell has its row from the current code (a shard that ends first leaves it to the
    # last one: rows of older code may still be there while another shard retrains them)
    from ..identity import GRID_CODE, code_hash
    from ..pipeline.grid import row_is_current

    code = code_hash(*GRID_CODE)
    current = {r["cell"] for r in runs.to_dict("records") if row_is_current(r, code, cfg.splits)}
    pc, rows = grid_dir(cfg) / "per_class.csv", grid_dir(cfg) / "runs.csv"
    if {c["cell"] for c in cells} <= current and \
            (not pc.is_file() or pc.stat().st_mtime < rows.stat().st_mtime):
        from ..reports.tables import write_class_iou

        print(f"per-class IoU -> {write_class_iou(cfg.name)}")
    return 0


def add_verify(sub: argparse._SubParsersAction) -> None:
    p = subparser(sub, "verify", "re-run what made a results folder, from an empty cache, and compare every metric "
                               "it holds with the committed one (exit status 1 on a difference)")
    p.add_argument("results_dir", nargs="?", default="results/demo",
                   help=help_text("a `prolab run` folder (config.json), a grid folder (grid.json + runs.csv) or "
                           "results/label_sets", "results/demo"))
    p.add_argument("--tolerance", type=float, default=0.0,
                   help=help_text("largest absolute difference accepted per value", "0: the CPU computation is "
                           "deterministic"))
    p.add_argument("--against", default=None, metavar="DIR",
                   help=help_text("compare with this existing results folder of the same kind instead of re-running",
                           "re-run"))
    p.add_argument("--keep", default=None, metavar="DIR",
                   help=help_text("re-run in this new or empty folder (checkout copy, cache, results) and keep it",
                           "a temporary folder, removed"))
    p.add_argument("--all", action="store_true", help=help_text("print every compared value, not only the summary "
                                                          "metrics and the differences", "off"))
    p.add_argument("--restamp", action="store_true",
                   help=help_text("grid folders: re-run --cells sample cells with the current code and, only if every "
                           "value is identical, re-stamp the rows' code hash (proof in restamps.json)", "off"))
    p.add_argument("--cells", type=int, default=1, help=help_text("with --restamp: how many cells to re-run", "1"))
    p.add_argument("--grid_config", default=None,
                   help=help_text("with --restamp: the grid YAML that made the folder (needed for a grid on a dataset "
                           "YAML)", "the config grid.json records"))
    p.add_argument("--dataset", default=None, help=help_text("with --restamp --grid_config: the grid's --dataset", "none"))
    p.set_defaults(func=run_verify)


def run_verify(a: argparse.Namespace) -> int:
    from ..pipeline.verify import verify

    if a.restamp:
        from ..pipeline.restamp import restamp

        return restamp(here(a.results_dir), a.cells, keep=here(a.keep), grid_file=here(a.grid_config),
                       dataset=here(a.dataset) if a.dataset and a.dataset.endswith((".yaml", ".yml")) else a.dataset)
    if a.cells != 1 or a.grid_config or a.dataset:
        raise ValueError("--cells, --grid_config and --dataset apply with --restamp only")
    return verify(here(a.results_dir), tolerance=a.tolerance, against=here(a.against),
                  keep=here(a.keep), show_all=a.all)


