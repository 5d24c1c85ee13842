"""The configuration of a training run in one place: every field with its type, default, one help line and
its validation rule (``knob``); the CLI's ``prolab train`` flags, the notebooks' and grids' rules for training
settings (``RULES``), ``HELP`` and the docs' configuration reference are all read from these fields. Presets
(``defaults.PRESETS``) are starting values over the field defaults (the paper's).

Why a dataclass with rules and not a pydantic model: a run's identity is the hash of its resolved config, so the
values must be recorded exactly as given; pydantic's lax mode coerces (``lr: 1`` becomes ``1.0``, a different
hash) and its strict mode refuses what configs legitimately say (a YAML list for ``scale``, an integer for a
float). The rules check type, range and choices without changing a value, with the kit's "did you mean" hints.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from .. import defaults
from ..checks import PATHLIKE, PATHLIKE_REQUIRED, SEED, SUFFIX, Rule, check_all


def knob(default, rule: Rule, help: str):
    """A config field: its default, its validation rule and its help line (units and meaning)."""
    return field(default=default, metadata={"rule": rule, "help": help})


def _class_names(v) -> str | None:
    return None if isinstance(v, (str, list, tuple)) else "class names, comma-separated (bus,boat) or a list"


@dataclass
class TrainConfig:
    """Every knob of a training run; the field defaults are the paper's (ADE20K, base model). Start from a
    preset with ``TrainConfig.preset("demo" | "paper", **overrides)``."""
    run_name: str = knob("run", Rule(str),
        'name of the run: its checkpoints go to <PROLAB_CACHE>/runs/<run_name>/')
    dataset: str = knob("synthetic_outdoor", PATHLIKE_REQUIRED,
        'a registered dataset (see `prolab doctor`), a dataset YAML (your own data: docs/howto/own-data.md), or '
        "'custom' with --img_dir/--ann_dir/--classes")
    data_root: str | None = knob(None, PATHLIKE,
        "folder holding a registered dataset's mmseg layout (not needed for the embedded default)")
    img_dir: str | None = knob(None, PATHLIKE,
        "'custom' only: image folder; put {split} where the split's folder name goes (images/{split})")
    ann_dir: str | None = knob(None, PATHLIKE,
        "'custom' only: label-map folder, with {split} like --img_dir")
    classes: str | None = knob(None, PATHLIKE,
        "'custom' only: class-list file (.txt, one name per line in label order, or .json)")
    img_suffix: str = knob(".jpg", SUFFIX,
        "'custom' only: image file ending (e.g. .jpg, .png, _leftImg8bit.png)")
    seg_map_suffix: str = knob(".png", SUFFIX,
        "'custom' only: label-map file ending (8-bit PNG of class indices)")
    ignore_index: int = knob(defaults.IGNORE_INDEX, Rule(int, min=0, max=255),
        "'custom' only: the raw label value meaning 'not labelled' (a dataset YAML sets ignore_index)")
    mode: str = knob("property", Rule(str, choices=defaults.MODES),
        'property: property supervision (ProLab); category: one-hot cross-entropy baseline; name_embedding: '
        'regress the sentence embedding of the class name (cosine loss; classes by cosine)')
    loss: str = knob(defaults.LOSS, Rule(str, choices=defaults.PROPERTY_LOSSES),
        "property loss: cos_sigmoid (the paper's), bce or cos; category mode always uses cross-entropy")
    property_space: str | None = knob(None, PATHLIKE,
        "PropertySpace .safetensors written by `prolab properties`; none = the dataset's default space")
    temperature: float = knob(defaults.TEMPERATURE, Rule(float, min=0, above=True, max=10),
        'T in sigmoid(z / T) of the property head (unitless)')
    normalize: bool = knob(False, Rule(bool),
        'L2-normalise the pixel embedding before the property bank (true/false)')
    unseen: str = knob("", Rule(object, accept=_class_names),
        'comma-separated class names held out (e.g. bus,boat): their pixels are ignored in training, the property'
        ' bank is built without their descriptions and their signatures come from assigning them to it; they are '
        'scored at test (the unseen-class protocol)')
    name_embedder: str = knob(defaults.EMBEDDER, Rule(str),
        'name_embedding mode: sentence embedder of the class names (an offline alias or a hub name)')
    backbone: str = knob(defaults.BACKBONE, Rule(str),
        'timm model name of the encoder')
    pretrained: str | None = knob("offline", Rule(str, nullable=True),
        'encoder weights: offline (packaged ImageNet weights), hub, a file path, or none')
    channels: int = knob(512, Rule(int, min=1),
        'width of the decode head (channels)')
    aux_weight: float | None = knob(None, Rule(float, min=0, nullable=True),
        "weight of the auxiliary head's loss; none = the release's effective weight: 1.0 for property and "
        'name_embedding (its cosine loss ignores loss_weight), 0.4 for category (cross-entropy)')
    head_init: str = knob(defaults.HEAD_INIT, Rule(str, choices=defaults.HEAD_INITS),
        'initialisation of the layer that makes the pixel embedding / logits (main and auxiliary head): release ='
        " N(0, 0.01) weights, zero bias (mmseg's decode heads); pytorch = nn.Conv2d's default")
    normalize_bank: bool = knob(defaults.NORMALIZE_BANK, Rule(bool),
        'L2-normalise every row of the property bank at load, as the release does (true/false)')
    crop_size: int = knob(512, Rule(int, min=8),
        'training crop side in pixels (square)')
    scale: tuple[int, int] = knob((2048, 512), Rule(list, length=2, item=int, min=8),
        'resize target LONG SHORT in pixels, for training (before random scaling and cropping) and evaluation')
    batch_size: int = knob(16, Rule(int, min=1),
        'images per iteration, total over all processes')
    iters: int = knob(160_000, Rule(int, min=1),
        'training iterations')
    lr: float = knob(6e-5, Rule(float, min=0, above=True, max=10),
        'base learning rate (AdamW)')
    weight_decay: float = knob(0.01, Rule(float, min=0),
        'AdamW weight decay (not applied to norms and biases)')
    layer_decay: float = knob(1.0, Rule(float, min=0, above=True, max=1),
        'layer-wise lr decay per backbone stage (1.0 = off; the paper uses 0.95 for ViT)')
    warmup_iters: int = knob(1500, Rule(int, min=0),
        'linear lr warm-up iterations')
    poly_power: float = knob(1.0, Rule(float, min=0),
        'power of the poly lr decay after warm-up')
    onehot_warmup_iters: int = knob(0, Rule(int, min=0),
        'property mode: first train with one-hot category labels for this many iterations')
    amp: bool = knob(True, Rule(bool),
        'mixed precision on CUDA (true/false; ignored on CPU)')
    seed: int = knob(0, SEED,
        'random seed (data order, augmentation, initialisation)')
    device: str = knob("auto", Rule(str, pattern=r"auto|cpu|mps|cuda(:\d+)?",
                                    pattern_help="auto, cpu, mps, cuda or cuda:N"),
        'auto, cpu, cuda, cuda:N or mps')
    num_workers: int = knob(0, Rule(int, min=0, max=64),
        'data-loading worker processes')
    checkpoint_interval: int = knob(1000, Rule(int, min=1),
        'iterations between checkpoints (a killed run resumes from the last)')
    log_interval: int = knob(10, Rule(int, min=1),
        'iterations between log lines')
    resume: bool = knob(True, Rule(bool),
        'resume an unfinished run with the same inputs (true/false)')
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
        check_all(RULES, self.to_dict(), where="training config")
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
                said = ", ".join(f"{k} = {v!r}" for k, v in stray.items())
                raise ValueError(f"training config: dataset = {self.dataset}: {said} "
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
# derived from the fields: one help line and one rule per field (and the preset's choice), for the CLI's flags,
# the notebooks' and grids' parameter rules and the docs' configuration reference
HELP = {f.name: f.metadata["help"] for f in fields(TrainConfig)}
RULES = {**{f.name: f.metadata["rule"] for f in fields(TrainConfig)},
         "preset": Rule(str, choices=tuple(defaults.PRESETS))}

# settings that may change between a run and its resume without changing what is computed
RESUME_FREE = {"resume", "device", "num_workers", "log_interval", "checkpoint_interval", "data_root", "run_name"}
