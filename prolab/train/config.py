"""The configuration of a training run: every knob, its validation, and the presets (``defaults.PRESETS``)."""
from __future__ import annotations

from dataclasses import dataclass, fields

from .. import defaults


@dataclass
class TrainConfig:
    """Every knob of a training run; the field defaults are the paper's (ADE20K, base model). Start from a
    preset with ``TrainConfig.preset("demo" | "paper", **overrides)``."""
    run_name: str = "run"
    dataset: str = "synthetic_outdoor"     # registered dataset, a dataset YAML (your own data), or "custom"
    data_root: str | None = None           # None for the embedded default (generated on first use)
    img_dir: str | None = None             # custom data only
    ann_dir: str | None = None
    classes: str | None = None             # custom data: class-list file
    img_suffix: str = ".jpg"
    seg_map_suffix: str = ".png"
    ignore_index: int = defaults.IGNORE_INDEX
    mode: str = "property"                 # property | category | name_embedding
    loss: str = defaults.LOSS               # cos_sigmoid | bce | cos (property); category mode uses cross-entropy
    property_space: str | None = None      # .safetensors of a PropertySpace; None: the committed default
    temperature: float = defaults.TEMPERATURE  # T in sigmoid(z / T); 0.01 with normalize=True
    normalize: bool = False                # L2-normalise the pixel embedding
    unseen: str = ""                       # comma-separated classes held out: ignored in training, scored at test
    name_embedder: str = defaults.EMBEDDER  # name_embedding mode: the sentence embedder of the class names
    backbone: str = defaults.BACKBONE
    pretrained: str | None = "offline"
    channels: int = 512
    aux_weight: float | None = None        # None: the release's effective weight for the mode (defaults.aux_weight_for)
    head_init: str = defaults.HEAD_INIT    # release: N(0, 0.01), zero bias on the embedding layer; pytorch: default
    normalize_bank: bool = defaults.NORMALIZE_BANK  # L2-normalise the property bank's rows at load (the release)
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

        if isinstance(self.unseen, (list, tuple)):  # a YAML list or a notebook parameter list
            self.unseen = ",".join(str(c).strip() for c in self.unseen)
        if self.unseen is None:
            self.unseen = ""
        if not isinstance(self.unseen, str):
            raise ValueError(f"training config: unseen = {self.unseen!r}: must be class names, comma-separated "
                             "(bus,boat) or a list")
        if self.aux_weight is None or (isinstance(self.aux_weight, str) and self.aux_weight.strip().lower() in
                                       ("none", "", "auto")):
            # resolved now, so the identity, the checkpoint and config.json record the number that was used
            self.aux_weight = defaults.aux_weight_for(self.mode) if self.mode in defaults.MODES else 0.4
        if isinstance(self.pretrained, str) and self.pretrained.strip().lower() in ("none", ""):
            self.pretrained = None  # "none" from a flag or a notebook parameter: random initialisation
        from ..validation import validate

        validate("train", self.to_dict(), where="training config")
        from ..datasets.spec import find_spec, is_spec_path, load_spec

        if is_spec_path(self.dataset):
            f = find_spec(self.dataset)
            load_spec(f)  # every key checked now, not at the first batch
            # the YAML says where the data is and what its labels mean: a flag that would be ignored is refused
            stray = {k: getattr(self, k) for k in ("data_root", "img_dir", "ann_dir", "classes") if getattr(self, k)}
            stray.update({k: getattr(self, k) for k, d in (("img_suffix", ".jpg"), ("seg_map_suffix", ".png"),
                                                            ("ignore_index", defaults.IGNORE_INDEX))
                          if getattr(self, k) != d})
            if stray:
                raise ValueError(f"training config: dataset = {self.dataset}: {', '.join(f'{k} = {v!r}' for k, v in stray.items())} "
                                 f"would be ignored: a dataset YAML sets them itself (edit {f.name})")
            # inside the checkout: stored relative to it, so a run's identity survives moving the checkout
            from .. import paths

            root = paths.repo_root()
            self.dataset = str(f.relative_to(root)) if f.is_relative_to(root) else str(f)
        elif self.dataset != "custom" and self.dataset not in DATASETS:
            raise ValueError(f"training config: dataset = {self.dataset!r}: must be a registered dataset "
                             f"({', '.join(DATASETS)}), a dataset YAML file (your own data: see "
                             "docs/howto/own-data.md) or 'custom' (with img_dir, ann_dir, classes)")
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
    def preset(cls, name: str, **overrides) -> "TrainConfig":
        """A preset (``defaults.PRESETS``: "demo", "paper") with ``overrides`` applied; ``None`` values keep
        the preset's value, so notebook parameters left at None never override it silently."""
        if name not in defaults.PRESETS:
            raise ValueError(f"preset = {name!r}: must be one of {', '.join(defaults.PRESETS)}")
        from ..presets import preset_values

        given = {k: v for k, v in overrides.items() if v is not None}
        return cls(**{**preset_values(name, given.get("dataset")), **given})

    @classmethod
    def demo(cls, **overrides) -> "TrainConfig":
        """The demo preset: the embedded default in about a minute on 2 CPU cores."""
        return cls.preset("demo", **overrides)

    def preset_changes(self, name: str) -> dict:
        """What preset ``name`` sets that differs from the paper's field defaults (printed at start)."""
        from ..presets import preset_values

        return {k: v for k, v in preset_values(name, self.dataset).items() if getattr(TrainConfig(), k, None) != v}

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


# One help line per field (the CLI's --help; units and meaning; defaults are added by the CLI from the preset).
HELP = {
    "run_name": "name of the run: its checkpoints go to <PROLAB_CACHE>/runs/<run_name>/",
    "dataset": "a registered dataset (see `prolab doctor`), a dataset YAML (your own data: "
               "docs/howto/own-data.md), or 'custom' with --img_dir/--ann_dir/--classes",
    "data_root": "folder holding a registered dataset's mmseg layout (not needed for the embedded default)",
    "img_dir": "'custom' only: image folder; put {split} where the split's folder name goes (images/{split})",
    "ann_dir": "'custom' only: label-map folder, with {split} like --img_dir",
    "classes": "'custom' only: class-list file (.txt, one name per line in label order, or .json)",
    "img_suffix": "'custom' only: image file ending (e.g. .jpg, .png, _leftImg8bit.png)",
    "seg_map_suffix": "'custom' only: label-map file ending (8-bit PNG of class indices)",
    "ignore_index": "'custom' only: the raw label value meaning 'not labelled' (a dataset YAML sets ignore_index)",
    "mode": "property: property supervision (ProLab); category: one-hot cross-entropy baseline; name_embedding: "
            "regress the sentence embedding of the class name (cosine loss; classes by cosine)",
    "loss": "property loss: cos_sigmoid (the paper's), bce or cos; category mode always uses cross-entropy",
    "property_space": "PropertySpace .safetensors written by `prolab properties`; none = the dataset's default space",
    "unseen": "comma-separated class names held out (e.g. bus,boat): their pixels are ignored in training, the "
              "property bank is built without their descriptions and their signatures come from assigning them "
              "to it; they are scored at test (the unseen-class protocol)",
    "name_embedder": "name_embedding mode: sentence embedder of the class names (an offline alias or a hub name)",
    "temperature": "T in sigmoid(z / T) of the property head (unitless)",
    "normalize": "L2-normalise the pixel embedding before the property bank (true/false)",
    "backbone": "timm model name of the encoder",
    "pretrained": "encoder weights: offline (packaged ImageNet weights), hub, a file path, or none",
    "channels": "width of the decode head (channels)",
    "aux_weight": "weight of the auxiliary head's loss; none = the release's effective weight: 1.0 for property "
                  "and name_embedding (its cosine loss ignores loss_weight), 0.4 for category (cross-entropy)",
    "head_init": "initialisation of the layer that makes the pixel embedding / logits (main and auxiliary "
                 "head): release = N(0, 0.01) weights, zero bias (mmseg's decode heads); pytorch = nn.Conv2d's "
                 "default",
    "normalize_bank": "L2-normalise every row of the property bank at load, as the release does (true/false)",
    "crop_size": "training crop side in pixels (square)",
    "scale": "resize target LONG SHORT in pixels, for training (before random scaling and cropping) and evaluation",
    "batch_size": "images per iteration, total over all processes",
    "iters": "training iterations",
    "lr": "base learning rate (AdamW)",
    "weight_decay": "AdamW weight decay (not applied to norms and biases)",
    "layer_decay": "layer-wise lr decay per backbone stage (1.0 = off; the paper uses 0.95 for ViT)",
    "warmup_iters": "linear lr warm-up iterations",
    "poly_power": "power of the poly lr decay after warm-up",
    "onehot_warmup_iters": "property mode: first train with one-hot category labels for this many iterations",
    "amp": "mixed precision on CUDA (true/false; ignored on CPU)",
    "seed": "random seed (data order, augmentation, initialisation)",
    "device": "auto, cpu, cuda, cuda:N or mps",
    "num_workers": "data-loading worker processes",
    "checkpoint_interval": "iterations between checkpoints (a killed run resumes from the last)",
    "log_interval": "iterations between log lines",
    "resume": "resume an unfinished run with the same inputs (true/false)",
}

# settings that may change between a run and its resume without changing what is computed
RESUME_FREE = {"resume", "device", "num_workers", "log_interval", "checkpoint_interval", "data_root", "run_name"}
