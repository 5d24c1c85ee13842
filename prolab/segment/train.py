"""Training with property-level or category-level supervision, on CPU, one GPU, or many through torchrun.

Deterministic and resumable: the sample at (iteration, slot) and its augmentation are derived from the seed,
so a run resumed from its last checkpoint (model, optimiser, scheduler, RNG state) replays the same batches
and reaches the same next-step loss as an uninterrupted run.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from ..progress import tqdm

from .. import paths
from ..defaults import IGNORE_INDEX
from ..datasets.classes import check_same_classes, class_list_hash
from ..files import (atomic_write_bytes, atomic_write_json, canonical_safetensors, clean_stale_temps, folder_lock,
                     environment_info)
from .config import RESUME_FREE, TrainConfig
from .data import _Batches, _Keys, eval_split, open_split  # noqa: F401  (eval_split: re-exported)
from .losses import segmentation_loss
from .model import ModelDefaults, SegModel
from .runs import (identity_path, load_checkpoint, load_trained, plan_run, previous_checkpoint_path,  # noqa: F401
                   read_log, run_identity, save_checkpoint, set_aside)


def default_property_space(dataset: str) -> Path:
    """Stage 2's default space of ``dataset`` (see ``properties.default_space_path``)."""
    from ..properties import default_space_path

    return default_space_path(dataset)


# --- optimisation ----------------------------------------------------------------------------------------------

# backbone parameters before the first layer (decayed most); other unnumbered backbone modules (ViT-Adapter's
# spatial prior module and interactions, a plain ViT's pyramid) are new layers and get the head's rate
_STEM = re.compile(r"^backbone\.(?:body\.|model\.)*(?:patch_embed|pos_embed|cls_token|stem|conv_stem|bn1|conv1)")


def _layer_id(name: str, n_layers: int) -> int:
    if not name.startswith("backbone."):
        return n_layers + 1
    m = re.search(r"(?:blocks|stages|layers?)[._](\d+)", name)
    if m:
        return int(m.group(1)) + 1
    return 0 if _STEM.match(name) else n_layers + 1


def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """AdamW groups: layer-wise lr decay over backbone stages; no weight decay on norms and biases."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    ids = [int(m.group(1)) for n, _ in named if (m := re.search(r"(?:blocks|stages|layers?)[._](\d+)", n))
           and n.startswith("backbone.")]
    n_layers = max(ids) + 1 if ids else 0
    groups: dict[tuple, dict] = {}
    for n, p in named:
        lid = _layer_id(n, n_layers)
        scale = cfg.layer_decay ** (n_layers + 1 - lid)
        wd = 0.0 if p.ndim <= 1 else cfg.weight_decay
        g = groups.setdefault((lid, wd), {"params": [], "lr_scale": scale, "weight_decay": wd, "lr": cfg.lr * scale})
        g["params"].append(p)
    return list(groups.values())


def lr_factor(it: int, cfg: TrainConfig) -> float:
    """Linear warm-up to the base lr, then poly decay to 0 at ``iters``."""
    poly = (1 - min(it, cfg.iters) / cfg.iters) ** cfg.poly_power
    if cfg.warmup_iters and it < cfg.warmup_iters:
        return poly * (1e-6 + (1 - 1e-6) * it / cfg.warmup_iters)
    return poly


# --- the run ------------------------------------------------------------------------------------------------

def resolve_device(device: str) -> torch.device:
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def unseen_ids(cfg: TrainConfig, class_names: list[str]) -> list[int]:
    """Indices of the run's held-out classes (``cfg.unseen``), checked against the dataset's classes."""
    from ..properties.build import unseen_indices

    return unseen_indices(cfg.unseen, class_names, where=f"training config: unseen = {cfg.unseen!r}: dataset "
                                                         f"{cfg.dataset}")


def mask_unseen(labels: torch.Tensor, held: torch.Tensor) -> torch.Tensor:
    """Held-out classes are never labelled in training: their pixels become 'ignore'."""
    if not len(held):
        return labels
    return torch.where(torch.isin(labels, held), torch.full_like(labels, IGNORE_INDEX), labels)


def run_unseen(cfg: TrainConfig, class_names: list[str]) -> list[str]:
    """Every class a run never saw labelled: its ``unseen`` setting and the dataset's reserved unseen classes."""
    from ..datasets import DATASETS, unseen_class_names

    held = [class_names[c] for c in unseen_ids(cfg, class_names)]
    reserved = unseen_class_names(cfg.dataset) if cfg.dataset in DATASETS else []
    return [c for c in class_names if c in set(held) | set(reserved)]


def load_space_for(cfg: TrainConfig, class_names: list[str]):
    from ..properties import PropertySpace, default_space_path

    held = [class_names[c] for c in unseen_ids(cfg, class_names)]
    path = paths.resolve(cfg.property_space) if cfg.property_space else default_space_path(cfg.dataset, held)
    if not cfg.property_space:  # record the resolved space, so a resume or load_trained uses the very same one
        root = paths.repo_root()
        cfg.property_space = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    space = PropertySpace.load(path)
    check_same_classes(space.class_names, class_names, f"property space {Path(path).name}", f"dataset {cfg.dataset}")
    empty = [c for c, row in zip(space.class_names, np.asarray(space.signatures)) if not row.any()]
    if empty:   # such a class has no target and can never be recovered: cos(p, 0) is undefined
        raise ValueError(f"property space {Path(path).name}: {len(empty)} classes have no property ({empty[:5]}"
                         f"{' ...' if len(empty) > 5 else ''}); build it again (prolab properties)")
    leaked = sorted(set(held) - set(space.notes.get("unseen", [])))
    if leaked:  # the protocol: unseen classes reach the bank only by assignment, never by clustering
        raise ValueError(f"property space {Path(path).name} was clustered with the descriptions of {leaked}, which "
                         f"this run holds out (unseen = {cfg.unseen!r}); build one without them: prolab properties "
                         f"--dataset {cfg.dataset} --unseen {','.join(held)}")
    return space, path


def name_bank_for(cfg: TrainConfig, class_names: list[str]) -> np.ndarray:
    """(C, d) L2-normalised sentence embeddings of the class names (name_embedding mode), through the
    embedding cache: the 'category space with a text embedder' baseline of the paper."""
    from ..properties import make_embedder
    from ..properties.embedcache import EmbeddingCache

    emb = make_embedder(cfg.name_embedder)
    x = EmbeddingCache(emb.embedder_id).encode(emb, list(class_names), progress=False).astype(np.float32)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


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


def _dist_info():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def build_model(cfg: TrainConfig, class_names: list[str]):
    space, names = None, None
    unseen_ids(cfg, class_names)  # a typo in --unseen fails here, before any weights load
    if cfg.mode == "property":
        space, _ = load_space_for(cfg, class_names)
    elif cfg.mode == "name_embedding":
        names = torch.from_numpy(name_bank_for(cfg, class_names))
    md = ModelDefaults(backbone=cfg.backbone, pretrained=cfg.pretrained, channels=cfg.channels,
                       aux_channels=max(32, cfg.channels // 2), use_aux=cfg.aux_weight > 0,
                       head_init=cfg.head_init, normalize_bank=cfg.normalize_bank)
    model = SegModel(len(class_names), cfg.mode, None if space is None else torch.from_numpy(space.bank),
                     None if space is None else torch.from_numpy(space.signatures.astype(np.float32)),
                     cfg.temperature, cfg.normalize, md, name_bank=names, loss=cfg.loss)
    return model, space


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
    from ..datasets.transforms import AugmentDefaults, TrainTransform

    world, rank, local_rank = _dist_info()
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and cfg.device in ("auto", "cuda") else "gloo"
        torch.distributed.init_process_group(backend)
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must divide evenly over {world} processes")
    torch.manual_seed(cfg.seed + rank)  # each rank its own dropout masks
    np.random.seed(cfg.seed)

    # rank 0 generates data, checks every file and builds the property space first; its error (if any) is
    # sent to the other ranks, which would otherwise wait at a barrier until the process group times out
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
    identity = run_identity(cfg, space, ds)
    plan, changed = plan_run(cfg.run_name, identity, force=force or not cfg.resume)
    if world > 1:
        torch.distributed.barrier()  # every rank has planned before rank 0 moves anything
    run = paths.run_dir(cfg.run_name)
    replaced = None
    if rank == 0:
        if plan == "replace":
            replaced = set_aside(cfg.run_name)
            print(f"run {cfg.run_name}: {', '.join(changed)} changed since it was trained: training afresh; the "
                  f"previous run is kept at {replaced}", flush=True)
        run.mkdir(parents=True, exist_ok=True)
        paths.claim(run, cfg.run_name, "run_name")   # Run and run would share the folder
        atomic_write_json(identity_path(cfg.run_name), identity)
        # the classes in label order: evaluate and load_trained refuse a class list edited since
        atomic_write_json(run / "classes.json", {"class_names": list(ds.class_names),
                                                 "hash": class_list_hash(ds.class_names)})
        clean_stale_temps(run)  # half-written checkpoints of a killed run
    if world > 1:
        torch.distributed.barrier()
    if plan == "reuse":
        return TrainResult(run, run / "model.safetensors", read_log(cfg.run_name), cfg.iters, reused=True,
                           identity=identity["id"])
    model.to(device)
    sig = model.signatures if cfg.mode == "property" else None
    held = torch.tensor(unseen_ids(cfg, ds.class_names), dtype=torch.long, device=device)
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: lr_factor(it, cfg))  # groups keep their lr scale
    ckpt_path = paths.checkpoint_path(cfg.run_name)
    start = 0
    resume_from = ckpt_path
    if cfg.resume and not ckpt_path.exists() and previous_checkpoint_path(ckpt_path).exists():
        resume_from = previous_checkpoint_path(ckpt_path)  # killed between keeping the old one and writing the new
    if cfg.resume and resume_from.exists():
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
        start = int(ck["iteration"])
    net = model
    if world > 1:
        if device.type == "cuda":  # as the paper's configs: batch statistics over all GPUs
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    if start and ck.get("scaler"):
        scaler.load_state_dict(ck["scaler"])

    local_bs = cfg.batch_size // world
    aug = TrainTransform(AugmentDefaults(scale=tuple(cfg.scale), crop_size=(cfg.crop_size, cfg.crop_size)))
    batches = _Batches(ds, aug, cfg.batch_size, cfg.seed)
    stop = min(cfg.iters, stop_after) if stop_after else cfg.iters
    # the loader gets its own generator: drawing its base seed from the global RNG would shift dropout after a resume
    loader = torch.utils.data.DataLoader(batches, batch_size=local_bs, num_workers=cfg.num_workers,
                                         sampler=_Keys(start, stop, range(rank * local_bs, (rank + 1) * local_bs)),
                                         generator=torch.Generator().manual_seed(cfg.seed))
    log_file = run / "metrics.jsonl"
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run / "config.json", {**cfg.to_dict(), "environment": environment_info(),
                                                "world_size": world, "device": str(device)})
    log: list[dict] = []
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(total=stop - start, desc=f"train {cfg.run_name}", disable=not progress or rank != 0)
    it = start
    for it, (images, labels) in enumerate(loader, start):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        labels = mask_unseen(labels, held)
        warm = cfg.mode == "property" and it < cfg.onehot_warmup_iters
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            out = net(images, warmup=warm)
            loss = segmentation_loss(out, labels, sig, cfg.temperature, cfg.loss, cfg.aux_weight,
                                     name_bank=model.name_bank if cfg.mode == "name_embedding" else None)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        lr_now = opt.param_groups[-1]["lr"]  # the rate this step used
        scaler.step(opt)
        scaler.update()
        sched.step()
        value = loss.detach()
        if world > 1:
            torch.distributed.all_reduce(value)
            value /= world
        row = {"iteration": it + 1, "loss": float(value), "lr": lr_now,
               "phase": "one-hot" if warm else cfg.mode, "seconds": round(time.perf_counter() - t0, 3)}
        if (it + 1) % cfg.log_interval == 0 or it + 1 == stop:
            row.update(saturation(out, cfg.temperature))
        log.append(row)
        bar.update()
        if rank == 0:
            if (it + 1) % cfg.log_interval == 0 or it + 1 == stop:
                bar.set_postfix(loss=f"{row['loss']:.4f}")
            with open(log_file, "a") as f:
                f.write(json.dumps(row) + "\n")
            if (it + 1) % cfg.checkpoint_interval == 0 or it + 1 == cfg.iters:
                save_checkpoint(ckpt_path, model, opt, sched, it + 1, cfg, scaler)
        if world > 1:
            torch.distributed.barrier()
    bar.close()
    weights = run / "model.safetensors"
    if rank == 0 and stop == cfg.iters:
        from safetensors.torch import save

        atomic_write_bytes(weights, canonical_safetensors(save(
            {k: v.contiguous().cpu() for k, v in model.state_dict().items()},
            metadata={"config": json.dumps(cfg.to_dict()), "identity": identity["id"]})))
    if world > 1:
        torch.distributed.barrier()
    return TrainResult(run, weights, log, start, identity=identity["id"],
                       replaced=None if replaced is None else str(replaced))
