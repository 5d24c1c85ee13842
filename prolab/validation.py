"""One validation layer for every value a user gives: CLI flags, notebook parameters, grid values, config fields.

Each value is checked by name against a ``Rule`` of its stage (``describe``, ``properties``, ``train``,
``evaluate``); the same rules serve ``prolab <stage> --flag``, a run config's notebook parameters and a grid's
axis values, so a bad value is refused before anything runs, with the same words everywhere. Checks that need
the data (K against the number of descriptions) live beside the data and use ``fail``.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from . import defaults
from .checks import Rule, ValidationError, check, fail, unknown_names  # noqa: F401  (the rules' API, re-exported)


# --- the rules, by stage ---------------------------------------------------------------------------------------

def _path_like(value: Any) -> str | None:
    return None if isinstance(value, (str, os.PathLike)) and str(value).strip() else "a path (a non-empty string)"


_PATHLIKE = Rule(object, nullable=True, accept=_path_like)            # a file or folder, or None (the default)
_PATHLIKE_REQUIRED = Rule(object, accept=_path_like)
_SUFFIX = Rule(str, pattern=r"[^/\\]*\.[A-Za-z0-9]+", pattern_help="a file ending with an extension, e.g. '.jpg' or "
               "'_label.png'")

# numpy's and torch's generators take seeds below 2**32 (larger ones fail deep inside them, "Overflow when
# unpacking long long", naming no flag)
SEED_MAX = 2**32 - 1
_SEED = Rule(int, min=0, max=SEED_MAX)
LOSSES = defaults.PROPERTY_LOSSES
METHODS = defaults.METHODS

RULES: dict[str, dict[str, Rule]] = {
    "describe": {
        "max_attempts": Rule(int, min=1, max=20),
        "concurrency": Rule(int, min=1, max=256),
        "llm_temperature": Rule(float, min=0, max=2),      # the LLM's sampling temperature (not the sigmoid T)
        "max_tokens": Rule(int, min=16, max=4096),          # 6-15 short lines need ~200; caps runaway replies
        "repeat_penalty": Rule(float, min=0, above=True, max=3),
        "seed": _SEED,
        "backend": Rule(str, choices=defaults.BACKENDS),
        "prompt": Rule(str),
    },
    "properties": {
        "n_properties": Rule(int, min=1, nullable=True),
        "method": Rule(str, choices=METHODS),
        "embedder_kind": Rule(str, choices=defaults.EMBEDDER_KINDS),
        "seed": _SEED,
        "embedder": Rule(str),
        "ks": Rule(list, item=int, min=1, min_length=1),
        "repair": Rule(bool),
        "separate": Rule(bool),
    },
    "train": {
        "run_name": Rule(str),
        "mode": Rule(str, choices=defaults.MODES),
        "loss": Rule(str, choices=LOSSES),
        "temperature": Rule(float, min=0, above=True, max=10),  # T of sigmoid(z / T)
        "iters": Rule(int, min=1),
        "batch_size": Rule(int, min=1),
        "crop_size": Rule(int, min=8),
        "scale": Rule(list, length=2, item=int, min=8),
        "channels": Rule(int, min=1),
        "aux_weight": Rule(float, min=0, nullable=True),
        "head_init": Rule(str, choices=defaults.HEAD_INITS),
        "normalize_bank": Rule(bool),
        "normalize": Rule(bool),
        "lr": Rule(float, min=0, above=True, max=10),
        "weight_decay": Rule(float, min=0),
        "layer_decay": Rule(float, min=0, above=True, max=1),
        "warmup_iters": Rule(int, min=0),
        "poly_power": Rule(float, min=0),
        "onehot_warmup_iters": Rule(int, min=0),
        "name_embedder": Rule(str),
        "ignore_index": Rule(int, min=0, max=255),
        "seed": _SEED,
        "num_workers": Rule(int, min=0, max=64),
        "checkpoint_interval": Rule(int, min=1),
        "log_interval": Rule(int, min=1),
        "device": Rule(str, pattern=r"auto|cpu|mps|cuda(:\d+)?", pattern_help="auto, cpu, mps, cuda or cuda:N"),
        "preset": Rule(str, choices=tuple(defaults.PRESETS)),
        # the rest of TrainConfig: every field has a rule (a test checks it), so "false" for a flag is an error,
        # never a truthy string; `dataset` and `unseen` get only a type check here, TrainConfig checks their values
        "amp": Rule(bool),
        "resume": Rule(bool),
        "backbone": Rule(str),
        "pretrained": Rule(str, nullable=True),
        "img_suffix": _SUFFIX,
        "seg_map_suffix": _SUFFIX,
        **{k: _PATHLIKE for k in ("data_root", "img_dir", "ann_dir", "classes", "property_space")},
        "dataset": _PATHLIKE_REQUIRED,
        "unseen": Rule(object, accept=lambda v: None if isinstance(v, (str, list, tuple)) else
                       "class names, comma-separated (bus,boat) or a list"),
    },
    "evaluate": {
        "split": Rule(str),
        "inference": Rule(str, choices=("whole", "slide")),
        "limit": Rule(int, min=1, nullable=True),
        "n_show": Rule(int, min=0, max=64),
    },
}


# --- checks of values that name something: a dataset, a file, a backbone, a prompt ----------------------------

def _one_line(e: BaseException) -> str:
    return (str(e.args[0] if isinstance(e, KeyError) and e.args else e).strip().splitlines() or [""])[0]


def _resolve(value: str) -> Path:
    """A path parameter as the notebooks and the CLI read it: ``~`` and ``$VARS`` expanded, relative to the
    repository root."""
    from . import paths

    p = Path(os.path.expandvars(value)).expanduser()
    return p if p.is_absolute() else paths.resolve(p)


def _dataset_check(class_lists: bool) -> Callable[[Any], str | None]:
    """A dataset parameter: a registered dataset, an existing dataset YAML (read and checked now), or, where the
    notebook takes one (``class_lists``), an existing class-list file (.txt/.json)."""
    def accept(value: str) -> str | None:
        from .datasets import DATASETS
        from .datasets.spec import is_spec_path, load_spec

        names = ", ".join(DATASETS)
        if value in DATASETS:
            return None
        if is_spec_path(value):
            f = _resolve(value)
            if not f.is_file():
                return f"a registered dataset ({names}) or an existing dataset YAML file: there is no file {f}"
            try:
                load_spec(f)
            except (ValueError, KeyError, OSError) as e:
                return f"a valid dataset YAML file ({_one_line(e)})"
            return None
        suffix = Path(value).suffix.lower()
        if class_lists and suffix in (".txt", ".json", ""):
            f = _resolve(value)
            if f.is_file():
                return None
            if suffix:
                return f"a registered dataset ({names}) or an existing class-list file: there is no file {f}"
        close = difflib.get_close_matches(value, list(DATASETS), n=1)
        return (f"a registered dataset ({names}), a dataset YAML file (.yaml)"
                + (" or a class-list file (.txt/.json)" if class_lists else "")
                + (f" (did you mean {close[0]!r}?)" if close else ""))
    return accept


def _existing(kind: str, what: str) -> Callable[[Any], str | None]:
    """A path parameter that a notebook reads: the file or folder must be there before the run starts (a file
    an earlier step makes is named with ``${NN_notebook.output}``, which is checked when it is filled in)."""
    def accept(value: str) -> str | None:
        f = _resolve(value)
        if f.is_dir() if kind == "folder" else f.is_file():
            return None
        return f"{what}; there is no {kind} {f}"
    return accept


# backbones the kit builds itself (``prolab.segment.backbones.create_backbone``); any other name must be a timm model
KIT_BACKBONES = ("vit_adapter_base",)


def _backbone(value: str) -> str | None:
    if value in KIT_BACKBONES:
        return None
    try:
        import timm
    except ImportError:   # cannot be checked here: the training refuses it
        return None
    if timm.is_model(value):
        return None
    close = timm.list_models(f"*{value.split('.')[0][:6]}*")[:5]
    return (f"{' or '.join(KIT_BACKBONES)} or a timm model name" +
            (f" (timm has e.g. {', '.join(close)})" if close else ""))


def _pretrained(value: str) -> str | None:
    if value.strip().lower() in ("offline", "hub", "none") or _resolve(value).is_file():
        return None
    return "offline (the packaged ImageNet weights), hub, none or an existing weights file"


def _prompt_missing(name: str) -> bool:
    from . import paths

    if Path(name).suffix.lower() in (".yaml", ".yml"):
        return not (_resolve(name).is_file() or Path(name).expanduser().is_file())
    try:
        return not paths.prompt_path(name).is_file()
    except ValueError:   # a name that cannot be a file name
        return True


def _prompts_help() -> str:
    from . import paths

    known = sorted(f.stem for f in paths.prompts_dir().glob("*.yaml"))
    return f"a prompt in descriptors/prompts/ ({', '.join(known)}) or a prompt YAML file"


def _prompt(value: str) -> str | None:
    return _prompts_help() if _prompt_missing(value) else None


def _prompts(value: list) -> str | None:
    missing = [v for v in value if _prompt_missing(v)]
    return f"a list of prompts, each {_prompts_help()} (not found: {', '.join(map(repr, missing))})" if missing \
        else None


# --- the rules of every notebook parameter -----------------------------------------------------------------------
# Every parameter of every notebook's ``parameters`` cell has a rule here (a test walks the notebooks), so a run
# config, ``prolab run -p`` and ``-f`` are checked before anything runs, naming the notebook and the parameter.

def _opt(rule: Rule) -> Rule:
    """The rule for a notebook parameter whose default is None (None: the notebook's or the preset's value)."""
    return replace(rule, nullable=True)


def _stage(stage: str, *names: str, optional: tuple[str, ...] = ()) -> dict[str, Rule]:
    return {**{n: RULES[stage][n] for n in names}, **{n: _opt(RULES[stage][n]) for n in optional}}


_PATH = Rule(str, nullable=True)                                     # a folder or file a notebook writes
_URL = Rule(str, nullable=True, pattern=r"https?://\S+", pattern_help="an http:// or https:// URL (or None)")
_ENV = Rule(str, nullable=True, pattern=r"[A-Za-z_][A-Za-z0-9_]*", pattern_help="an environment variable name "
                                                                               "(or None)")
_LLM = Rule(str, nullable=True)
_RUN_NAMES = Rule(list, item=str, min_length=1)
_TOY_CLASSES = ("sky", "grass", "road", "water", "car")              # notebook 00's toy scene
_TOY_SENTENCES = 15                                                 # its 5 classes x 3 descriptions

NOTEBOOK_RULES: dict[str, dict[str, Rule]] = {
    "00_prolab_in_60_lines": {
        "n_properties": Rule(int, min=1, max=_TOY_SENTENCES),       # K-Means needs a description per cluster
        "temperature": RULES["train"]["temperature"],
        "head_init": RULES["train"]["head_init"],
        "noise": Rule(float, min=0, max=100),
        "feature_dim": Rule(int, min=1, max=4096),
        "iters": Rule(int, min=0, max=100_000),                     # 0: the untrained baseline
        "lr": RULES["train"]["lr"],
        "held_out": Rule(str, choices=_TOY_CLASSES, nullable=True),
        "seed": _SEED,
    },
    "01_prompt_design": {
        "classes": Rule(list, item=str, min_length=1),
        "prompts": Rule(list, item=str, min_length=1, accept=_prompts),
        "backend": RULES["describe"]["backend"],
        "llm": _LLM,
        "base_url": _URL,
        "api_key_env": _ENV,
        "cache_path": _PATH,
    },
    "02_llm_retrieval": {
        "dataset": Rule(str, accept=_dataset_check(class_lists=True)),
        **_stage("describe", "backend", "concurrency", "max_attempts", "llm_temperature", "max_tokens",
                 "repeat_penalty", "seed"),
        "prompt": replace(RULES["describe"]["prompt"], accept=_prompt),
        "llm": _LLM,
        "prompt_names": Rule(bool, nullable=True),
        "min_pooled": Rule(int, min=0, max=15),                     # up to the parser's 15 descriptions per class
        "max_samples": Rule(int, min=1, max=50),
        "pool_embedder": Rule(str, nullable=True),
        "base_url": _URL,
        "api_key_env": _ENV,
        "out_root": _PATH,
        "cache_path": _PATH,
    },
    "03_embedding_clustering": {
        "dataset": Rule(str, accept=_dataset_check(class_lists=True)),
        "descriptor_file": Rule(str, nullable=True, accept=_existing("file", "an existing descriptor file")),
        **_stage("properties", "embedder", "embedder_kind", "n_properties", "method", "seed", "repair", "separate"),
        "projection": Rule(str, choices=("pca", "tsne")),
        "n_labels": Rule(int, min=0, max=10_000),
        "out_root": _PATH,
    },
    "04_property_space": {
        "dataset": Rule(str, accept=_dataset_check(class_lists=True)),
        "descriptor_file": Rule(str, nullable=True, accept=_existing("file", "an existing descriptor file")),
        **_stage("properties", "embedder", "embedder_kind", "n_properties", "method", "seed", "ks"),
        "compare_embedder": Rule(str, nullable=True),
        "compare_descriptor_file": Rule(str, nullable=True, accept=_existing("file", "an existing descriptor file")),
        "near_cos_threshold": Rule(float, min=0, max=1),
        "release_partition": Rule(str, nullable=True,
                                  accept=_existing("file", "an existing release partition (property_<dataset>.json)")),
    },
    "05_train_segmentation": {
        "preset": RULES["train"]["preset"],
        "dataset": Rule(str, accept=_dataset_check(class_lists=False)),
        "data_root": _PATH,                                         # may be on the GPU machine only: read at training
        "property_space": Rule(str, nullable=True,
                               accept=_existing("file", "an existing property space (.safetensors)")),
        "run_prefix": Rule(str, pattern=r"[A-Za-z0-9][A-Za-z0-9._+-]*",
                           pattern_help="a run name: letters, digits, '.', '_', '+' or '-'"),
        **_stage("train", "loss", "seed", optional=("iters", "batch_size", "crop_size", "channels", "lr",
                                                    "temperature", "normalize", "head_init", "onehot_warmup_iters",
                                                    "layer_decay")),
        "backbone": Rule(str, nullable=True, accept=_backbone),
        "pretrained": Rule(str, nullable=True, accept=_pretrained),
        "force": Rule(bool),
        "mmseg_iters": Rule(int, min=0),
    },
    "06_evaluate": {
        "run_names": _RUN_NAMES,
        **_stage("evaluate", "split", "inference", "limit", "n_show"),
        "out_dir": _PATH,
    },
    "07_ablation_tables": {
        "grid": Rule(str, accept=_existing("folder", "a grid's results folder (runs.csv, curves.csv, grid.json)")),
        "write": Rule(bool),
    },
    "08_what_properties_buy": {
        "run_names": _RUN_NAMES,
        "split": RULES["evaluate"]["split"],
        "focus_class": Rule(str),
        "show_properties": Rule(int, min=1, max=64),
        "why_not_class": Rule(str),
        "new_classes_file": Rule(str, accept=_existing("file", "an existing class-list file (.txt/.json)")),
        "backend": RULES["describe"]["backend"],
        "unseen_grid": Rule(str, accept=_existing("folder", "a grid's results folder")),
        "budget_grid": Rule(str, accept=_existing("folder", "a grid's results folder")),
        "settings_grid": Rule(str, accept=_existing("folder", "a grid's results folder")),
        "label_sets": Rule(str, accept=_existing("folder", "the label-set results folder (results/label_sets)")),
        "n_drop": Rule(int, min=1, max=10_000),
        "limit": Rule(int, min=1, nullable=True),
    },
}


def notebook_rules(notebook: str) -> dict[str, Rule]:
    """The rules of a notebook's parameters, by its name (``02_llm_retrieval`` or ``02_llm_retrieval.ipynb``)."""
    return NOTEBOOK_RULES.get(Path(notebook).stem, {})


def validate(stage: str, values: dict[str, Any], where: str = "", skip_none: bool = False) -> dict[str, Any]:
    """Check every value of ``values`` that ``stage`` has a rule for; unknown names are the caller's business."""
    rules = RULES[stage]
    for name, value in values.items():
        if name in rules and not (skip_none and value is None):
            check(name, value, rules[name], where)
    return values
