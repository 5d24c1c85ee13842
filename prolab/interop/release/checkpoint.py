"""The authors' released segmentation checkpoints (mmsegmentation 0.x) <-> prolab's ``SegModel``.

The ProLab release trains ``EncoderDecoder_cluster_embed`` (an mmseg 0.x ``EncoderDecoder``) with the ViT-Adapter
backbone of github.com/czczup/ViT-Adapter, ``UPerHead_cluster_embed`` and ``FCNHead_cluster_embed``. A checkpoint
is mmcv's ``{"meta": {...}, "state_dict": {...}, "optimizer": {...}}``; its ``state_dict`` keys (read from the
sources, see below) are:

- ``backbone.*``: ``pos_embed`` (1, 1 + 14*14, 768: DeiT's grid *with* the class-token slot, which the
  forward skips), ``patch_embed.proj``, ``blocks.N`` (timm names), ``level_embed``, ``spm.stem.{0,1,3,4,6,7}``
  (one flat Sequential: conv, BN, ReLU three times, then a max pool), ``spm.conv2..4.{0,1}``, ``spm.fc1..4``,
  ``interactions.N.injector`` / ``.extractor`` / ``interactions.3.extra_extractors.{0,1}`` (the ConvFFN's
  depthwise conv is wrapped: ``ffn.dwconv.dwconv``), ``up``, ``norm1..norm4`` (SyncBN). No ``cls_token`` (the
  adapter sets it to None) and no DeiT classifier;
- ``decode_head.*`` (mmseg UPerHead; ConvModule = ``conv`` + ``bn``): ``psp_modules.N.1``, ``bottleneck``,
  ``lateral_convs.N``, ``fpn_convs.N``, ``fpn_bottleneck``, and ``conv_seg``: the property head, a 1x1 conv to
  ``num_classes=768`` channels, the embedding e (d = BGE-base's width);
- ``auxiliary_head.*`` (FCNHead, ``num_convs=1``): ``convs.0`` and ``conv_seg`` (also d = 768 outputs).

The property bank and the class signatures are **not** in the checkpoint: the heads and the segmentor read them
at construction from the embedding-bank file (``desc_weights_dict_path``) as plain attributes, and the segmentor
L2-normalises every row of the bank (``F.normalize(bank, dim=1)``) before z = e . E^T. So a converted model needs
the release's property space besides the checkpoint, and its bank rows are normalised here as the release does.

Sources (public repositories, read through the search index): lambert-x/ProLab
``configs/ADE20K/upernet_deit_adapter_base_512_320k_ade20k_bge_base.py`` (the 49.0 mIoU model; named 320k, it
inherits ``schedule_160k`` and sets no ``max_iters``, so it trains 160k iterations: ``paper.RELEASE_CONFIGS``),
``mmseg_custom/models/backbones/vit_adapter.py``, ``mmseg_custom/models/decode_heads/uper_head_cluster_embed.py``
and ``fcn_head_cluster_embed.py``, ``mmseg_custom/models/segmentors/encoder_decoder_cluster_embed.py``;
czczup/ViT-Adapter ``segmentation/mmseg_custom/models/backbones/base/vit.py`` and ``adapter_modules.py``;
open-mmlab/mmsegmentation ``mmseg/models/decode_heads/psp_head.py`` (PPM = AdaptiveAvgPool2d + ConvModule).
Only the key names and shapes are taken from them.

API: in ``keys``, :data:`RELEASE_TO_OURS` (the renaming table), :func:`release_key_names` (every key of a
ViT-Adapter-B release checkpoint) and :func:`convert_release_state` / :func:`ours_to_release`; here,
:func:`load_release_checkpoint` and :func:`release_to_run` (a run folder that ``prolab evaluate --run_name``
scores).
"""
from __future__ import annotations

import io
import logging
import os
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .keys import OURS_ONLY, ConversionReport, convert_release_state

log = logging.getLogger(__name__)


# --- reading a checkpoint ---------------------------------------------------------------------------------

def _numpy_safe_globals() -> list:
    """numpy scalars and dtypes in mmcv's ``meta`` (e.g. ``hook_msgs.best_score``, a numpy float64): data only,
    allowed by name for ``weights_only`` loading, under numpy 1's and numpy 2's module names."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    allowed: list = [scalar, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
                     np.dtype]
    for t in ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"):
        allowed.append(type(np.dtype(t)))
    return allowed


def load_release_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read an mmseg 0.x checkpoint with ``torch.load(weights_only=True)`` (no pickled code runs; numpy
    scalars in its ``meta`` are allowed as data). Returns ``{"state_dict", "meta", "source", "sha256"}``; a
    bare state dict gets an empty ``meta``. The optimizer state is not kept."""
    from ...files import file_sha256

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"release checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling, zip and I/O errors alike
        raise ValueError(f"cannot read {path} as a checkpoint of tensors and plain data ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:300]}). If it holds other objects, re-save only its "
                         "state_dict (torch.save(ck['state_dict'], ...)) where you trust the file") from None
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a dict (mmcv checkpoint or state dict), got {type(obj).__name__}")
    state = obj["state_dict"] if isinstance(obj.get("state_dict"), Mapping) else obj
    if not state or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise ValueError(f"{path}: found no state dict of tensors (top-level keys: {list(obj)[:8]})")
    meta = obj.get("meta") if isinstance(obj.get("meta"), Mapping) else {}
    return {"state_dict": dict(state), "meta": dict(meta), "source": str(path), "sha256": file_sha256(path, 64)}


def _meta_summary(meta: Mapping) -> dict:
    """The JSON-safe, short part of mmcv's meta (no config text, no environment dump)."""
    out = {}
    for k in ("mmseg_version", "mmcv_version", "iter", "epoch", "time", "exp_name"):
        if k in meta and isinstance(meta[k], (str, int, float)):
            out[k] = meta[k]
    if isinstance(meta.get("CLASSES"), (list, tuple)):
        out["n_classes"] = len(meta["CLASSES"])
    best = (meta.get("hook_msgs") or {}).get("best_score") if isinstance(meta.get("hook_msgs"), Mapping) else None
    if best is not None:
        try:
            out["best_score"] = float(best)
        except (TypeError, ValueError):
            pass
    return out


# --- a kit run from a release checkpoint ------------------------------------------------------------------

@dataclass
class ReleaseRun:
    run_dir: Path
    weights: Path
    property_space: Path
    report: dict


def release_to_run(checkpoint, property_space, run_name: str, dataset: str = "ade20k_150",
                   data_root: str | Path | None = None, force: bool = False, **config_overrides) -> ReleaseRun:
    """Write a kit run folder (``paths.run_dir(run_name)``) from a release checkpoint, laid out as a finished
    ``prolab train`` run, so that ``prolab evaluate --run_name <run_name> --split val --inference slide``
    scores it.

    ``checkpoint``: a path, :func:`load_release_checkpoint`'s dict, an mmcv checkpoint dict or a state dict.
    ``property_space``: the space the checkpoint was trained with (a ``PropertySpace`` or its ``.safetensors``);
    for the release that is its embedding bank (e.g. ``PropertySpace.from_release(...)`` of the bank file the
    config names), with d = the property head's width (768, BGE-base) and the dataset's classes in order.
    The space is copied into the run folder with its bank rows L2-normalised, as the release's segmentor
    normalises them. ``data_root`` is where the dataset lies (the run records it, as training does).
    ``config_overrides`` go to the recorded ``TrainConfig`` (e.g. ``crop_size``/``scale`` for a quick test).
    An existing run folder is refused unless ``force`` (then it is moved aside, nothing deleted, once the new
    run is complete). The run is written to ``<run>.partial-<pid>`` beside it, checked, and renamed into place, so
    a failure leaves nothing behind; ``<run>.lock`` keeps two conversions into one run apart.

    Written: ``model.safetensors`` (metadata: config, identity), ``config.json``, ``identity.json`` (its
    ``code`` part names the checkpoint, so `prolab train` never takes the folder for its own finished run),
    ``classes.json`` (the dataset's classes in label order), ``property_space.safetensors/.json`` and
    ``release.json`` (source, sha256, what the conversion did)."""
    from ... import paths
    from ...files import folder_lock
    from ...properties import PropertySpace

    if isinstance(checkpoint, (str, Path)):
        checkpoint = load_release_checkpoint(checkpoint)
    source = {"source": checkpoint.get("source", "<in memory>"), "sha256": checkpoint.get("sha256")} \
        if isinstance(checkpoint, Mapping) and "source" in checkpoint else {"source": "<in memory>", "sha256": None}
    meta = checkpoint.get("meta", {}) if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("meta"),
                                                                                          Mapping) else {}
    report = ConversionReport()
    state = convert_release_state(checkpoint, report)

    d, channels = state["classifier.weight"].shape[0], state["decode.bottleneck.0.weight"].shape[0]
    has_aux = "aux.block.0.weight" in state
    if has_aux and state["aux.block.0.weight"].shape[0] != max(32, channels // 2):
        raise ValueError(f"the checkpoint's auxiliary head has {state['aux.block.0.weight'].shape[0]} channels; "
                         f"the kit builds max(32, channels // 2) = {max(32, channels // 2)} for {channels} channels")
    space = property_space if isinstance(property_space, PropertySpace) else PropertySpace.load(
        paths.resolve(property_space))
    if space.dim != d:
        raise ValueError(f"the checkpoint's property head outputs d = {d} channels but the property space has "
                         f"d = {space.dim} ({space.embedder_id or 'unknown embedder'}): use the space the checkpoint "
                         "was trained with (the release: its BGE-base embedding bank, d = 768, e.g. "
                         "PropertySpace.from_release of the bank file its config names)")

    run = paths.run_dir(run_name)
    _refuse_existing(run, force)   # before any work; checked again under the lock
    # <run>.lock, the lock `prolab train` holds on a run folder too: two writers never mix their files; a second
    # one stops at once, naming the holder's pid
    with folder_lock(run, "run"):
        _refuse_existing(run, force)
        # everything is written to a staging folder beside the run and moved into place only once it is
        # complete and checked: a failure never leaves a half-made run (nor blocks a retry)
        stage = run.with_name(f"{run.name}.partial-{os.getpid()}")
        _remove_stale_stages(run)
        stage.mkdir()
        try:
            details = _write_run(stage, run, run_name, state, report, source, meta, space, channels, has_aux,
                                 dataset, data_root, config_overrides)
            _validate_staged(stage)
            _swap_in(stage, run, run_name)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    return ReleaseRun(run, run / "model.safetensors", run / "property_space.safetensors", details)


def _refuse_existing(run: Path, force: bool) -> None:
    if run.exists() and any(run.iterdir()) and not force:
        raise FileExistsError(f"run folder {run} exists: pick another run name or pass --force (force=True in "
                              "Python; the old run is then moved aside, not deleted)")


def _remove_stale_stages(run: Path) -> None:
    """Staging folders of this run left by killed conversions (only called under the run's lock, so none of
    them belongs to a conversion still running)."""
    pattern = re.compile(re.escape(run.name) + r"\.partial-\d+")
    for p in run.parent.iterdir() if run.parent.is_dir() else ():
        if pattern.fullmatch(p.name) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


RUN_FILES = ("model.safetensors", "config.json", "identity.json", "classes.json", "release.json",
             "property_space.safetensors", "property_space.json")


def _validate_staged(stage: Path) -> None:
    """The staged run is complete and readable: every file, the property space (its checksums), the weights'
    header and the JSON files."""
    from safetensors import safe_open

    from ...files import read_json
    from ...properties import PropertySpace

    missing = [n for n in RUN_FILES if not (stage / n).is_file()]
    if missing:
        raise RuntimeError(f"the converted run in {stage} lacks {missing}")
    PropertySpace.load(stage / "property_space.safetensors")
    with safe_open(str(stage / "model.safetensors"), framework="pt") as f:
        if not list(f.keys()):
            raise RuntimeError(f"{stage / 'model.safetensors'} holds no tensors")
    for n in ("config.json", "identity.json", "classes.json", "release.json"):
        read_json(stage / n)


def _swap_in(stage: Path, run: Path, run_name: str) -> None:
    """Move the staged run into place; an old run (``force``) is set aside (kept) only now, right before."""
    from ...train.runs import set_aside

    aside = None
    if run.exists():
        if any(run.iterdir()):
            aside = set_aside(run_name)
        else:
            run.rmdir()
    try:
        os.replace(stage, run)
    except OSError:
        if aside is not None and not run.exists():   # put the old run back
            os.replace(aside, run)
        raise
    if aside is not None:
        log.info("the previous run %s was moved to %s", run, aside)


def _write_run(stage: Path, run: Path, run_name: str, state, report, source, meta, space, channels, has_aux,
               dataset, data_root, config_overrides) -> dict:
    """Write the run's files into ``stage``; the paths recorded in them are the final ones (under ``run``)."""
    import numpy as np

    from ... import defaults
    from ...files import atomic_write_json, stable_hash
    from ...paper import RELEASE_CONFIGS
    from ...train.build import build_model
    from ...train.config import TrainConfig
    from ...train.data import open_split
    from ...train.runs import run_identity, write_run_config, write_run_record, write_weights

    bank = space.bank.astype(np.float32)
    norms = np.linalg.norm(bank, axis=1, keepdims=True)
    unit = replace(space, bank=(bank / np.clip(norms, 1e-12, None)).astype(np.float32),
                   notes={**space.notes, "bank_rows_l2_normalised": "as the release's segmentor does"})
    staged_space = unit.save(stage / "property_space.safetensors", extra_meta={"release_checkpoint": source})
    space_path = run / staged_space.name

    rc = RELEASE_CONFIGS["ade20k_150"]
    # the auxiliary weight the release's property models effectively train with (its cosine loss ignores 0.4)
    overrides = dict(mode="property", loss="cos_sigmoid", backbone="vit_adapter_base", pretrained="none",
                     channels=int(channels), aux_weight=defaults.aux_weight_for("property") if has_aux else 0.0,
                     temperature=rc.temperature, normalize=rc.normalize, layer_decay=0.95, iters=rc.iters,
                     crop_size=rc.crop_size, scale=rc.scale)
    overrides.update(config_overrides)
    cfg = TrainConfig.preset("paper", run_name=run_name, dataset=dataset,
                             data_root=None if data_root is None else str(data_root),
                             property_space=str(space_path), **overrides)
    ds = open_split(cfg, "train")
    # built from the staged copy of the space (the recorded config names its final place)
    model, loaded_space = build_model(replace(cfg, pretrained=None, property_space=str(staged_space)),
                                      ds.class_names)
    full = dict(state)
    full["bank"] = torch.from_numpy(unit.bank.copy())
    full["signatures"] = torch.from_numpy(unit.signatures.astype(np.float32))
    own = model.state_dict()
    if model.warmup_classifier is not None:   # not in the release: zeros (used only by a one-hot warm-up)
        full["warmup_classifier.weight"] = torch.zeros_like(own["warmup_classifier.weight"])
        full["warmup_classifier.bias"] = torch.zeros_like(own["warmup_classifier.bias"])
    bad = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in full.items()
           if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f"{len(bad)} tensor(s) do not fit the kit's ViT-Adapter-B model, e.g. {bad[:5]}")
    model.load_state_dict(full, strict=True)

    identity = run_identity(cfg, loaded_space, ds)
    identity["code"] = f"release checkpoint sha256:{source['sha256'] or 'unknown'}"
    identity["id"] = stable_hash({k: identity[k] for k in ("config", "property_space", "dataset", "code")})
    write_run_record(stage, identity, ds.class_names)
    write_run_config(stage, cfg, 1, "cpu", made_by="prolab.interop.release.checkpoint.release_to_run")
    details = {**source, "meta": _meta_summary(meta), "conversion": report.to_dict(),
               "filled": {k: why for k, why in OURS_ONLY.items()},
               "bank_row_norms_before": [float(norms.min()), float(norms.max())],
               "paper_miou": {"ade20k_150": 49.0}.get(cfg.dataset)}
    atomic_write_json(stage / "release.json", details)
    write_weights(stage / "model.safetensors", model, cfg, identity["id"])
    return details


def save_release_state(state: Mapping[str, torch.Tensor], path: str | Path, meta: Mapping | None = None) -> Path:
    """Write a state dict in the release's layout as an mmcv-style checkpoint ``{"meta", "state_dict"}``
    (tensors and plain data only)."""
    from ...files import atomic_write_bytes

    buf = io.BytesIO()
    torch.save({"meta": dict(meta or {}), "state_dict": {k: v.contiguous() for k, v in state.items()}}, buf)
    return atomic_write_bytes(path, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    """``python -m prolab.interop.release.checkpoint CHECKPOINT BANK --run_name NAME --data_root DIR [--dataset D]``:
    turn the authors' checkpoint and embedding bank (their ``.pth`` bank file or a kit ``.safetensors`` space)
    into a run that ``prolab evaluate --run_name NAME --inference slide`` scores."""
    import argparse

    from ...properties import PropertySpace

    class Parser(argparse.ArgumentParser):
        def error(self, message):   # one line and status 2, like the errors cli() reports (argparse adds usage)
            self.exit(2, f"error: {message} (see {self.prog} --help)\n")

    ap = Parser(prog="python -m prolab.interop.release.checkpoint", description=main.__doc__)
    ap.add_argument("checkpoint", help="the release's mmseg 0.x checkpoint (.pth, read with weights_only=True)")
    ap.add_argument("bank", help="the embedding bank it was trained with: the release's .pth bank file or a kit "
                                 ".safetensors property space (d must equal the checkpoint's head width, 768)")
    ap.add_argument("--run_name", required=True, help="name of the run to write (<PROLAB_CACHE>/runs/<run_name>/)")
    ap.add_argument("--dataset", default="ade20k_150", help="registered dataset (default: ade20k_150)")
    ap.add_argument("--data_root", required=True, help="where the dataset lies (its mmseg layout), as for `prolab train`")
    ap.add_argument("--force", action="store_true", help="move an existing run of that name aside (kept) once the "
                                                          "new one is written and checked (default: off)")
    a = ap.parse_args(argv)
    bank = Path(a.bank).expanduser()
    if not bank.is_file():
        raise FileNotFoundError(f"embedding bank {bank} does not exist (give the release's .pth bank file or a kit "
                                ".safetensors property space)")
    if bank.suffix == ".safetensors":
        space = PropertySpace.load(bank)
    else:
        try:
            space = PropertySpace.from_release(bank, a.dataset)
        except ValueError:   # names the file already
            raise
        except Exception as e:  # noqa: BLE001 - torch.load's unpickling, zip and I/O errors (e.g. a bare KeyError)
            raise ValueError(f"cannot read {bank} as the release's embedding bank file ({type(e).__name__}: "
                             f"{(str(e).splitlines() or [''])[0][:200]})") from None
    run = release_to_run(a.checkpoint, space, a.run_name, a.dataset, a.data_root, a.force)
    print(f"run {a.run_name} written to {run.run_dir}; score it with:\n  prolab evaluate --run_name {a.run_name} "
          "--split val --inference slide   (the paper reports 49.0 mIoU on ADE20K val)")
    return 0


# what bad input (files, names, folders) raises: one line and exit status 2, as `prolab`'s own commands do
EXPECTED_ERRORS = (ValueError, FileNotFoundError, OSError, RuntimeError, KeyError)


def cli(argv: list[str] | None = None) -> int:
    """:func:`main` as a command (``python -m prolab.interop.release.checkpoint``): an expected error is printed as one
    line ``error: ...`` on stderr with exit status 2, not a traceback. (``main`` itself raises, for callers.)"""
    from ...redact import redact

    try:
        return main(argv)
    except EXPECTED_ERRORS as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e  # KeyError's str() adds quotes
        print(f"error: {' '.join(redact(msg).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(cli())
