"""Command line: ``prolab <stage> ...``. Flag names equal the notebooks' parameter names."""
from __future__ import annotations

import argparse
import sys

from . import defaults, paths

DATASET_HELP = ("a registered dataset (see `prolab doctor`), a dataset YAML (your own data; "
                "docs/howto/own-data.md; `python -m prolab.datasets.spec` prints an example) or a class-list file (.txt/.json)")
K_HELP = ("K, the number of properties (default: the paper's K for a paper dataset, e.g. 256 for ade20k_150; "
          "a dataset YAML's n_properties; otherwise one per 6 descriptions, at least 2)")


def _h(text: str, default=None) -> str:
    """A help line with its default said once (argparse's %(default)s is not used anywhere)."""
    return text if default is None else f"{text} (default: {default})"


def _here(value: str | None) -> str | None:
    """A path flag: relative to the current folder (where the user is), unless it only exists relative to the
    repository root (``configs/demo.yaml`` from anywhere). The API and the notebooks keep the repository rule."""
    if not value:
        return value
    from pathlib import Path

    from . import paths

    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    probe = lambda q: Path(str(q).replace("{split}", "train")).exists()  # noqa: E731  (a {split} template)
    if not probe(p) and probe(paths.resolve(p)):
        return value
    return str(Path.cwd() / p)


PATH_FLAGS = ("out_root", "cache_path", "descriptor_file", "descriptor_root", "release_export", "data_root",
              "img_dir", "ann_dir", "classes", "property_space", "out_dir", "config")


def _parser(sub, name: str, help: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help)


def _add_describe(sub: argparse._SubParsersAction) -> None:
    from .describe.backends import GenerationParams
    from .describe.retrieval import RetrievalDefaults

    g, r = GenerationParams(), RetrievalDefaults()
    p = _parser(sub, "describe", "stage 1: ask an LLM for descriptions of every class of a dataset")
    p.add_argument("--dataset", nargs="+", required=True, help=DATASET_HELP + "; several are allowed")
    p.add_argument("--backend", default="replay", choices=defaults.BACKENDS,
                   help=_h("replay answers from the call cache only (offline, no model); llama_cpp runs the packaged "
                           "Qwen GGUF (`make llm`); openai any OpenAI-compatible server; transformers a local HF "
                           "model", "replay"))
    p.add_argument("--llm", default=None, help=_h("model name, alias or path", f"the packaged {defaults.LLM}"))
    p.add_argument("--prompt", default=defaults.PROMPT,
                   help=_h("prompt name in descriptors/prompts/ or a YAML path", defaults.PROMPT))
    p.add_argument("--base_url", default=None, help=_h("OpenAI-compatible endpoint (openai backend)",
                                                       "$OPENAI_BASE_URL, else the OpenAI API"))
    p.add_argument("--api_key_env", default=None,
                   help=_h("name of the environment variable holding the API key",
                           "OPENAI_API_KEY for the OpenAI API; none for a --base_url server"))
    p.add_argument("--concurrency", type=int, default=r.concurrency,
                   help=_h("classes asked at once (capped by the backend)", r.concurrency))
    p.add_argument("--max_attempts", type=int, default=r.max_attempts,
                   help=_h("asks per class: the first plus corrective re-asks", r.max_attempts))
    p.add_argument("--llm_temperature", type=float, default=g.temperature,
                   help=_h("the LLM's sampling temperature (not the sigmoid temperature T of stage 3)", g.temperature))
    p.add_argument("--max_tokens", type=int, default=g.max_tokens, help=_h("reply length cap in tokens", g.max_tokens))
    p.add_argument("--repeat_penalty", type=float, default=g.repeat_penalty,
                   help=_h("penalty on repeated tokens (local models loop without it)", g.repeat_penalty))
    p.add_argument("--seed", type=int, default=g.seed, help=_h("sampling seed", g.seed))
    p.add_argument("--out_root", default=None,
                   help=_h("folder for descriptor files (then give `prolab properties` --descriptor_root)",
                           "descriptors/ for the kit's datasets, $PROLAB_CACHE/workspace/descriptors/ for yours"))
    p.add_argument("--cache_path", default=None,
                   help=_h("call cache JSONL, read and written alone",
                           "yours ($PROLAB_CACHE/llm/calls.jsonl) over the kit's committed descriptors/cache/calls.jsonl"))
    same = "as the dataset's existing descriptor file was made (so a replay reproduces it), else "
    p.add_argument("--prompt_names", action=argparse.BooleanOptionalAction, default=None,
                   help=_h("ask classes whose mmseg name is ambiguous or unreadable under the name in "
                           "prolab/describe/prompt_names/<dataset>.json (ADE20K tank -> 'storage tank'); descriptor "
                           "files stay keyed by the mmseg names; --no-prompt_names to turn off", same + "on (the kit's recipe for structured prompts)"))
    p.add_argument("--min_pooled", type=int, default=None,
                   help=_h("a class whose reply gives fewer descriptions than this is asked again with seeded "
                           "sampling and its replies are pooled without duplicates, up to 15 (0: off)", same + "8 (the kit's recipe; 0 for the naive prompt)"))
    p.add_argument("--max_samples", type=int, default=None,
                   help=_h("at most this many sampled replies per class when pooling", same + str(r.max_samples)))
    p.add_argument("--dedup_threshold", type=float, default=None,
                   help=_h("cosine at or above which two pooled descriptions count as one (with --pool_embedder)",
                           same + str(r.dedup_threshold)))
    p.add_argument("--pool_temperature", type=float, default=None,
                   help=_h("LLM sampling temperature of the pooled samples", same + str(r.pool_temperature)))
    p.add_argument("--pool_embedder", default=None,
                   help=_h("sentence embedder for near-duplicate removal when pooling, e.g. all-MiniLM-L6-v2",
                           same + "all-MiniLM-L6-v2 (the kit's recipe)"))
    p.set_defaults(func=_run_describe)


def _run_describe(a: argparse.Namespace) -> int:
    from .describe import GenerationParams, describe_dataset, make_backend
    from .describe.prompts import load_prompt
    from .validation import validate

    validate("describe", vars(a), skip_none=True)  # every flag before the model loads
    params = GenerationParams(temperature=a.llm_temperature, max_tokens=a.max_tokens, repeat_penalty=a.repeat_penalty,
                              seed=a.seed)
    backend = make_backend(a.backend, a.llm, base_url=a.base_url, api_key_env=a.api_key_env)  # shared by all datasets
    tag = load_prompt(a.prompt).tag
    failed = 0
    for ds in a.dataset:
        _say_dataset(ds)
        defaults, prompt_names, embedder = _describe_settings(a, ds, backend.model_id, tag)
        out = describe_dataset(ds, backend=backend, prompt=a.prompt, out_root=a.out_root,
                               cache_path=a.cache_path, params=params, defaults=defaults,
                               prompt_names=prompt_names, embedder=embedder)
        print(f"{ds}: {out.result.summary()}\n  -> {out.path}", flush=True)
        failed += len(out.result.failures)
    return 0 if failed == 0 else 3


def _describe_settings(a: argparse.Namespace, ds: str, llm_id: str, prompt_tag: str):
    """(RetrievalDefaults, prompt_names, embedder) of one dataset's describe run: the flags given, and for the
    prompt-name and pooling flags left out, the settings the dataset's existing descriptor file records (so
    `prolab describe --dataset X` replays a committed file byte for byte and never rewrites it with other
    settings), else off."""
    from dataclasses import replace

    from .datasets import dataset_key
    from .describe import RetrievalDefaults, load_meta, replay_settings

    target = paths.descriptor_path(dataset_key(ds), llm_id, prompt_tag,
                                   root=paths.resolve(a.out_root) if a.out_root else None)
    rec = replay_settings(load_meta(target)) if target.exists() else {}
    # a dataset described for the first time gets the kit's recipe (structured prompts), as the committed files did
    from .describe.prompts import load_prompt
    from .describe.retrieval import KIT_RECIPE

    first = not target.exists() and load_prompt(a.prompt).reply_format == "bullets"
    if first:
        rec = {"defaults": replace(RetrievalDefaults(), min_pooled=KIT_RECIPE["min_pooled"],
                                   max_samples=KIT_RECIPE["max_samples"]),
               "prompt_names": KIT_RECIPE["prompt_names"], "embedder": KIT_RECIPE["pool_embedder"]}
    base = rec.get("defaults") or RetrievalDefaults()
    keys = ("min_pooled", "max_samples", "dedup_threshold", "pool_temperature")
    taken = [k for k in keys if getattr(a, k) is None and rec.get("defaults") is not None]
    defaults = replace(base, concurrency=a.concurrency, max_attempts=a.max_attempts,
                       **{k: getattr(a, k) for k in keys if getattr(a, k) is not None})
    prompt_names = a.prompt_names if a.prompt_names is not None else rec.get("prompt_names", False)
    embedder = a.pool_embedder if a.pool_embedder is not None else rec.get("embedder")
    if a.prompt_names is None and rec.get("prompt_names"):
        taken.append("prompt_names")
    if a.pool_embedder is None and rec.get("embedder"):
        taken.append("pool_embedder")
    if taken and first:
        print(f"  {', '.join(taken)}: the kit's recipe for a first description (min_pooled {defaults.min_pooled}, "
              f"prompt names {'on' if prompt_names else 'off'}, de-duplicated with {embedder}), as the committed "
              "files were made; give the flags to change them (--min_pooled 0: one reply per class)", flush=True)
    elif taken:
        print(f"  {', '.join(taken)}: as {target.name} was made (min_pooled {defaults.min_pooled}, prompt names "
              f"{'on' if prompt_names else 'off'}); give the flags to change them", flush=True)
    return defaults, prompt_names, embedder


def _say_dataset(ds: str) -> None:
    """Name the dataset a file stands for, so no name is taken silently from a file name."""
    from .datasets import DATASETS, dataset_key, load_class_names

    if ds not in DATASETS:
        print(f"dataset {dataset_key(ds)!r} ({len(load_class_names(ds))} classes) from {ds}", flush=True)


def _add_properties(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "properties", "stage 2: embed descriptions, cluster them into properties, save the space")
    p.add_argument("--dataset", nargs="+", required=True, help=DATASET_HELP + "; several are allowed")
    p.add_argument("--descriptor_file", default=None,
                   help=_h("descriptor file", "what `prolab describe --dataset` wrote: "
                                              "descriptors/<dataset>/<llm>__structured-<id>.json"))
    p.add_argument("--descriptor_root", default=None,
                   help=_h("folder `prolab describe --out_root` wrote into", "descriptors/"))
    p.add_argument("--embedder", default=defaults.EMBEDDER,
                   help=_h("sentence embedder: offline alias, local path or hub name", defaults.EMBEDDER))
    p.add_argument("--embedder_kind", default=defaults.EMBEDDER_KIND, choices=defaults.EMBEDDER_KINDS,
                   help=_h("how to load the embedder", defaults.EMBEDDER_KIND))
    p.add_argument("--n_properties", type=int, default=None, help=K_HELP)
    p.add_argument("--method", default=defaults.METHOD, choices=defaults.METHODS,
                   help=_h("clustering method", defaults.METHOD))
    p.add_argument("--seed", type=int, default=0, help=_h("clustering seed", 0))
    p.add_argument("--repair", action=argparse.BooleanOptionalAction, default=True,
                   help=_h("make identical signatures unique (each colliding class gains its nearest property; the "
                           "file is then named -repaired); --no-repair keeps them (two classes that property "
                           "supervision can never tell apart)", "on"))
    p.add_argument("--separate", action="store_true",
                   help=_h("also pull near-collisions apart (subset signatures, cosine >= 0.8, Hamming 1) and split "
                           "properties shared by half the classes or more", "off"))
    p.add_argument("--unseen", default=None, metavar="CLASSES",
                   help=_h("comma-separated classes held out of the clustering (the unseen-class protocol): the "
                           "bank is built from the other classes' descriptions and theirs are assigned to it; "
                           "written to <PROLAB_CACHE>/spaces/, where `prolab train --unseen` looks", "none"))
    p.add_argument("--out_root", default=None, help=_h("folder for property spaces", "properties/ for the kit's "
                                                                "datasets, $PROLAB_CACHE/workspace/properties/ for yours"))
    p.add_argument("--release_export", default=None, help=_h("also write the release's torch layout to this file",
                                                             "not written"))
    p.add_argument("--release_partition", default=None, metavar="FILE",
                   help=_h("build the space from the authors' property partition (property_<dataset>.json: "
                           "{property: [\"class: description\", ...]}) instead of clustering; the bank is the mean "
                           "of each property's member embeddings under --embedder; prints its statistics and its "
                           "agreement with the kit's default space when that exists", "none: cluster the descriptions"))
    p.add_argument("--aliases", action="append", default=None, metavar="RELEASE=CLASS",
                   help=_h("with --release_partition: read the partition file's class spelling RELEASE as the "
                           "dataset's class CLASS, where no rule matches (the release's known spellings, e.g. "
                           "ADE20K 'storage tank', are matched already); repeatable", "none"))
    p.set_defaults(func=_run_properties)


def _aliases(items: list[str] | None) -> dict[str, str]:
    """``--aliases RELEASE=CLASS`` items as a mapping; an item without '=' is an error that names it."""
    out = {}
    for item in items or []:
        name, sep, ours = item.partition("=")
        if not sep or not name.strip() or not ours.strip():
            raise ValueError(f"--aliases {item!r}: expected RELEASE=CLASS, e.g. --aliases 'storage tank=tank'")
        out[name.strip()] = ours.strip()
    return out


def _run_properties(a: argparse.Namespace) -> int:
    from .properties import build_property_space
    from .properties.analysis import property_stats
    from .properties.collisions import report_lines, signature_report

    from .validation import validate

    validate("properties", vars(a))
    aliases = _aliases(a.aliases)
    if aliases and not a.release_partition:
        raise ValueError("--aliases applies to --release_partition (the partition file's class spellings)")
    if a.release_partition:  # the space the authors' partition file defines, instead of clustering
        from .release.partition import partition_command

        given = [f for f, on in (("--descriptor_file", a.descriptor_file), ("--descriptor_root", a.descriptor_root),
                                 ("--n_properties", a.n_properties is not None),
                                 ("--method", a.method != defaults.METHOD), ("--seed", a.seed != 0),
                                 ("--separate", a.separate), ("--unseen", a.unseen)) if on]
        if given or len(a.dataset) > 1:
            raise ValueError("--release_partition takes the properties from the file, for one --dataset: drop "
                             + ", ".join(given or ["the other datasets"]))
        _say_dataset(a.dataset[0])
        for line in partition_command(_here(a.release_partition), a.dataset[0], a.embedder, a.embedder_kind,
                                      out_root=a.out_root, release_export=a.release_export,
                                      aliases=aliases or None):
            print(line, flush=True)
        return 0
    if a.descriptor_file and len(a.dataset) > 1:
        raise ValueError("--descriptor_file applies to one dataset; pass a single --dataset")
    from .datasets import dataset_key

    for ds in a.dataset:   # every destination first: a refused one must not come after spaces were built
        paths.guard_kit_folder(ds, dataset_key(ds), a.out_root or (a.unseen or None), "properties")
    for ds in a.dataset:
        _say_dataset(ds)
        out_root = a.out_root or (str(paths.cache_root() / "spaces") if a.unseen else None)
        out = build_property_space(ds, descriptor_file=a.descriptor_file, embedder=a.embedder,
                                   embedder_kind=a.embedder_kind, n_properties=a.n_properties, method=a.method,
                                   seed=a.seed, repair=a.repair, separate=a.separate, out_root=out_root,
                                   descriptor_root=a.descriptor_root, unseen=a.unseen)
        s = property_stats(out.space)
        print(f"{out.space}\n  -> {out.path}\n  properties per class {s['properties per class (mean)']}, "
              f"colliding groups before/after: {len(out.space.notes['collisions_before'])}/"
              f"{len(out.space.notes['collisions_after'])}, near-collisions before/after: "
              f"{out.space.notes['near_before']}/{out.space.notes['near_after']}", flush=True)
        report = signature_report(out.space)
        for line in report_lines(report):
            print(f"  {line}")
        for line in collision_advice(report, ds, a.repair, a.separate):
            print(f"  {line}", flush=True)
        if a.release_export:
            print(f"  release layout -> {out.space.to_release(a.release_export)}")
    return 0


def collision_advice(report: dict, dataset: str, repaired: bool, separated: bool) -> list[str]:
    """What to do about a space's collisions, as commands: classes with identical signatures cannot be told apart
    by property supervision at all (each scores 0 IoU or takes the other's pixels); near-collisions are hard."""
    out = []
    if report["collisions"] and not repaired:
        out.append(f"-> {len(report['collisions'])} group(s) of classes share one signature and cannot be told apart: "
                   f"build the space again with `prolab properties --dataset {dataset} --repair` (the default; each "
                   "colliding class gains its nearest property) and train on the space it prints "
                   "(--property_space); the grid's `repair` axis measures what that buys")
    if report["near"] and not separated:
        out.append(f"-> {len(report['near'])} near-collision(s): `prolab properties --dataset {dataset} --separate` "
                   "pulls them apart (the grid's `separate` axis measures what that buys)")
    return out


def _space_warnings(cfg) -> list[str]:
    """Before training: a property space whose classes collide, and a resize that makes images smaller than the
    crop, are said once, with the fix (training goes on: both are legitimate to measure)."""
    from dataclasses import replace

    from .properties.collisions import signature_report
    from .segment.data import open_split
    from .segment.train import load_space_for

    out = []
    ds = open_split(cfg, "train")
    if len(ds):
        import numpy as np

        h, w = np.asarray(ds.load(0)[0]).shape[:2]
        f = min(max(cfg.scale) / max(w, h), min(cfg.scale) / min(w, h))
        if min(w, h) * f < cfg.crop_size:
            out.append(f"warning: --scale {cfg.scale[0]} {cfg.scale[1]} resizes {w}x{h} images to "
                       f"{round(w * f)}x{round(h * f)}, smaller than the {cfg.crop_size}-pixel crop (padded with "
                       f"ignore): raise --scale or lower --crop_size")
    if cfg.mode == "property":
        space, path = load_space_for(replace(cfg), list(ds.class_names))   # the space train will use
        report = signature_report(space)
        for g in report["collisions"]:
            out.append(f"warning: the property space {path.name} gives {' and '.join(g)} one signature: property "
                       "supervision cannot tell them apart")
        out += [f"  {line}" for line in collision_advice(report, str(cfg.dataset), False, True)]
    return out


def _add_train(sub: argparse._SubParsersAction) -> None:
    from dataclasses import fields

    from .segment.train import TrainConfig

    from .segment.config import HELP

    p = _parser(sub, "train", "stage 3: train a segmentation model (property or category supervision)")
    demo = {k: v for k, v in defaults.PRESETS["demo"].items()}
    p.add_argument("--preset", choices=list(defaults.PRESETS), default="demo",
                   help=_h("starting values of every flag below: demo trains the embedded default in about a minute "
                           "on a CPU (sets " + ", ".join(f"{k}={v}" for k, v in demo.items()) + "); paper: the "
                           "paper's ADE20K schedule. Flags you give override it; what it sets is printed at start",
                           "demo"))
    paper = TrainConfig()
    for f in fields(TrainConfig):  # one flag per config field, named like the notebook parameters
        fmt = lambda v: " ".join(map(str, v)) if isinstance(v, tuple) else "none" if v is None else str(v)  # noqa
        shown = fmt(getattr(paper, f.name))
        if f.name in demo and fmt(demo[f.name]) != shown:
            shown = f"{fmt(demo[f.name])} with the demo preset, {shown} with paper"
        text = _h(HELP[f.name], shown)
        if f.name == "scale":
            p.add_argument("--scale", type=int, nargs=2, default=None, metavar=("LONG", "SHORT"), help=text)
        elif f.type in ("bool", bool):
            p.add_argument(f"--{f.name}", type=lambda v: v.lower() in ("1", "true", "yes"), default=None,
                           metavar="BOOL", help=text)
        else:
            kind = {"int": int, "float": float}.get(str(f.type).removesuffix(" | None"), str)
            if str(f.type).endswith(" | None") and kind is not str:   # "none" = unset: the preset's or the default
                kind = (lambda base: lambda v: None if v.strip().lower() == "none" else base(v))(kind)
            p.add_argument(f"--{f.name}", type=kind, default=None, help=text)
    p.add_argument("--force", action="store_true",
                   help=_h("train again even if a finished run with identical inputs exists (it is moved aside)",
                           "off"))
    p.set_defaults(func=_run_train)


def _train_config(a: argparse.Namespace):
    from dataclasses import fields

    from .segment.train import TrainConfig

    # "--pretrained none" stays the string "none" here (None would mean "keep the preset's"); TrainConfig makes
    # it None, random initialisation
    given = {f.name: getattr(a, f.name) for f in fields(TrainConfig) if getattr(a, f.name, None) is not None}
    return TrainConfig.preset(a.preset, **given)


def _run_train(a: argparse.Namespace) -> int:
    from .segment import train

    cfg = _train_config(a)
    changes = cfg.preset_changes(a.preset)
    if changes:  # a preset is a starting point: say what it set
        print(f"preset {a.preset}: " + ", ".join(f"{k}={v}" for k, v in changes.items()
                                                  if getattr(a, k, None) is None), flush=True)
    if cfg.dataset != "custom" or cfg.property_space or cfg.mode != "property":
        for line in _space_warnings(cfg):
            print(line, flush=True)
    res = train(cfg, force=a.force)
    print(f"run {res.summary()}; weights {res.weights}")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "evaluate", "stage 3: evaluate a trained run (mIoU, mAcc, aAcc, per-class IoU)")
    p.add_argument("--run_name", required=True, help="the run to evaluate (its --run_name in `prolab train`)")
    p.add_argument("--split", default="val", help=_h("split to score (its folder comes from the dataset)", "val"))
    p.add_argument("--inference", default="whole", choices=["whole", "slide"],
                   help=_h("whole image at the run's --scale, or sliding crop_size windows", "whole"))
    p.add_argument("--limit", type=int, default=None, help=_h("evaluate only the first N images", "all"))
    p.add_argument("--allow_train_folder", action="store_true",
                   help=_h("score a split whose images are the training folder (measures fitting, not "
                           "generalisation)", "refused"))
    p.add_argument("--out_dir", default=None, help=_h("results folder; the run's files go to <out_dir>/<run_name>",
                                                      "results/eval"))
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(a: argparse.Namespace) -> int:
    from . import paths
    from .segment.report import evaluate_runs
    from .validation import validate

    validate("evaluate", vars(a))
    out_dir = paths.resolve(a.out_dir) if a.out_dir else paths.results_dir("eval")
    summary, _, _ = evaluate_runs([a.run_name], a.split, a.inference, a.limit, out_dir=out_dir,
                                  allow_train_folder=a.allow_train_folder)
    print(f"{summary.to_string()}\n-> {out_dir / paths.slug(a.run_name)}")
    return 0


def _add_doctor(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "doctor", "print versions, device and which offline models are installed")
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
    p = _parser(sub, "run", "run the notebook pipeline from a YAML config (papermill)")
    p.add_argument("--config", default="configs/demo.yaml",
                   help=_h("run config (relative to the repository root)", "configs/demo.yaml"))
    p.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                   help="set a parameter for every step that declares it (value read as YAML); repeatable")
    p.add_argument("-f", "--parameters_file", action="append", default=[], metavar="FILE",
                   help="YAML mapping of parameters, applied like -p (before the -p flags); repeatable")
    p.add_argument("--force", action="store_true",
                   help=_h("run every notebook even if its inputs are unchanged", "off"))
    p.set_defaults(func=_run_run)


def _run_run(a: argparse.Namespace) -> int:
    import time

    from .pipeline import parse_overrides, run_pipeline

    t0 = time.time()
    out = run_pipeline(a.config, force=a.force, overrides=parse_overrides(a.parameter, a.parameters_file))
    print(f"pipeline finished in {time.time() - t0:.0f} s; results in {out}")
    return 0


def _add_grid(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "grid", "run an ablation grid (YAML): every setting for every seed, then its tables")
    p.add_argument("--config", default="configs/grid_demo.yaml", help=_h("grid YAML", "configs/grid_demo.yaml"))
    p.add_argument("--dataset", default=None,
                   help=_h(DATASET_HELP.replace(" or a class-list file (.txt/.json)", "") + "; results go to "
                           "results/<grid name>_<dataset name>/", "the grid YAML's dataset"))
    p.add_argument("--splits", nargs="+", default=None, metavar="SPLIT",
                   help=_h("the splits every run is scored on (the first fills mIoU and the tables; e.g. --splits "
                           "val test)", "the grid YAML's splits, else val"))
    p.add_argument("--check", action="store_true", help=_h("only validate the config and list the runs", "off"))
    p.add_argument("--shard", default=None,
                   help=_h("I/N: run every N-th run from the I-th, so N processes (cores or machines sharing the "
                           "results folder) split one grid; rows merge under a file lock", "all runs"))
    p.set_defaults(func=_run_grid)


def _run_grid(a: argparse.Namespace) -> int:
    from .pipeline.grid import base_descriptions, grid_dir, load_grid, parse_shard, run_grid
    from .pipeline.tables import write_tables

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

    from .pipeline.gridrows import set_aside_stale_rows

    out = grid_dir(cfg)
    if out.is_dir():
        with FileLock(str(out / ".write.lock")):   # the lock run_grid and the other shards write under
            moved = set_aside_stale_rows(out, {c["cell"] for c in cells})
        if moved:
            print(f"{moved} rows of settings this grid no longer makes moved to {out / 'runs.stale.csv'}")
    runs = run_grid(cfg, shard=shard)
    from .datasets import dataset_key

    tables = write_tables(runs, grid_dir(cfg), base_descriptions(cfg), dataset_key(cfg.dataset), cfg.train,
                          cfg.splits[0])
    print(f"tables -> {tables}")
    # per-class IoU once every cell has its row from the current code (a shard that ends first leaves it to the
    # last one: rows of older code may still be there while another shard retrains them)
    from .identity import GRID_CODE, code_hash
    from .pipeline.grid import row_is_current

    code = code_hash(*GRID_CODE)
    current = {r["cell"] for r in runs.to_dict("records") if row_is_current(r, code, cfg.splits)}
    pc, rows = grid_dir(cfg) / "per_class.csv", grid_dir(cfg) / "runs.csv"
    if {c["cell"] for c in cells} <= current and \
            (not pc.is_file() or pc.stat().st_mtime < rows.stat().st_mtime):
        from .pipeline.tables import write_class_iou

        print(f"per-class IoU -> {write_class_iou(cfg.name)}")
    return 0


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "verify", "re-run what made a results folder, from an empty cache, and compare every metric "
                               "it holds with the committed one (exit status 1 on a difference)")
    p.add_argument("results_dir", nargs="?", default="results/demo",
                   help=_h("a `prolab run` folder (config.json), a grid folder (grid.json + runs.csv) or "
                           "results/label_sets", "results/demo"))
    p.add_argument("--tolerance", type=float, default=0.0,
                   help=_h("largest absolute difference accepted per value", "0: the CPU computation is "
                           "deterministic"))
    p.add_argument("--against", default=None, metavar="DIR",
                   help=_h("compare with this existing results folder of the same kind instead of re-running",
                           "re-run"))
    p.add_argument("--keep", default=None, metavar="DIR",
                   help=_h("re-run in this new or empty folder (checkout copy, cache, results) and keep it",
                           "a temporary folder, removed"))
    p.add_argument("--all", action="store_true", help=_h("print every compared value, not only the summary "
                                                          "metrics and the differences", "off"))
    p.add_argument("--restamp", action="store_true",
                   help=_h("grid folders: re-run --cells sample cells with the current code and, only if every "
                           "value is identical, re-stamp the rows' code hash (proof in restamps.json)", "off"))
    p.add_argument("--cells", type=int, default=1, help=_h("with --restamp: how many cells to re-run", "1"))
    p.add_argument("--grid_config", default=None,
                   help=_h("with --restamp: the grid YAML that made the folder (needed for a grid on a dataset "
                           "YAML)", "the config grid.json records"))
    p.add_argument("--dataset", default=None, help=_h("with --restamp --grid_config: the grid's --dataset", "none"))
    p.set_defaults(func=_run_verify)


def _run_verify(a: argparse.Namespace) -> int:
    from .pipeline.verify import verify

    if a.restamp:
        from .pipeline.restamp import restamp

        return restamp(_here(a.results_dir), a.cells, keep=_here(a.keep), grid_file=_here(a.grid_config),
                       dataset=_here(a.dataset) if a.dataset and a.dataset.endswith((".yaml", ".yml")) else a.dataset)
    if a.cells != 1 or a.grid_config or a.dataset:
        raise ValueError("--cells, --grid_config and --dataset apply with --restamp only")
    return verify(_here(a.results_dir), tolerance=a.tolerance, against=_here(a.against),
                  keep=_here(a.keep), show_all=a.all)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"prolab {version('prolab')}"
    except PackageNotFoundError:
        return "prolab (not installed)"


EXPECTED_ERRORS = (FileNotFoundError, ValueError, KeyError, LookupError, RuntimeError, OSError, ImportError)


def entry_point(func, prog: str, *args) -> int:
    """Run the ``main`` of a ``python -m prolab.<module>`` tool as ``prolab`` runs its commands: an expected
    error (bad input, a missing file, a busy folder) is one line on stderr and exit status 2, not a traceback."""
    from .redact import redact

    try:
        return func(*args) or 0
    except EXPECTED_ERRORS as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"{prog}: error: {redact(msg)}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    """The ``prolab`` parser with every subcommand (also what the docs' CLI reference is generated from)."""
    parser = argparse.ArgumentParser(prog="prolab", description=__doc__)
    parser.add_argument("--version", action="version", version=_version(), help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_describe, _add_properties, _add_train, _add_evaluate, _add_doctor, _add_run, _add_grid,
                _add_verify):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in PATH_FLAGS:
        if isinstance(getattr(args, name, None), str):
            setattr(args, name, _here(getattr(args, name)))
    if getattr(args, "parameters_file", None):
        args.parameters_file = [_here(f) for f in args.parameters_file]
    try:
        return args.func(args)
    except EXPECTED_ERRORS as e:
        from .redact import redact

        msg = e.args[0] if isinstance(e, KeyError) and e.args else e  # KeyError's str() adds quotes
        print(f"prolab {args.command}: error: {redact(msg)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
