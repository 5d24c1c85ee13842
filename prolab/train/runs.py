"""A training run on disk: checkpoints (the last two kept), the metrics log, final weights, and loading a
finished run back."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import torch

from .. import paths
from ..files import atomic_write_bytes, canonical_safetensors, utc_now
from .config import TrainConfig
from ..segment.model import SegModel


def save_checkpoint(path: Path, model, opt, sched, iteration: int, cfg: TrainConfig, scaler=None) -> None:
    """Plain tensors and numbers only, so ``torch.load(weights_only=True)`` reads it back. The checkpoint it
    replaces is kept as ``checkpoint.prev.pt``: if the newest one is damaged, the one before it still works."""
    import io

    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "iteration": iteration, "torch_rng": torch.get_rng_state(), "config": cfg.to_dict(),
             "saved": utc_now()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state()
    if scaler is not None and scaler.is_enabled():
        state["scaler"] = scaler.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    if path.exists():
        os.replace(path, previous_checkpoint_path(path))
    atomic_write_bytes(path, buf.getvalue())


def previous_checkpoint_path(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


_CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "iteration", "torch_rng", "config"}


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint with ``weights_only=True``; a damaged or foreign file is an error that names it and
    says how to go on (the checkpoint before it, or a fresh start), never to turn the safety check off."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        problem = None if isinstance(ck, dict) and _CHECKPOINT_KEYS <= set(ck) else "it is not a prolab checkpoint"
    except Exception as e:  # noqa: BLE001 - zip, unpickling and I/O errors alike: torch's text would mislead
        kind = ("it holds objects other than tensors and numbers (tampered, or not written by prolab)"
                if "weights_only" in str(e) or "Unpickl" in type(e).__name__ else
                f"it is truncated or corrupt ({type(e).__name__})")
        problem = kind
    if problem is None:
        return ck
    prev = previous_checkpoint_path(path)
    options = [f"start the run afresh with --resume false (or delete {path})"]
    if prev.exists():
        options.insert(0, f"continue from the checkpoint before it: mv {prev} {path}")
    raise RuntimeError(f"cannot resume from checkpoint {path}: {problem}. Options: " + "; or ".join(options))


def read_log(run_name: str) -> list[dict]:
    """The metrics log of a run; a resumed run's repeated iterations keep their latest entry."""
    f = paths.run_dir(run_name) / "metrics.jsonl"
    rows: dict[int, dict] = {}
    if f.exists():
        for line in f.read_text().splitlines():
            try:
                r = json.loads(line)
                rows[r["iteration"]] = r
            except (json.JSONDecodeError, KeyError):
                continue
    return [rows[k] for k in sorted(rows)]


# --- the one writer of a run's files (``train`` and the release importer both call these) ------------------------

def write_run_record(folder: Path, identity: dict, class_names: list[str]) -> None:
    """``identity.json`` and ``classes.json`` (the classes in label order: evaluate and load_trained refuse a
    class list edited since)."""
    from ..datasets.classes import class_list_hash
    from ..files import atomic_write_json

    atomic_write_json(Path(folder) / "identity.json", identity)
    atomic_write_json(Path(folder) / "classes.json", {"class_names": list(class_names),
                                                      "hash": class_list_hash(class_names)})


def write_run_config(folder: Path, cfg: TrainConfig, world: int, device, **extra) -> None:
    """``config.json``: the resolved config, the environment, and how the run was made."""
    from ..files import atomic_write_json, environment_info

    atomic_write_json(Path(folder) / "config.json", {**cfg.to_dict(), "environment": environment_info(),
                                                     "world_size": world, "device": str(device), **extra})


def write_weights(path: Path, model, cfg: TrainConfig, identity: str) -> Path:
    """The final weights of a finished run (safetensors, byte-stable), with the config that rebuilds the model
    and the run's identity in its metadata."""
    from safetensors.torch import save

    atomic_write_bytes(path, canonical_safetensors(save(
        {k: v.contiguous().cpu() for k, v in model.state_dict().items()},
        metadata={"config": json.dumps(cfg.to_dict()), "identity": identity})))
    return path


def load_trained(run_name: str, device: str = "cpu") -> tuple[SegModel, TrainConfig, list[str]]:
    """The final weights of a finished run, rebuilt from its recorded config (safetensors, no pickle)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    f = paths.run_dir(run_name) / "model.safetensors"
    if not f.exists():
        raise FileNotFoundError(f"run {run_name!r} has no final weights at {f} (not finished?)")
    try:
        with safe_open(str(f), "pt") as h:
            cfg = TrainConfig.from_dict(json.loads(h.metadata()["config"]))
        state = load_file(str(f))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise RuntimeError(f"cannot read the final weights {f}: {type(e).__name__}: {e}. Train the run again "
                           f"(delete {f.parent} or pick another run_name)") from None
    from .build import build_model
    from .data import open_split

    ds = open_split(cfg, "train")
    check_run_classes(run_name, ds.class_names, f"dataset {cfg.dataset}")
    model, _ = build_model(replace(cfg, pretrained=None), ds.class_names)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:   # a run from before classes.json, whose class list changed since
        first = str(e).split("\n")[1].strip() if "\n" in str(e) else str(e)
        raise ValueError(f"run {run_name!r}: its weights do not fit the model its config builds now ({first}); "
                         f"has the class list of dataset {cfg.dataset} changed since it was trained?") from None
    return model.to(device).eval(), cfg, ds.class_names


def check_run_classes(run_name: str, class_names, source: str) -> None:
    """Refuse to score or load a run with a class list other than the one it was trained on (``classes.json``,
    written by ``train``: names in label order)."""
    from ..datasets.classes import check_same_classes
    from ..files import read_json

    f = paths.run_dir(run_name) / "classes.json"
    if f.is_file():
        check_same_classes(read_json(f)["class_names"], class_names, f"run {run_name!r}", source)


# --- a run's identity: reuse only what the same inputs made ---------------------------------------------------

def run_identity(cfg: TrainConfig, space, ds) -> dict:
    """Everything that decides what a run computes: its config (less the settings that do not change the
    result), the content of its property space, its dataset's fingerprint and the package's code."""
    from ..files import stable_hash
    from ..identity import TRAINING_CODE, code_hash
    from .config import RESUME_FREE

    config = {k: v for k, v in cfg.to_dict().items() if k not in RESUME_FREE | {"property_space"}}
    parts = {"config": config, "property_space": None if space is None else space.content_hash(),
             "dataset": ds.fingerprint(), "code": code_hash(*TRAINING_CODE)}
    return {"id": stable_hash(parts), **parts}


def identity_path(run_name: str) -> Path:
    return paths.run_dir(run_name) / "identity.json"


def plan_run(run_name: str, identity: dict, force: bool = False) -> tuple[str, list[str]]:
    """What to do with the run folder: ``fresh`` (nothing there), ``resume`` (same identity, unfinished),
    ``reuse`` (same identity, finished), ``replace`` (another identity, or ``force``). Also returns what
    differs from the previous run (for the message)."""
    from ..files import read_json

    run = paths.run_dir(run_name)
    made = ("checkpoint.pt", "checkpoint.prev.pt", "model.safetensors", "metrics.jsonl", "identity.json")
    if not any((run / name).exists() for name in made):  # nothing a run made (at most a killed write's temp)
        return "fresh", []
    f = identity_path(run_name)
    old = read_json(f) if f.exists() else {}
    changed = [k for k in ("config", "property_space", "dataset", "code") if old.get(k) != identity[k]]
    if force:
        return "replace", changed or ["forced"]
    if changed:
        if old.get("config") and old["config"] != identity["config"]:
            changed[changed.index("config")] = "config: " + ", ".join(
                sorted(k for k in identity["config"] if old["config"].get(k) != identity["config"][k]))
        return "replace", changed
    return ("reuse" if (run / "model.safetensors").exists() else "resume"), []


def set_aside(run_name: str) -> Path:
    """Move a run folder out of the way (nothing finished is deleted): ``runs/<name>@<old id>``."""
    from ..files import read_json

    run = paths.run_dir(run_name)
    f = identity_path(run_name)
    old_id = read_json(f).get("id", "old") if f.exists() else "old"
    dest = run.with_name(f"{run.name}@{old_id}")
    n = 1
    while dest.exists():
        n += 1
        dest = run.with_name(f"{run.name}@{old_id}-{n}")
    os.replace(run, dest)
    return dest
