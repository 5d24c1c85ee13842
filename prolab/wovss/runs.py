"""A wovss run on disk: ``$PROLAB_CACHE/wovss/<run_name>/`` holds ``weights.safetensors``, ``config.json`` (the
resolved ``WovssConfig``, the text width, the environment) and ``log.json``; the config is written last, so a
folder with one is a finished run. One name stands for one configuration (``ensure_run``)."""
from __future__ import annotations

import shutil
from dataclasses import asdict, replace
from pathlib import Path

from .. import paths
from ..files import (atomic_write_bytes, atomic_write_json, canonical_safetensors, environment_info, folder_lock,
                     read_json, stable_hash)
from .train import GroupingModel, WovssConfig, train_wovss

WEIGHTS, CONFIG, LOG = "weights.safetensors", "config.json", "log.json"


def run_setting(cfg: WovssConfig) -> str:
    """A run's default name: which L_PG it trained with, the kit's guidance weight, its length and seed."""
    setting = "released_code" if cfg.released_code else "paper" if cfg.npr else "no_npr"
    return f"{setting}-g{cfg.guidance:g}-i{cfg.iters}-s{cfg.seed}"


def hashed_run_name(cfg: WovssConfig, prefix: str) -> str:
    """``<prefix>-<run_setting>-<hash of the whole configuration>``: a name that changes with any setting, for
    callers (notebook 14) that must never meet a finished run of the same name and other settings."""
    return f"{prefix}-{run_setting(cfg)}-{stable_hash(asdict(cfg), 8)}"


def save_run(folder, model: GroupingModel, cfg: WovssConfig, log: list[dict]) -> None:
    """Weights (safetensors), the resolved configuration with the text width and the environment, and the log:
    each written atomically; the config last, so a folder with a config is a finished run."""
    from safetensors.torch import save as save_tensors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(folder / WEIGHTS, canonical_safetensors(save_tensors(state)))
    atomic_write_json(folder / LOG, log)
    atomic_write_json(folder / CONFIG, {"config": asdict(cfg), "text_dim": model.text_proj[0].in_features,
                                        "environment": environment_info()})


def load_run(folder) -> tuple[GroupingModel, WovssConfig, list[dict]]:
    """A finished run's model (eval mode), configuration and log; the weights read with safetensors."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise FileNotFoundError(f"{folder}: no finished wovss run (expected {CONFIG} and {WEIGHTS}; "
                                "train one with `prolab wovss train`)")
    try:
        meta = read_json(folder / CONFIG)
        cfg = WovssConfig(**meta["config"])
        model = GroupingModel(replace(cfg, pretrained=None), meta["text_dim"])   # the file holds every weight
        model.load_state_dict(load_file(str(folder / WEIGHTS)))
    except (KeyError, TypeError, ValueError, RuntimeError, OSError) as e:
        raise ValueError(f"{folder}: not a readable wovss run ({type(e).__name__}: {e}); train it again with "
                         "`prolab wovss train --force`") from e
    if cfg.freeze_backbone:
        model.backbone.requires_grad_(False)
    return model.eval(), cfg, read_json(folder / LOG)


def ensure_run(cfg: WovssConfig, run_name: str | None = None, force: bool = False, progress: bool = True
               ) -> tuple[GroupingModel, list[dict], bool]:
    """The finished run ``run_name`` (default ``run_setting(cfg)``) if its folder holds one with this exact
    configuration, else trained now and saved (the folder locked while written; a killed run's leftovers are
    cleared first). Returns (model, log, trained now?). A finished run of that name with another configuration is
    refused unless ``force``: a name stands for one configuration."""
    name = run_name or run_setting(cfg)
    folder = paths.wovss_run_dir(name)
    with folder_lock(folder, "wovss run"):
        if (folder / CONFIG).is_file() and not force:
            saved = read_json(folder / CONFIG)["config"]
            if saved == asdict(cfg):
                model, _, log = load_run(folder)
                return model, log, False
            diff = {k: (saved.get(k), v) for k, v in asdict(cfg).items() if saved.get(k) != v}
            raise ValueError(f"wovss run {name!r} in {folder} was trained with other settings "
                             f"{ {k: a for k, (a, b) in diff.items()} } (now { {k: b for k, (a, b) in diff.items()} }): "
                             "give another run_name, or force=True (--force) to train it again")
        model, log = train_wovss(cfg, progress=progress)
        # written beside the folder, then swapped in: a kill during a forced retrain keeps the finished run
        partial, old = folder.with_name(folder.name + ".partial"), folder.with_name(folder.name + ".replaced")
        for leftover in (partial, old):
            shutil.rmtree(leftover, ignore_errors=True)
        save_run(partial, model, cfg, log)
        if folder.exists():
            folder.rename(old)
        partial.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    return model, log, True


__all__ = ["WEIGHTS", "CONFIG", "LOG", "run_setting", "hashed_run_name", "save_run", "load_run", "ensure_run"]
