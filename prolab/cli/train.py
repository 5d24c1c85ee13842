"""``prolab train`` and ``prolab evaluate``: stage 3, with the warnings said before the first iteration."""
from __future__ import annotations

import argparse
import types
import typing

from .. import defaults
from .common import help_text, subparser
from .properties import collision_advice


def flag_bool(value: str) -> bool:
    """A boolean flag's value: true/false, yes/no, 1/0 (any case); anything else is an error, not False."""
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r}: expected true or false")


def space_warnings(cfg) -> list[str]:
    """Before training: a property space whose classes collide, and a resize that makes images smaller than the
    crop, are said once, with the fix (training goes on: both are legitimate to measure)."""
    from dataclasses import replace

    from ..properties.collisions import signature_report
    from ..train.data import open_split
    from ..train.build import load_space_for

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


def add_train(sub: argparse._SubParsersAction) -> None:
    from dataclasses import fields

    from ..train.config import HELP, TrainConfig

    p = subparser(sub, "train", "stage 3: train a segmentation model (property or category supervision)")
    demo = {k: v for k, v in defaults.PRESETS["demo"].items()}
    p.add_argument("--preset", choices=list(defaults.PRESETS), default="demo",
                   help=help_text("starting values of every flag below: demo trains the embedded default in about a minute "
                           "on a CPU (sets " + ", ".join(f"{k}={v}" for k, v in demo.items()) + "); paper: the "
                           "paper's ADE20K schedule. Flags you give override it; what it sets is printed at start",
                           "demo"))
    paper = TrainConfig()
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):  # one flag per config field, named like the notebook parameters
        fmt = lambda v: " ".join(map(str, v)) if isinstance(v, tuple) else "none" if v is None else str(v)  # noqa
        shown = fmt(getattr(paper, f.name))
        if f.name in demo and fmt(demo[f.name]) != shown:
            shown = f"{fmt(demo[f.name])} with the demo preset, {shown} with paper"
        text = help_text(HELP[f.name], shown)
        hint = hints[f.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        optional = union and type(None) in typing.get_args(hint)
        kind = next(t for t in typing.get_args(hint) if t is not type(None)) if union else hint
        if typing.get_origin(kind) is tuple:       # scale: two integers
            p.add_argument(f"--{f.name}", type=int, nargs=2, default=None, metavar=("LONG", "SHORT"), help=text)
        elif kind is bool:
            p.add_argument(f"--{f.name}", type=flag_bool, default=None, metavar="BOOL", help=text)
        elif kind in (int, float):
            if optional:   # "none" = unset: the preset's or the default
                kind = (lambda base: lambda v: None if v.strip().lower() == "none" else base(v))(kind)
            p.add_argument(f"--{f.name}", type=kind, default=None, help=text)
        else:
            p.add_argument(f"--{f.name}", type=str, default=None, help=text)
    p.add_argument("--force", action="store_true",
                   help=help_text("train again even if a finished run with identical inputs exists (it is moved aside)",
                           "off"))
    p.set_defaults(func=run_train)


def train_config(a: argparse.Namespace):
    from dataclasses import fields

    from ..train.config import TrainConfig

    # "--pretrained none" stays the string "none" here (None would mean "keep the preset's"); TrainConfig makes
    # it None, random initialisation
    given = {f.name: getattr(a, f.name) for f in fields(TrainConfig) if getattr(a, f.name, None) is not None}
    return TrainConfig.preset(a.preset, **given)


def run_train(a: argparse.Namespace) -> int:
    from ..train import train

    cfg = train_config(a)
    changes = cfg.preset_changes(a.preset)
    if changes:  # a preset is a starting point: say what it set
        print(f"preset {a.preset}: " + ", ".join(f"{k}={v}" for k, v in changes.items()
                                                  if getattr(a, k, None) is None), flush=True)
    if cfg.dataset != "custom" or cfg.property_space or cfg.mode != "property":
        for line in space_warnings(cfg):
            print(line, flush=True)
    res = train(cfg, force=a.force)
    print(f"run {res.summary()}; weights {res.weights}")
    return 0


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = subparser(sub, "evaluate", "stage 3: evaluate a trained run (mIoU, mAcc, aAcc, per-class IoU)")
    p.add_argument("--run_name", required=True, help="the run to evaluate (its --run_name in `prolab train`)")
    p.add_argument("--split", default="val", help=help_text("split to score (its folder comes from the dataset)", "val"))
    p.add_argument("--inference", default="whole", choices=["whole", "slide"],
                   help=help_text("whole image at the run's --scale, or sliding crop_size windows", "whole"))
    p.add_argument("--limit", type=int, default=None, help=help_text("evaluate only the first N images", "all"))
    p.add_argument("--allow_train_folder", action="store_true",
                   help=help_text("score a split whose images are the training folder (measures fitting, not "
                           "generalisation)", "refused"))
    p.add_argument("--out_dir", default=None, help=help_text("results folder; the run's files go to <out_dir>/<run_name>",
                                                      "results/eval"))
    p.set_defaults(func=run_evaluate)


def run_evaluate(a: argparse.Namespace) -> int:
    from .. import paths
    from ..evaluate.score import evaluate_runs
    from ..validation import validate

    validate("evaluate", vars(a))
    out_dir = paths.resolve(a.out_dir) if a.out_dir else paths.results_dir("eval")
    summary, _, _ = evaluate_runs([a.run_name], a.split, a.inference, a.limit, out_dir=out_dir,
                                  allow_train_folder=a.allow_train_folder)
    print(f"{summary.to_string()}\n-> {out_dir / paths.slug(a.run_name)}")
    return 0


