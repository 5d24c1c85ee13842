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
from tqdm.auto import tqdm

from .. import paths
from ..files import atomic_write_bytes, atomic_write_json, clean_stale_temps, environment_info, utc_now
from .losses import segmentation_loss
from .model import ModelDefaults, SegModel


@dataclass
class TrainConfig:
    """Every knob of a training run; defaults are the paper's (ADE20K, base model). ``demo()`` is tiny."""
    run_name: str = "run"
    dataset: str = "synthetic_outdoor"     # registered dataset, or "custom" with img_dir/ann_dir/classes
    data_root: str | None = None           # None for the embedded default (generated on first use)
    img_dir: str | None = None             # custom data only
    ann_dir: str | None = None
    classes: str | None = None             # custom data: class-list file
    img_suffix: str = ".jpg"
    seg_map_suffix: str = ".png"
    ignore_index: int = 255
    mode: str = "property"                 # property | category
    loss: str = "cos_sigmoid"              # cos_sigmoid | bce | cos (property); category mode uses cross-entropy
    property_space: str | None = None      # .safetensors of a PropertySpace; None: the committed default
    temperature: float = 0.04              # T in sigmoid(z / T); 0.01 with normalize=True
    normalize: bool = False                # L2-normalise the pixel embedding
    backbone: str = "mobilenetv2_100"
    pretrained: str | None = "offline"
    channels: int = 512
    aux_weight: float = 0.4
    crop_size: int = 512
    scale: tuple[int, int] = (2048, 512)
    batch_size: int = 16                   # total over all processes
    iters: int = 160_000
    lr: float = 6e-5
    weight_decay: float = 0.01
    layer_decay: float = 1.0               # 0.95 for ViT backbones in the paper; 1.0 = off
    warmup_iters: int = 1500
    poly_power: float = 1.0
    onehot_warmup_iters: int = 0           # property mode: first train with one-hot labels for this many iters
    amp: bool = True                       # used on CUDA only
    seed: int = 0
    device: str = "auto"                   # auto | cpu | cuda | mps
    num_workers: int = 0
    checkpoint_interval: int = 1000
    log_interval: int = 10
    resume: bool = True

    def __post_init__(self):
        from ..datasets import DATASETS
        from ..validation import validate

        validate("train", self.to_dict(), where="training config")
        if self.dataset != "custom" and self.dataset not in DATASETS:
            raise ValueError(f"training config: dataset = {self.dataset!r}: must be a registered dataset "
                             f"({', '.join(DATASETS)}) or 'custom' (with img_dir, ann_dir, classes)")
        if self.dataset == "custom" and not (self.img_dir and self.ann_dir and self.classes):
            raise ValueError("training config: dataset = 'custom' needs img_dir, ann_dir and classes")
        if self.mode == "property" and self.dataset == "custom" and not self.property_space:
            raise ValueError(
                "training config: a custom dataset needs a property space in property mode (the kit has no "
                "default one for your classes). Build it from your class list, then pass --property_space:\n"
                f"  prolab describe --dataset {self.classes} --backend llama_cpp\n"
                f"  prolab properties --dataset {self.classes} --descriptor_file <the descriptor file it printed>\n"
                "  prolab train ... --property_space <the .safetensors file it printed>")

    @classmethod
    def demo(cls, **overrides) -> "TrainConfig":
        """A setting that trains on the embedded default in about a minute on 2 CPU cores."""
        base = dict(dataset="synthetic_outdoor", channels=64, crop_size=128, scale=(256, 128), batch_size=8,
                    iters=60, lr=1e-3, warmup_iters=10, checkpoint_interval=20, log_interval=5)
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}")
        d = dict(d)
        if "scale" in d:
            d["scale"] = tuple(d["scale"])
        return cls(**d)


# settings that may change between a run and its resume without changing what is computed
RESUME_FREE = {"resume", "device", "num_workers", "log_interval", "checkpoint_interval", "data_root", "run_name"}


# --- data ----------------------------------------------------------------------------------------------------

def open_split(cfg: TrainConfig, split: str, transform=None):
    from ..datasets.layouts import custom_dataset, open_dataset

    if cfg.dataset == "custom":
        if not (cfg.img_dir and cfg.ann_dir and cfg.classes):
            raise ValueError("dataset='custom' needs img_dir, ann_dir and classes")
        if split != "train" and "{split}" not in cfg.img_dir:
            import warnings

            warnings.warn(f"custom data: img_dir {cfg.img_dir!r} has no {{split}} placeholder, so the {split!r} "
                          "split is the training folder itself", stacklevel=2)
        sub = lambda p: str(paths.resolve(p)).replace("{split}", split)  # noqa: E731
        return custom_dataset(sub(cfg.img_dir), sub(cfg.ann_dir), paths.resolve(cfg.classes), cfg.img_suffix,
                              cfg.seg_map_suffix, cfg.ignore_index, transform=transform)
    root = cfg.data_root
    if cfg.dataset == "synthetic_outdoor" and root is None:
        from ..datasets import synthetic

        root = synthetic.generate()
    if root is None:
        raise ValueError(f"dataset {cfg.dataset!r} needs data_root (the folder holding its mmseg layout)")
    return open_dataset(cfg.dataset, paths.resolve(root), split, transform)


def eval_split(cfg: TrainConfig, split: str = "val"):
    """The evaluation split with the eval transform (resize to the test scale, normalise)."""
    from ..datasets.transforms import EvalTransform

    return open_split(cfg, split, EvalTransform(tuple(cfg.scale)))


class _Batches(torch.utils.data.Dataset):
    """Item (iteration, slot) -> one augmented sample; slot j of iteration i is sample number i*B + j of an
    endless sequence of seeded permutations."""

    def __init__(self, ds, transform, batch_size: int, seed: int):
        self.ds, self.transform, self.bs, self.seed = ds, transform, batch_size, seed

    def index(self, it: int, slot: int) -> int:
        pos = it * self.bs + slot
        epoch, k = divmod(pos, len(self.ds))
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return int(torch.randperm(len(self.ds), generator=g)[k])

    def __len__(self):
        return 2 ** 62

    def __getitem__(self, key):
        it, slot = key
        img, label = self.ds.load(self.index(it, slot))
        return self.transform(img, label, np.random.default_rng([self.seed, it, slot]))


class _Keys(torch.utils.data.Sampler):
    def __init__(self, start: int, stop: int, slots: range):
        self.start, self.stop, self.slots = start, stop, slots

    def __iter__(self):
        return ((it, j) for it in range(self.start, self.stop) for j in self.slots)

    def __len__(self):
        return (self.stop - self.start) * len(self.slots)


# --- optimisation ----------------------------------------------------------------------------------------------

def _layer_id(name: str, n_layers: int) -> int:
    if not name.startswith("backbone."):
        return n_layers + 1
    m = re.search(r"(?:blocks|stages|layers?)[._](\d+)", name)
    return int(m.group(1)) + 1 if m else 0


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


def load_space_for(cfg: TrainConfig, class_names: list[str]):
    from ..properties import PropertySpace

    path = paths.resolve(cfg.property_space) if cfg.property_space else default_property_space(cfg.dataset)
    if not cfg.property_space:  # record the resolved space, so a resume or load_trained uses the very same one
        root = paths.repo_root()
        cfg.property_space = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    space = PropertySpace.load(path)
    if space.class_names != class_names:
        raise ValueError(f"property space {Path(path).name} is for classes {space.class_names[:3]}..., "
                         f"not the dataset's {class_names[:3]}...")
    return space, path


def default_property_space(dataset: str) -> Path:
    """The kit's default space of a dataset: Qwen/structured descriptors, MiniLM, K-Means seed 0, the paper's K
    (committed for the paper datasets and the embedded default; built on first use otherwise)."""
    from ..datasets import DATASETS
    from ..properties import build_property_space, default_descriptor_file

    dfile = default_descriptor_file(dataset)
    path = paths.property_space_path(dataset, dfile.stem, "all-minilm-l6-v2__st", "kmeans-s0",
                                     DATASETS[dataset].n_properties)
    if path.exists():
        return path
    return build_property_space(dataset, progress=False).path


@dataclass
class TrainResult:
    run_dir: Path
    weights: Path
    log: list[dict] = field(default_factory=list)
    resumed_from: int = 0


def _dist_info():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def build_model(cfg: TrainConfig, class_names: list[str]):
    space = None
    if cfg.mode == "property":
        space, _ = load_space_for(cfg, class_names)
    md = ModelDefaults(backbone=cfg.backbone, pretrained=cfg.pretrained, channels=cfg.channels,
                       aux_channels=max(32, cfg.channels // 2), use_aux=cfg.aux_weight > 0)
    model = SegModel(len(class_names), cfg.mode, None if space is None else torch.from_numpy(space.bank),
                     None if space is None else torch.from_numpy(space.signatures.astype(np.float32)),
                     cfg.temperature, cfg.normalize, md)
    return model, space


def train(cfg: TrainConfig, progress: bool = True, stop_after: int | None = None) -> TrainResult:
    """Run (or resume) training. ``stop_after`` ends the process's work after that iteration (tests)."""
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

    if world > 1 and rank != 0:
        torch.distributed.barrier()  # rank 0 generates data / builds the property space first
    ds = open_split(cfg, "train")
    if rank == 0:  # every file is checked now, not at the iteration that meets a bad one
        ds.check_files(progress=progress)
    model, space = build_model(cfg, ds.class_names)
    if world > 1 and rank == 0:
        torch.distributed.barrier()
    model.to(device)
    sig = model.signatures if cfg.mode == "property" else None
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: lr_factor(it, cfg))  # groups keep their lr scale
    run = paths.run_dir(cfg.run_name)
    ckpt_path = paths.checkpoint_path(cfg.run_name)
    start = 0
    if rank == 0:
        clean_stale_temps(run)  # half-written checkpoints of a killed run
    resume_from = ckpt_path
    if cfg.resume and not ckpt_path.exists() and previous_checkpoint_path(ckpt_path).exists():
        resume_from = previous_checkpoint_path(ckpt_path)  # killed between keeping the old one and writing the new
    if cfg.resume and resume_from.exists():
        ck = load_checkpoint(resume_from)
        saved = {k: v for k, v in ck["config"].items() if k not in RESUME_FREE}
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
        warm = cfg.mode == "property" and it < cfg.onehot_warmup_iters
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            out = net(images, warmup=warm)
            loss = segmentation_loss(out, labels, sig, cfg.temperature, cfg.loss, cfg.aux_weight)
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

        atomic_write_bytes(weights, save({k: v.contiguous().cpu() for k, v in model.state_dict().items()},
                                         metadata={"config": json.dumps(cfg.to_dict())}))
    if world > 1:
        torch.distributed.barrier()
    return TrainResult(run, weights, log, start)


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
    ds = open_split(cfg, "train")
    model, _ = build_model(replace(cfg, pretrained=None), ds.class_names)
    model.load_state_dict(state)
    return model.to(device).eval(), cfg, ds.class_names
