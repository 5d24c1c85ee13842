"""``prolab wovss train`` and ``prolab wovss evaluate`` (PGSeg's stage, ``prolab.wovss``; one flag per field of
``WovssConfig``, the names the notebook's parameters use), and ``prolab wovss zero_shot`` (a released checkpoint
on a zero-shot benchmark)."""
from __future__ import annotations

import argparse
import types
import typing

from .common import help_text, subparser
from .train import flag_bool

HELP = {
    "preset": "the network: cpu (ImageNet MobileNetV2 tokens -> GroupViT's grouping stages, 16 then 4 groups, "
              "trained on the embedded default in minutes)",
    "image_size": "input size in pixels (a multiple of 16: the token grid is image_size / 16 on a side)",
    "iters": "training iterations",
    "batch_size": "images per iteration (the contrastive batch: at least 2)",
    "lr": "peak learning rate (one-cycle schedule)",
    "weight_decay": "AdamW weight decay",
    "seed": "seed of the initialisation, the batches, the flips, the Gumbel noise and the EM starts",
    "min_share": "a class is named in an image's caption when it covers at least this share of the image",
    "npr": "train with PGSeg's prototype guidance L_PG (false: contrastive loss only)",
    "npr_weight": "weight of each grouping stage's L_PG (the paper's 0.1)",
    "guidance": "weight of the kit's assignment guidance: each token's assignment pulled towards the EM "
                "responsibility of its group's matched prototype (0: off, PGSeg's losses only)",
    "balance": "weight of the kit's anti-collapse term (0: off, as in the paper)",
    "group_naming": "weight of the kit's per-group naming term (0: off, as in the paper)",
    "gumbel": "Gumbel noise on the training assignment, as in the paper (false: a plain straight-through argmax)",
    "positions": "learned position embeddings on the tokens",
    "freeze_backbone": "keep the ImageNet backbone fixed (its features are computed once; training is faster)",
    "phi": "L_PG's hard-rejection threshold (the paper's 0.1)",
    "released_code": "the official code's departures from the paper: Hungarian matching minimising, rejection on "
                     "column 0, an MLP of the EM reconstruction added to the grouping blocks' input tokens (its "
                     "image-side EMA never runs; the CPU training uses no EMA in either setting)",
    "pretrained": "the backbone's ImageNet weights (offline: the packaged ones; none: random)",
    "text_embedder": "the frozen sentence embedder of the captions (a packaged one works offline)",
}


def add_wovss(sub: argparse._SubParsersAction) -> None:
    from dataclasses import fields

    from ..wovss.model import PRESETS
    from ..wovss.train import WovssConfig

    p = subparser(sub, "wovss", "PGSeg's stage: segmentation learned from image-caption pairs (train, evaluate)")
    wsub = p.add_subparsers(dest="wovss_command", required=True, metavar="{train,evaluate,zero_shot}",
                            help="train: a run on the embedded default; evaluate: score a finished run; zero_shot: "
                                 "a released checkpoint on VOC / Pascal Context / COCO-Object")
    t = subparser(wsub, "train", "train the wovss model on captions built from the embedded default's image labels")
    default = WovssConfig()
    hints = typing.get_type_hints(WovssConfig)
    for f in fields(WovssConfig):
        text = help_text(HELP[f.name], "none" if getattr(default, f.name) is None else getattr(default, f.name))
        hint = hints[f.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        kind = next(a for a in typing.get_args(hint) if a is not type(None)) if union else hint
        if f.name == "preset":
            t.add_argument("--preset", choices=[k for k in PRESETS if k == "cpu"], default=None, help=text)
        elif kind is bool:
            t.add_argument(f"--{f.name}", type=flag_bool, default=None, metavar="BOOL", help=text)
        elif kind in (int, float):
            t.add_argument(f"--{f.name}", type=kind, default=None, help=text)
        else:
            t.add_argument(f"--{f.name}", type=str, default=None, help=text)
    t.add_argument("--run_name", default=None,
                   help=help_text("the run's folder under $PROLAB_CACHE/wovss", "<setting>-i<iters>-s<seed>"))
    t.add_argument("--force", action="store_true", help=help_text("train again over a finished run of that name", "off"))
    t.set_defaults(func=run_wovss_train)
    e = subparser(wsub, "evaluate", "score a trained wovss run on the embedded default's val split: oracle-named and "
                                    "zero-shot named mIoU, unseen-class IoU, the trivial grids beside them")
    e.add_argument("--run_name", required=True, help="the run to evaluate (its --run_name in `prolab wovss train`)")
    e.add_argument("--limit", type=int, default=None, help=help_text("evaluate only the first N images", "all"))
    e.add_argument("--descriptor_file", default=None,
                   help=help_text("name the groups against each class's ProLab descriptions from this descriptor "
                                  "file instead of its name (the result goes to <run_name>-descriptions.json)",
                                  "the class names"))
    e.add_argument("--out_dir", default=None, help=help_text("where <run_name>.json is written", "results/wovss"))
    e.set_defaults(func=run_wovss_evaluate)
    z = subparser(wsub, "zero_shot", "a released GroupViT / PGSeg checkpoint (or a hub folder) on a zero-shot benchmark "
                                     "with GroupViT's and PGSeg's protocol (448/224 windows, top-5 naming, background "
                                     "threshold): mIoU with the kit's metrics")
    from ..wovss.benchmarks import BENCHMARKS

    z.add_argument("--checkpoint", required=True, help="the weights: GroupViT's or PGSeg's .pth, or a transformers "
                                                       "model.safetensors (prolab.wovss.checkpoints reads all three)")
    z.add_argument("--benchmark", required=True, choices=list(BENCHMARKS), help="which benchmark (its layout: "
                                                                                  "docs/stages/wovss.md)")
    z.add_argument("--data_root", required=True, help="the benchmark's folder (e.g. data/VOCdevkit/VOC2012)")
    z.add_argument("--split", default="val", help=help_text("the split (its file list or folder)", "val"))
    z.add_argument("--tokenizer", default="openai/clip-vit-base-patch32",
                   help=help_text("CLIP's tokenizer: a hub id (needs the network once) or a folder with vocab.json "
                                  "and merges.txt", "openai/clip-vit-base-patch32"))
    z.add_argument("--preset", default="paper", choices=list(PRESETS),
                   help=help_text("the network the checkpoint fits (paper: GroupViT-S)", "paper"))
    z.add_argument("--background", type=float, default=None,
                   help=help_text("the background threshold", "PGSeg's for the benchmark: voc 0.95, pascal_context "
                                  "0.36, coco_object 0.85"))
    z.add_argument("--limit", type=int, default=None, help=help_text("evaluate only the first N images", "all"))
    z.add_argument("--device", default="cpu", help=help_text("torch device (cuda on a GPU)", "cpu"))
    z.add_argument("--out_dir", default=None, help=help_text("where <benchmark>-<checkpoint>.json is written",
                                                             "results/wovss/zero_shot"))
    z.set_defaults(func=run_wovss_zero_shot)


def wovss_config(a: argparse.Namespace):
    from dataclasses import fields

    from ..wovss.train import WovssConfig

    given = {f.name: getattr(a, f.name) for f in fields(WovssConfig) if getattr(a, f.name, None) is not None}
    if str(given.get("pretrained", "")).lower() == "none":
        given["pretrained"] = None
    return WovssConfig(**given)


def run_wovss_train(a: argparse.Namespace) -> int:
    from .. import paths
    from ..wovss.runs import ensure_run, run_setting

    cfg = wovss_config(a)
    name = a.run_name or run_setting(cfg)
    _, log, trained = ensure_run(cfg, name, force=a.force)
    folder = paths.wovss_run_dir(name)
    if not trained:
        print(f"run {name} is finished in {folder} with these settings (--force trains it again); evaluate it "
              f"with `prolab wovss evaluate --run_name {name}`")
        return 0
    what = (f"loss {log[0]['loss']:.3f} -> {log[-1]['loss']:.3f} in {log[-1]['seconds']:.0f} s" if log
            else "no iteration (the untrained model)")
    print(f"run {name}: {what}; weights in {folder}")
    return 0


def run_wovss_evaluate(a: argparse.Namespace) -> int:
    import json

    from .. import paths
    from ..files import atomic_write_json, environment_info, folder_lock
    from ..wovss.runs import load_run
    from ..wovss.train import evaluate_wovss

    if a.limit is not None and a.limit < 1:
        raise ValueError(f"--limit {a.limit}: at least 1 image")
    folder = paths.wovss_run_dir(a.run_name)
    with folder_lock(folder, "wovss run"):                    # not while a training writes or replaces it
        model, cfg, log = load_run(folder)
    res = evaluate_wovss(model, cfg, limit=a.limit, descriptor_file=a.descriptor_file)
    res.update(run_name=a.run_name, first=log[0] if log else None, last=log[-1] if log else None,
               limit=a.limit, environment=environment_info())
    out_dir = paths.resolve(a.out_dir) if a.out_dir else paths.results_dir("wovss")
    out = out_dir / f"{paths.slug(a.run_name, 'run_name')}{'-descriptions' if a.descriptor_file else ''}.json"
    with folder_lock(out_dir, "wovss results folder"):
        atomic_write_json(out, res)
    print(json.dumps({k: res[k] for k in ("oracle final", "oracle stage 1", "named", "trivial grid")}, indent=1))
    print(f"-> {out}")
    return 0


def run_wovss_zero_shot(a: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .. import paths
    from ..files import atomic_write_json, environment_info, folder_lock
    from ..wovss.benchmarks import evaluate_benchmark
    from ..wovss.checkpoints import load_groupvit

    if a.limit is not None and a.limit < 1:
        raise ValueError(f"--limit {a.limit}: at least 1 image")
    model, conv = load_groupvit(a.checkpoint, preset=a.preset)
    try:
        from transformers import CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(a.tokenizer)
    except OSError as e:
        raise OSError(f"--tokenizer {a.tokenizer}: not loadable ({e.__class__.__name__}); offline, give a folder "
                      "holding CLIP's vocab.json and merges.txt") from None
    res = evaluate_benchmark(model.to(a.device), tokenizer, a.benchmark, a.data_root, a.split, a.limit, a.background)
    res.update(checkpoint=str(a.checkpoint), layout=conv.layout, extra_keys=sorted(conv.extra), preset=a.preset,
               tokenizer=a.tokenizer, environment=environment_info())
    out_dir = paths.resolve(a.out_dir) if a.out_dir else paths.results_dir("wovss") / "zero_shot"
    name = f"{a.benchmark}-{paths.slug(Path(a.checkpoint).stem, 'checkpoint')}.json"
    with folder_lock(out_dir, "zero-shot results folder"):
        atomic_write_json(out_dir / name, res)
    print(json.dumps({k: res[k] for k in ("benchmark", "images", "background", "mIoU")}))
    print(f"-> {out_dir / name}")
    return 0
