"""Training with property-level or category-level supervision, on CPU, one GPU, or many through torchrun.

Deterministic and resumable: the sample at (iteration, slot) and its augmentation are derived from the seed,
so a run resumed from its last checkpoint (model, optimiser, scheduler, RNG state) replays the same batches
and reaches the same next-step loss as an uninterrupted run. ``_train`` reads as the recipe: each step it
calls is a named function below it.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import paths
from ..files import clean_stale_temps, folder_lock
from ..progress import tqdm
from ..segment.supervision import segmentation_loss
from .build import build_model, mask_unseen, unseen_ids
from .callbacks import Callback, OneHotWarmup
from .config import RESUME_FREE, TrainConfig
from .data import Batches, Keys, open_split
from .optim import lr_factor, param_groups
from .runs import (load_checkpoint, plan_run, previous_checkpoint_path, read_log, run_identity, save_checkpoint,
                   set_aside, write_run_config, write_run_record, write_weights)


def train(cfg: TrainConfig, progress: bool = True, stop_after: int | None = None, force: bool = False) -> TrainResult:
    """Train, resume or reuse the run ``cfg.run_name``. Its identity (config, property space content, dataset
    fingerprint, code) decides: a finished run with the same identity is reused, an unfinished one resumed
    from its checkpoint; a run of the same name with another identity is moved aside (kept) and training
    starts afresh, as it does with ``force`` or ``resume=False``. ``stop_after`` ends this process's work
    after that iteration (tests). The run folder is locked meanwhile: a second process training the same
    run_name stops with the first one's pid instead of writing into (or moving) its folder."""
    if int(os.environ.get("RANK", "0")) != 0:   # rank 0 owns the folder; the other ranks write nothing there
        return _train(cfg, progress, stop_after, force)
    with folder_lock(paths.run_dir(cfg.run_name), "run"):
        return _train(cfg, progress, stop_after, force)


def _train(cfg: TrainConfig, progress: bool, stop_after: int | None, force: bool) -> TrainResult:
    world, rank, local_rank = _dist_info()
    device = setup_device(cfg, world, local_rank)
    torch.manual_seed(cfg.seed + rank)  # each rank its own dropout masks
    np.random.seed(cfg.seed)
    ds, model, space = prepare(cfg, rank, world, progress)
    identity = run_identity(cfg, space, ds)
    plan, changed = plan_run(cfg.run_name, identity, force=force or not cfg.resume)
    _barrier(world)  # every rank has planned before rank 0 moves anything
    run, replaced = open_run_folder(cfg, plan, changed, identity, ds.class_names) if rank == 0 else \
        (paths.run_dir(cfg.run_name), None)
    _barrier(world)
    if plan == "reuse":
        return TrainResult(run, run / "model.safetensors", read_log(cfg.run_name), cfg.iters, reused=True,
                           identity=identity["id"])
    model.to(device)
    held = torch.tensor(unseen_ids(cfg, ds.class_names), dtype=torch.long, device=device)
    opt = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.weight_decay, cfg.layer_decay), lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: lr_factor(it, cfg))  # groups keep their lr scale
    ckpt_path = paths.checkpoint_path(cfg.run_name)
    start, ck = resume(cfg, ckpt_path, model, opt, sched, device)
    net = wrap(model, device, world)
    amp = Precision(cfg, device, ck)
    stop = min(cfg.iters, stop_after) if stop_after else cfg.iters
    loader = make_loader(cfg, ds, start, stop, rank, world)
    if rank == 0:
        write_run_config(run, cfg, world, device)
    callbacks: list[Callback] = [OneHotWarmup(cfg.onehot_warmup_iters if cfg.mode == "property" else 0)]
    log: list[dict] = []
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(total=stop - start, desc=f"train {cfg.run_name}", disable=not progress or rank != 0)
    for it, (images, labels) in enumerate(loader, start):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        step = {"forward": {}, "phase": cfg.mode}
        for cb in callbacks:
            cb.before_step(it, step)
        out, value, lr_now = train_step(net, model, cfg, amp, opt, sched, images, mask_unseen(labels, held),
                                        step["forward"], world)
        row = {"iteration": it + 1, "loss": value, "lr": lr_now, "phase": step["phase"],
               "seconds": round(time.perf_counter() - t0, 3)}
        logged = (it + 1) % cfg.log_interval == 0 or it + 1 == stop
        if logged:
            row.update(saturation(out, cfg.temperature))
        log.append(row)
        bar.update()
        if rank == 0:
            if logged:
                bar.set_postfix(loss=f"{row['loss']:.4f}")
            with open(run / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            if (it + 1) % cfg.checkpoint_interval == 0 or it + 1 == cfg.iters:
                save_checkpoint(ckpt_path, model, opt, sched, it + 1, cfg, amp.scaler)
        _barrier(world)
    bar.close()
    weights = run / "model.safetensors"
    if rank == 0 and stop == cfg.iters:
        write_weights(weights, model, cfg, identity["id"])
    _barrier(world)
    return TrainResult(run, weights, log, start, identity=identity["id"],
                       replaced=None if replaced is None else str(replaced))


# --- the steps ---------------------------------------------------------------------------------------------------

def _dist_info():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def _barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


def resolve_device(device: str) -> torch.device:
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def setup_device(cfg: TrainConfig, world: int, local_rank: int) -> torch.device:
    """The process group (torchrun) and this rank's device."""
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and cfg.device in ("auto", "cuda") else "gloo"
        torch.distributed.init_process_group(backend)
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must divide evenly over {world} processes")
    return device


def prepare(cfg: TrainConfig, rank: int, world: int, progress: bool):
    """The training split (every file checked) and the model. Rank 0 goes first: it generates data and builds
    the property space; its error (if any) is sent to the other ranks, which would otherwise wait at a barrier
    until the process group times out."""
    failure = None
    if rank == 0:
        try:
            ds = open_split(cfg, "train")
            ds.check_files(progress=progress)  # every file now, not at the iteration that meets a bad one
            model, space = build_model(cfg, ds.class_names)
        except Exception as e:  # noqa: BLE001 - re-raised below, on every rank
            failure = e
    if world > 1:
        flag = [None if failure is None else f"{type(failure).__name__}: {failure}"]
        torch.distributed.broadcast_object_list(flag, src=0)
        if flag[0] is not None and failure is None:
            raise RuntimeError(f"rank 0 failed while preparing the run: {flag[0]}")
    if failure is not None:
        raise failure
    if rank != 0:
        ds = open_split(cfg, "train")
        model, space = build_model(cfg, ds.class_names)
    return ds, model, space


def open_run_folder(cfg: TrainConfig, plan: str, changed: list[str], identity: dict, class_names: list[str]):
    """Rank 0: move a run with other inputs aside, then write the identity and class list into the folder."""
    run = paths.run_dir(cfg.run_name)
    replaced = None
    if plan == "replace":
        replaced = set_aside(cfg.run_name)
        print(f"run {cfg.run_name}: {', '.join(changed)} changed since it was trained: training afresh; the "
              f"previous run is kept at {replaced}", flush=True)
    run.mkdir(parents=True, exist_ok=True)
    paths.claim(run, cfg.run_name, "run_name")   # Run and run would share the folder
    write_run_record(run, identity, class_names)
    clean_stale_temps(run)  # half-written checkpoints of a killed run
    return run, replaced


def resume(cfg: TrainConfig, ckpt_path: Path, model, opt, sched, device) -> tuple[int, dict | None]:
    """Load the last checkpoint (or the one kept before it) into model, optimiser, scheduler and RNG; the
    iteration to start from, and the checkpoint."""
    resume_from = ckpt_path
    if cfg.resume and not ckpt_path.exists() and previous_checkpoint_path(ckpt_path).exists():
        resume_from = previous_checkpoint_path(ckpt_path)  # killed between keeping the old one and writing the new
    if not (cfg.resume and resume_from.exists()):
        return 0, None
    ck = load_checkpoint(resume_from)
    # the property space is compared by content (the identity), not by how its path was spelt
    saved = {k: v for k, v in ck["config"].items() if k not in RESUME_FREE | {"property_space"}}
    now = {k: v for k, v in cfg.to_dict().items() if k in saved}
    if saved != now:
        diff = sorted(k for k in saved if saved[k] != now.get(k))
        raise ValueError(f"{resume_from} was written with other settings ({diff}); use another run_name "
                         "or start afresh with --resume false")
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    torch.set_rng_state(ck["torch_rng"])
    if device.type == "cuda" and "cuda_rng" in ck:
        torch.cuda.set_rng_state(ck["cuda_rng"])
    return int(ck["iteration"]), ck


def wrap(model, device, world: int):
    """DistributedDataParallel (with SyncBatchNorm on GPUs, as the paper's configs) when there are ranks."""
    if world == 1:
        return model
    net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model) if device.type == "cuda" else model
    return torch.nn.parallel.DistributedDataParallel(
        net, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)


class Precision:
    """Mixed precision on CUDA when ``cfg.amp``: bfloat16 where supported, else float16 with a loss scaler."""

    def __init__(self, cfg: TrainConfig, device, ck: dict | None):
        self.device_type = device.type
        self.enabled = cfg.amp and device.type == "cuda"
        self.dtype = torch.bfloat16 if self.enabled and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and self.dtype == torch.float16)
        if ck and ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)


def make_loader(cfg: TrainConfig, ds, start: int, stop: int, rank: int, world: int):
    """Batches keyed by (iteration, slot): this rank's slots of iterations start..stop."""
    from ..datasets.transforms import AugmentDefaults, TrainTransform

    local_bs = cfg.batch_size // world
    aug = TrainTransform(AugmentDefaults(scale=tuple(cfg.scale), crop_size=(cfg.crop_size, cfg.crop_size)))
    batches = Batches(ds, aug, cfg.batch_size, cfg.seed)
    # the loader gets its own generator: drawing its base seed from the global RNG would shift dropout after a resume
    return torch.utils.data.DataLoader(batches, batch_size=local_bs, num_workers=cfg.num_workers,
                                       sampler=Keys(start, stop, range(rank * local_bs, (rank + 1) * local_bs)),
                                       generator=torch.Generator().manual_seed(cfg.seed))


def train_step(net, model, cfg: TrainConfig, amp: Precision, opt, sched, images, labels, forward: dict,
               world: int) -> tuple[dict, float, float]:
    """One optimiser step: the outputs, the loss (averaged over ranks) and the learning rate the step used."""
    with amp.autocast():
        out = net(images, **forward)
        loss = segmentation_loss(out, labels, model.signatures if cfg.mode == "property" else None,
                                 cfg.temperature, cfg.loss, cfg.aux_weight,
                                 name_bank=model.name_bank if cfg.mode == "name_embedding" else None)
    opt.zero_grad(set_to_none=True)
    amp.scaler.scale(loss).backward()
    lr_now = opt.param_groups[-1]["lr"]  # the rate this step used
    amp.scaler.step(opt)
    amp.scaler.update()
    sched.step()
    value = loss.detach()
    if world > 1:
        torch.distributed.all_reduce(value)
        value /= world
    return out, float(value), lr_now


SATURATED = 4.0   # |z/T| above which sigmoid'(z/T) = p(1 - p) < 0.018: the property barely learns


@torch.no_grad()
def saturation(out: dict, temperature: float) -> dict[str, float]:
    """How saturated the property sigmoids are on this batch, per head, from the logits at the head's own
    (quarter) resolution: the std of z/T, the fraction of |z/T| > 4 and the mean p(1 - p) (the factor that
    scales every gradient through the sigmoid; its maximum is 0.25). Property heads only: {} otherwise."""
    if out.get("kind") != "property":
        return {}
    row = {}
    for key, prefix in (("logits", "sat"), ("aux_logits", "aux_sat")):
        z = out.get(key)
        if z is None:
            continue
        u = z.detach().float() / temperature
        p = torch.sigmoid(u)
        row[f"{prefix}_std"] = round(float(u.std()), 4)
        row[f"{prefix}_frac"] = round(float((u.abs() > SATURATED).float().mean()), 4)
        row[f"{prefix}_grad"] = round(float((p * (1 - p)).mean()), 5)
    return row


@dataclass
class TrainResult:
    run_dir: Path
    weights: Path
    log: list[dict] = field(default_factory=list)   # the rows this call trained (all rows when reused)
    resumed_from: int = 0
    reused: bool = False      # a finished run with the very same identity was found: nothing was trained
    identity: str = ""        # hash of config, property space, dataset and code (see runs.run_identity)
    replaced: str | None = None  # where a previous run of this name with other inputs was moved

    def summary(self) -> str:
        """One line for a person: what this call did."""
        last = self.log[-1] if self.log else {}
        loss = f"final loss {last['loss']:.4f}" if "loss" in last else "no iterations"
        if self.reused:
            return (f"{self.run_dir.name}: reused a finished run with identical inputs (identity {self.identity}); "
                    f"{loss}")
        what = (f"trained iterations {self.resumed_from}->{last.get('iteration', self.resumed_from)} in "
                f"{last.get('seconds', 0):.1f} s" if self.log else "nothing left to train")
        moved = f"; the previous run with other inputs is kept at {self.replaced}" if self.replaced else ""
        return f"{self.run_dir.name}: {what}, {loss}{moved}"


