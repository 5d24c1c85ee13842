"""The rules of every notebook parameter: a run config, ``prolab run -p`` and ``-f`` are checked before anything
runs, naming the notebook and the parameter. Every parameter of every notebook's ``parameters`` cell has a rule
here (a test walks the notebooks). Stage settings reuse their stage's rules (``prolab.validation.RULES``, the
training ones from ``TrainConfig``'s fields); the checks of values that name something (a dataset, a file, a
backbone, a prompt) are here too.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ..checks import SEED, Rule
from ..train.config import RULES as TRAIN_RULES
from ..validation import RULES


# --- checks of values that name something: a dataset, a file, a backbone, a prompt ----------------------------

def _one_line(e: BaseException) -> str:
    return (str(e.args[0] if isinstance(e, KeyError) and e.args else e).strip().splitlines() or [""])[0]


def _resolve(value: str) -> Path:
    """A path parameter as the notebooks and the CLI read it: ``~`` and ``$VARS`` expanded, relative to the
    repository root."""
    from .. import paths

    p = Path(os.path.expandvars(value)).expanduser()
    return p if p.is_absolute() else paths.resolve(p)


def _dataset_check(class_lists: bool) -> Callable[[Any], str | None]:
    """A dataset parameter: a registered dataset, an existing dataset YAML (read and checked now), or, where the
    notebook takes one (``class_lists``), an existing class-list file (.txt/.json)."""
    def accept(value: str) -> str | None:
        from ..datasets import DATASETS
        from ..datasets.spec import is_spec_path, load_spec

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
    from .. import paths

    if Path(name).suffix.lower() in (".yaml", ".yml"):
        return not (_resolve(name).is_file() or Path(name).expanduser().is_file())
    try:
        return not paths.prompt_path(name).is_file()
    except ValueError:   # a name that cannot be a file name
        return True


def _prompts_help() -> str:
    from .. import paths

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
    rules = TRAIN_RULES if stage == "train" else RULES[stage]
    return {**{n: rules[n] for n in names}, **{n: _opt(rules[n]) for n in optional}}


_PATH = Rule(str, nullable=True)                                     # a folder or file a notebook writes
_URL = Rule(str, nullable=True, pattern=r"https?://\S+", pattern_help="an http:// or https:// URL (or None)")
_ENV = Rule(str, nullable=True, pattern=r"[A-Za-z_][A-Za-z0-9_]*", pattern_help="an environment variable name "
                                                                               "(or None)")
_LLM = Rule(str, nullable=True)
_RUN_NAMES = Rule(list, item=str, min_length=1)
_TOY_CLASSES = ("sky", "grass", "road", "water", "car")              # notebook 00's toy scene
_TOY_SENTENCES = 15                                                 # its 5 classes x 3 descriptions

_WHAT_PROPERTIES_BUY: dict[str, Rule] = {
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
    "lr_init_grid": Rule(str, accept=_existing("folder", "a grid's results folder")),
    "label_sets": Rule(str, accept=_existing("folder", "the label-set results folder (results/label_sets)")),
    "n_drop": Rule(int, min=1, max=10_000),
    "limit": Rule(int, min=1, nullable=True),
}

NOTEBOOK_RULES: dict[str, dict[str, Rule]] = {
    "00_prolab_in_60_lines": {
        "n_properties": Rule(int, min=1, max=_TOY_SENTENCES),       # K-Means needs a description per cluster
        "temperature": TRAIN_RULES["temperature"],
        "head_init": TRAIN_RULES["head_init"],
        "noise": Rule(float, min=0, max=100),
        "feature_dim": Rule(int, min=1, max=4096),
        "iters": Rule(int, min=0, max=100_000),                     # 0: the untrained baseline
        "lr": TRAIN_RULES["lr"],
        "held_out": Rule(str, choices=_TOY_CLASSES, nullable=True),
        "seed": SEED,
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
        "release_descriptor_file": Rule(str, nullable=True,
                                        accept=_existing("file", "an existing descriptor file of the release")),
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
        "preset": TRAIN_RULES["preset"],
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
    # notebooks 08-13, what properties buy: one question each (the rules they share are written once, above them)
    **{nb: {k: _WHAT_PROPERTIES_BUY[k] for k in names} for nb, names in (
        ("08_explanations", ("run_names", "split", "focus_class", "show_properties", "why_not_class")),
        ("09_unseen_classes", ("run_names", "split", "unseen_grid")),
        ("10_new_classes", ("run_names", "split", "focus_class", "new_classes_file", "backend")),
        ("11_training_length_and_settings", ("budget_grid", "settings_grid", "lr_init_grid")),
        ("12_learnability", ("run_names", "split", "n_drop", "limit")),
        ("13_label_sets", ("label_sets",)))},
    "14_pgseg_from_captions": {
        "iters": Rule(int, min=0, max=1_000_000),
        "batch_size": Rule(int, min=2, max=4096),                  # a contrastive batch needs negatives
        "seed": Rule(int, min=0, max=2**32 - 1),
        "guidance": Rule(float, min=0),
        "phi": Rule(float, min=-1, max=1),                          # a cosine threshold
        "n_show": Rule(int, min=1, max=80),                         # the embedded default's val images
        "unseen_grid": _WHAT_PROPERTIES_BUY["unseen_grid"],
        "wovss_results": Rule(str, accept=_existing("folder", "a folder of `prolab wovss evaluate` results")),
        "descriptor_file": Rule(str, nullable=True, accept=_existing("file", "an existing descriptor file")),
    },
}


def notebook_rules(notebook: str) -> dict[str, Rule]:
    """The rules of a notebook's parameters, by its name (``02_llm_retrieval`` or ``02_llm_retrieval.ipynb``)."""
    return NOTEBOOK_RULES.get(Path(notebook).stem, {})
