"""Command line: ``prolab <stage> ...``. Flag names equal the notebooks' parameter names."""
from __future__ import annotations

import argparse
import sys

from . import defaults


def _add_describe(sub: argparse._SubParsersAction) -> None:
    from .describe.backends import GenerationParams
    from .describe.retrieval import RetrievalDefaults

    g, r = GenerationParams(), RetrievalDefaults()
    p = sub.add_parser("describe", help="stage 1: ask an LLM for descriptions of every class of a dataset",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", nargs="+", required=True,
                   help="registered dataset name(s) (see `prolab doctor`) or class-list files (.txt/.json)")
    p.add_argument("--backend", default="replay", choices=defaults.BACKENDS)
    p.add_argument("--llm", default=None, help="model name, alias or path (default: the packaged Qwen GGUF)")
    p.add_argument("--prompt", default=defaults.PROMPT, help="prompt name in descriptors/prompts/ or a YAML path")
    p.add_argument("--base_url", default=None, help="OpenAI-compatible endpoint (openai backend)")
    p.add_argument("--api_key_env", default=None,
                   help="environment variable holding the API key (default: OPENAI_API_KEY for the OpenAI API; "
                        "none for a --base_url server unless given)")
    p.add_argument("--concurrency", type=int, default=r.concurrency)
    p.add_argument("--max_attempts", type=int, default=r.max_attempts)
    p.add_argument("--llm_temperature", type=float, default=g.temperature,
                   help="the LLM's sampling temperature (not the sigmoid temperature T of stage 3)")
    p.add_argument("--max_tokens", type=int, default=g.max_tokens)
    p.add_argument("--repeat_penalty", type=float, default=g.repeat_penalty)
    p.add_argument("--seed", type=int, default=g.seed)
    p.add_argument("--out_root", default=None, help="folder for descriptor files (default: descriptors/)")
    p.add_argument("--cache_path", default=None, help="call cache JSONL (default: descriptors/cache/calls.jsonl)")
    p.set_defaults(func=_run_describe)


def _run_describe(a: argparse.Namespace) -> int:
    from dataclasses import replace

    from .describe import GenerationParams, RetrievalDefaults, describe_dataset, make_backend
    from .validation import validate

    validate("describe", vars(a))  # every flag before the model loads
    params = GenerationParams(temperature=a.llm_temperature, max_tokens=a.max_tokens, repeat_penalty=a.repeat_penalty,
                              seed=a.seed)
    defaults = replace(RetrievalDefaults(), concurrency=a.concurrency, max_attempts=a.max_attempts)
    backend = make_backend(a.backend, a.llm, base_url=a.base_url, api_key_env=a.api_key_env)  # shared by all datasets
    failed = 0
    for ds in a.dataset:
        out = describe_dataset(ds, backend=backend, prompt=a.prompt, out_root=a.out_root,
                               cache_path=a.cache_path, params=params, defaults=defaults)
        print(f"{ds}: {out.result.summary()}\n  -> {out.path}", flush=True)
        failed += len(out.result.failures)
    return 0 if failed == 0 else 3


def _add_properties(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("properties", help="stage 2: embed descriptions, cluster them into properties, save the space",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", nargs="+", required=True, help="registered dataset name(s) or class-list files")
    p.add_argument("--descriptor_file", default=None,
                   help="descriptor file (default: the committed Qwen/structured file of the dataset)")
    p.add_argument("--embedder", default=defaults.EMBEDDER, help="offline alias, local path or hub name")
    p.add_argument("--embedder_kind", default=defaults.EMBEDDER_KIND, choices=defaults.EMBEDDER_KINDS)
    p.add_argument("--n_properties", type=int, default=None, help="K (default: the paper's value per dataset)")
    p.add_argument("--method", default=defaults.METHOD, choices=defaults.METHODS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repair", action="store_true", help="make colliding signatures unique")
    p.add_argument("--out_root", default=None, help="folder for property spaces (default: properties/)")
    p.add_argument("--release_export", default=None, help="also write the release's torch layout to this file")
    p.set_defaults(func=_run_properties)


def _run_properties(a: argparse.Namespace) -> int:
    from .properties import build_property_space
    from .properties.analysis import property_stats

    from .validation import validate

    validate("properties", vars(a))
    if a.descriptor_file and len(a.dataset) > 1:
        raise ValueError("--descriptor_file applies to one dataset; pass a single --dataset")
    for ds in a.dataset:
        out = build_property_space(ds, descriptor_file=a.descriptor_file, embedder=a.embedder,
                                   embedder_kind=a.embedder_kind, n_properties=a.n_properties, method=a.method,
                                   seed=a.seed, repair=a.repair, out_root=a.out_root)
        s = property_stats(out.space)
        print(f"{out.space}\n  -> {out.path}\n  properties per class {s['properties per class (mean)']}, "
              f"colliding groups before/after: {len(out.space.notes['collisions_before'])}/"
              f"{len(out.space.notes['collisions_after'])}", flush=True)
        if a.release_export:
            print(f"  release layout -> {out.space.to_release(a.release_export)}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    from dataclasses import fields

    from .segment.train import TrainConfig

    p = sub.add_parser("train", help="stage 3: train a segmentation model (property or category supervision)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", choices=["demo", "paper"], default="demo",
                   help="demo: the embedded default in about a minute on a CPU; paper: the paper's schedule")
    for f in fields(TrainConfig):  # one flag per config field, named like the notebook parameters
        if f.name == "scale":
            p.add_argument("--scale", type=int, nargs=2, default=None)
        elif f.type in ("bool", bool):
            p.add_argument(f"--{f.name}", type=lambda v: v.lower() in ("1", "true", "yes"), default=None)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            p.add_argument(f"--{f.name}", type=kind, default=None)
    p.add_argument("--force", action="store_true",
                   help="train again even if a finished run with identical inputs exists (it is moved aside)")
    p.set_defaults(func=_run_train)


def _train_config(a: argparse.Namespace):
    from dataclasses import fields

    from .segment.train import TrainConfig

    given = {f.name: getattr(a, f.name) for f in fields(TrainConfig) if getattr(a, f.name, None) is not None}
    if "pretrained" in given and given["pretrained"].lower() == "none":
        given["pretrained"] = None
    return TrainConfig.preset(a.preset, **given)


def _run_train(a: argparse.Namespace) -> int:
    from .segment import train

    cfg = _train_config(a)
    changes = cfg.preset_changes(a.preset)
    if changes:  # a preset is a starting point: say what it set
        print(f"preset {a.preset}: " + ", ".join(f"{k}={v}" for k, v in changes.items()
                                                  if getattr(a, k, None) is None), flush=True)
    res = train(cfg, force=a.force)
    print(f"run {res.summary()}; weights {res.weights}")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="stage 3: evaluate a trained run (mIoU, mAcc, aAcc, per-class IoU)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run_name", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--inference", default="whole", choices=["whole", "slide"])
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    p.add_argument("--out_dir", default=None, help="results folder; the run's files go to <out_dir>/<run_name> "
                                                   "(default: results/eval)")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(a: argparse.Namespace) -> int:
    from . import paths
    from .segment.report import evaluate_runs
    from .validation import validate

    validate("evaluate", vars(a))
    out_dir = paths.resolve(a.out_dir) if a.out_dir else paths.results_dir("eval")
    summary, _, _ = evaluate_runs([a.run_name], a.split, a.inference, a.limit, out_dir=out_dir)
    print(f"{summary.to_string()}\n-> {out_dir / paths.slug(a.run_name)}")
    return 0


def _add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="print versions, device and which offline models are installed")
    p.set_defaults(func=_run_doctor)


def _run_doctor(a: argparse.Namespace) -> int:
    from . import offline, paths
    from .datasets import DATASETS
    from .files import environment_info

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


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the notebook pipeline from a YAML config (papermill)")
    p.add_argument("--config", default="configs/demo.yaml", help="run config (relative to the repository root)")
    p.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                   help="set a parameter for every step that declares it (value read as YAML); repeatable")
    p.add_argument("-f", "--parameters_file", action="append", default=[], metavar="FILE",
                   help="YAML mapping of parameters, applied like -p (before the -p flags); repeatable")
    p.add_argument("--force", action="store_true", help="run every notebook even if its inputs are unchanged")
    p.set_defaults(func=_run_run)


def _run_run(a: argparse.Namespace) -> int:
    import time

    from .pipeline import parse_overrides, run_pipeline

    t0 = time.time()
    out = run_pipeline(a.config, force=a.force, overrides=parse_overrides(a.parameter, a.parameters_file))
    print(f"pipeline finished in {time.time() - t0:.0f} s; results in {out}")
    return 0


def _add_grid(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grid", help="run an ablation grid (YAML) and regenerate its tables")
    p.add_argument("--config", default="configs/grid_demo.yaml")
    p.add_argument("--check", action="store_true", help="only validate the config and list the cells")
    p.set_defaults(func=_run_grid)


def _run_grid(a: argparse.Namespace) -> int:
    from .pipeline.grid import base_descriptions, grid_dir, load_grid, run_grid
    from .pipeline.tables import write_tables

    cfg = load_grid(a.config)
    cells = cfg.cells()
    print(f"grid {cfg.name}: {len(cells)} runs ({len(cells) // max(1, len(cfg.seeds))} settings x "
          f"{len(cfg.seeds)} seeds) on {cfg.dataset}")
    if a.check:
        for c in cells:
            print(f"  {c['cell']}  {c['axis']:>12s} = {c.get(c['axis'], '') if c['axis'] != 'base' else '':<24} "
                  f"seed {c['seed']}")
        return 0
    runs = run_grid(cfg)
    print(f"tables -> {write_tables(runs, grid_dir(cfg), base_descriptions(cfg))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prolab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_describe(sub)
    _add_properties(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_doctor(sub)
    _add_run(sub)
    _add_grid(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, KeyError, LookupError, RuntimeError, OSError) as e:
        from .redact import redact

        msg = e.args[0] if isinstance(e, KeyError) and e.args else e  # KeyError's str() adds quotes
        print(f"prolab {args.command}: error: {redact(msg)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
