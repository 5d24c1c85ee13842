"""The numbers the ProLab paper reports, in one place, each with where it comes from.

Every value here is quoted from the paper (arXiv 2312.13764) or from the authors' release that accompanies it;
nothing is measured by this kit. Our own runs (CPU, embedded synthetic dataset, a few hundred iterations) are
compared against these in ``prolab.reports.tables`` and notebook 07: compare directions, not magnitudes.

The project's record of the paper does not keep table numbers, so sources name the experiment instead and say
"(table number not recorded in the facts file)". Fill in a table number only from the paper itself.

Public API
    CITATION, ARXIV_ID, NO_TABLE, cite(where)
    TRAINING                       TrainingSetting of the main results
    RELEASE_CONFIGS                {dataset: ReleaseConfig}: each dataset's settings in the release's configs
    MAIN_RESULTS                   tuple of MainResult (property-level ProLab vs category-level, mIoU)
    ABLATIONS                      {name: Ablation}: n_properties, loss, embedder, embedding_space, llm, prompt
    FRAMEWORKS                     tuple of FrameworkResult (DeepLabv3+, SegFormer)
    DESCRIPTOR_COUNTS              tuple of DescriptorCount (classes / descriptions / K of the release)
    LARGE_MODEL                    the ViT-L (BEiTv2) ADE20K number
    RELEASE_PROMPT                 ReleasePrompt: facts about the release's description prompt
    main_results(), ablation(name), ablation_frame(name), frameworks(), descriptor_counts(), descriptor_count(ds)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

ARXIV_ID = "2312.13764"
CITATION = ('Xiao et al., "A Semantic Space is Worth 256 Language Descriptions: Make Stronger Segmentation Models '
            f'with Descriptive Properties", arXiv {ARXIV_ID}, ECCV 2024')
NO_TABLE = "(table number not recorded in the facts file)"


def cite(where: str) -> str:
    """A short reference to one place of the paper: ``arXiv 2312.13764, <where>``."""
    return f"arXiv {ARXIV_ID}, {where}"


# --- the setting the main numbers are for ---------------------------------------------------------------------

@dataclass(frozen=True)
class TrainingSetting:
    """The paper's base training setup (ViT-Adapter-B + UperNet), the one its main results table is for."""
    backbone: str = "ViT-Adapter-B, initialised from DeiT-B/16 (ImageNet-1k), drop_path 0.3"
    decode_head: str = "UperNet, 512 channels, output d = 768 projected on the K-property bank"
    auxiliary_head: str = ("FCN, 256 channels, same property output; loss weight 0.4 in the configs, but the "
                           "release's cosine loss never applies it: property models train with 1.0")
    # the ADE20K config named "..._320k_..." inherits schedule_160k and sets no max_iters: it trains 160k
    iterations: int = 160_000
    batch_size: int = 16                   # 2 per GPU x 8 GPUs (Cityscapes and BDD: 1 x 8; RELEASE_CONFIGS)
    crop_size: dict[str, int] = field(default_factory=lambda: {
        "ADE20K": 512, "COCO-Stuff-164k": 512, "Pascal Context-59": 512, "Cityscapes": 768, "BDD": 768})
    optimizer: str = "AdamW, lr 6e-5, weight decay 0.01, layer-wise lr decay 0.95"
    schedule: str = "poly, power 1.0, 1500 linear warm-up iterations"
    precision: str = "fp16 for ADE20K and COCO-Stuff; fp32 for Pascal Context, Cityscapes and BDD"
    embedder: str = "BAAI/bge-base-en-v1.5 (768-d), attention-mask mean pooling, L2-normalised"
    llm: str = "gpt-3.5-turbo, temperature 0, structured prompt"
    clustering: str = "K-Means (scikit-learn, random_state 0)"
    n_properties: dict[str, int] = field(default_factory=lambda: {
        "ADE20K": 256, "COCO-Stuff-164k": 256, "Pascal Context-59": 128, "Cityscapes": 32, "BDD": 32})
    temperature: float = 0.04              # 0.01 in the configs that L2-normalise the pixel embedding
    test: str = "sliding window with the training crop size"
    source: str = cite("training setup of the experiments " + NO_TABLE)

    @property
    def short(self) -> str:
        return f"ViT-Adapter-B + UperNet, {self.iterations // 1000}k iterations, batch {self.batch_size}"


TRAINING = TrainingSetting()


@dataclass(frozen=True)
class ReleaseConfig:
    """One dataset's training and test settings as the authors' release configures them (its mmseg 0.x config,
    with what it inherits). The kit's ``paper`` preset (``prolab.presets``), ``configs/paper_<dataset>.yaml`` and
    ``configs/mmseg/prolab_<dataset>.py`` are made from these (a test checks they agree)."""
    config: str                            # the release's config file
    n_properties: int
    crop_size: int
    scale: tuple[int, int]                 # train resize target (long, short), ratio 0.5-2.0; also the test scale
    slide_stride: int                      # sliding-window test: window = crop_size
    samples_per_gpu: int
    gpus: int
    fp16: bool
    temperature: float
    normalize: bool                        # the pixel embedding L2-normalised before the bank
    iters: int = 160_000
    note: str = ""

    @property
    def batch_size(self) -> int:
        return self.samples_per_gpu * self.gpus


RELEASE_CONFIGS_SOURCE = "configs of the authors' release (lambert-x/ProLab, configs/<dataset>/)"
RELEASE_CONFIGS: dict[str, ReleaseConfig] = {
    "ade20k_150": ReleaseConfig("configs/ADE20K/upernet_deit_adapter_base_512_320k_ade20k_bge_base.py", 256, 512,
                                (2048, 512), 341, 2, 8, True, 0.04, False,
                                note="named 320k, but inherits schedule_160k without max_iters: 160k iterations"),
    "coco_stuff_171": ReleaseConfig("configs/COCO_Stuff/upernet_deit_adapter_base_512_160k_coco_stuff_bge_base.py",
                                    256, 512, (2048, 512), 341, 2, 8, True, 0.01, True),
    "pascal_context_59": ReleaseConfig("configs/Pascal_Context/ (ViT-Adapter-B, 160k)", 128, 512, (2048, 512), 341,
                                       2, 8, False, 0.04, False),
    "cityscapes_19": ReleaseConfig("configs/Cityscapes/ (ViT-Adapter-B, 160k)", 32, 768, (2048, 1024), 512, 1, 8,
                                   False, 0.04, False),
    "bdd100k_19": ReleaseConfig("configs/BDD/ (ViT-Adapter-B, 160k; shares the Cityscapes property bank)", 32, 768,
                                (2048, 1024), 512, 1, 8, False, 0.04, False),
}


def release_config(dataset: str) -> ReleaseConfig:
    try:
        return RELEASE_CONFIGS[dataset]
    except KeyError:
        raise KeyError(f"no release config for {dataset!r}; known: {', '.join(RELEASE_CONFIGS)}") from None


# --- main results ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MainResult:
    """mIoU of one dataset: property-level supervision (ProLab) vs category-level supervision, same network."""
    dataset: str
    prolab: float
    category: float

    @property
    def gain(self) -> float:
        return round(self.prolab - self.category, 1)


MAIN_RESULTS_SOURCE = cite("main results, property-level (ProLab) vs category-level supervision " + NO_TABLE)
MAIN_RESULTS: tuple[MainResult, ...] = (
    MainResult("ADE20K", 49.0, 48.4),
    MainResult("COCO-Stuff-164k", 45.4, 43.1),
    MainResult("Pascal Context-59", 58.2, 53.3),
    MainResult("Cityscapes", 81.4, 79.9),
    MainResult("BDD", 65.7, 60.7),
)


def main_result(dataset: str) -> MainResult:
    for r in MAIN_RESULTS:
        if r.dataset == dataset:
            return r
    raise KeyError(f"no main result for {dataset!r}; known: {', '.join(r.dataset for r in MAIN_RESULTS)}")


def main_results() -> pd.DataFrame:
    """The main results as a table (one row per dataset); ``.attrs`` holds the source and the setting."""
    df = pd.DataFrame([{"dataset": r.dataset, "ProLab (property-level)": r.prolab, "category-level": r.category,
                        "gain": r.gain} for r in MAIN_RESULTS])
    df.attrs.update(source=MAIN_RESULTS_SOURCE, setting=TRAINING.short, metric="mIoU (%)")
    return df


# --- ablations ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ablation:
    """One ablation of the paper.

    ``values``: mIoU per setting, where the paper's numbers are recorded. ``ordering``: settings best first,
    where only the order is recorded; ``margin``: the gap between the first two ("about"), if recorded.
    """
    name: str
    dataset: str
    source: str
    values: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)     # setting key -> the paper's wording
    ordering: tuple = ()
    margin: float | None = None
    note: str = ""

    def order(self) -> tuple:
        """Settings best first: the recorded ordering, else sorted by the recorded mIoU."""
        if self.ordering:
            return self.ordering
        return tuple(sorted(self.values, key=lambda k: -self.values[k]))

    def summary(self) -> str:
        """One line, e.g. ``cos_sigmoid 47.7 > bce 47.4 > cos 47.3`` or ``structured > naive by about 0.2``."""
        if self.values:
            text = " > ".join(f"{self.labels.get(k, k)} {self.values[k]:.1f}" for k in self.order())
        else:
            text = " > ".join(str(self.labels.get(k, k)) for k in self.order())
        if self.margin is not None:
            text += f" by about {self.margin:g}"
        return text


ABLATIONS: dict[str, Ablation] = {a.name: a for a in [
    Ablation("n_properties", "ADE20K", cite("ablation on the number of properties K, ADE20K " + NO_TABLE),
             values={64: 47.8, 128: 48.0, 256: 48.3, 512: 47.6},
             labels={64: "K=64", 128: "K=128", 256: "K=256", 512: "K=512"},
             note="best around K = descriptions/6 to descriptions/8 (ADE20K has 1478 descriptions)"),
    Ablation("loss", "not recorded in the facts file", cite("ablation of the loss " + NO_TABLE),
             values={"cos_sigmoid": 47.7, "bce": 47.4, "cos": 47.3},
             labels={"cos_sigmoid": "cosine similarity with sigmoid", "bce": "BCE",
                     "cos": "cosine similarity without sigmoid"}),
    Ablation("embedder", "not recorded in the facts file", cite("ablation of the description embedder " + NO_TABLE),
             ordering=("bge-base", "bge-small", "st-base", "st-small"),
             labels={"bge-base": "BGE-base", "bge-small": "BGE-small", "st-base": "Sentence-Transformers base",
                     "st-small": "Sentence-Transformers small"},
             note="only the ordering is recorded"),
    Ablation("embedding_space", "not recorded in the facts file (49.0 equals the ADE20K main result)",
             cite("comparison of embedding spaces " + NO_TABLE),
             values={"bge_property": 49.0, "clip_category": 48.6, "bge_category": 47.7},
             labels={"bge_property": "BGE + property space", "clip_category": "CLIP + category space",
                     "bge_category": "BGE + category space"}),
    Ablation("llm", "not recorded in the facts file", cite("ablation of the LLM that writes descriptions " + NO_TABLE),
             ordering=("gpt-3.5", "llama2-7b"), margin=0.5,
             labels={"gpt-3.5": "GPT-3.5", "llama2-7b": "LLaMA2-7B"}, note="gap in mIoU, only approximately recorded"),
    Ablation("prompt", "not recorded in the facts file", cite("ablation of the prompt " + NO_TABLE),
             ordering=("structured", "naive"), margin=0.2,
             labels={"structured": "structured", "naive": "naive"},
             note="gap in mIoU, only approximately recorded; naive = 'describe <category>'"),
]}


def ablation(name: str) -> Ablation:
    try:
        return ABLATIONS[name]
    except KeyError:
        raise KeyError(f"no ablation {name!r} recorded; known: {', '.join(ABLATIONS)}") from None


def ablation_frame(name: str) -> pd.DataFrame:
    """One ablation as a table: setting, the paper's wording, mIoU (empty where only the order is recorded)."""
    a = ablation(name)
    df = pd.DataFrame([{"setting": k, "paper's name": a.labels.get(k, str(k)), "mIoU": a.values.get(k)}
                       for k in a.order()])
    df.attrs.update(source=a.source, dataset=a.dataset, summary=a.summary(), note=a.note)
    return df


# --- other frameworks, a large model, the release ---------------------------------------------------------------

@dataclass(frozen=True)
class FrameworkResult:
    """mIoU of another segmentation framework with category-level supervision, then with ProLab."""
    framework: str
    category: float
    prolab: float

    @property
    def gain(self) -> float:
        return round(self.prolab - self.category, 1)


FRAMEWORKS_SOURCE = cite("ProLab on other segmentation frameworks " + NO_TABLE)
FRAMEWORKS: tuple[FrameworkResult, ...] = (
    FrameworkResult("DeepLabv3+", 42.7, 43.6),
    FrameworkResult("SegFormer", 41.5, 42.3),
)


def frameworks() -> pd.DataFrame:
    df = pd.DataFrame([{"framework": r.framework, "category-level": r.category, "ProLab": r.prolab, "gain": r.gain}
                       for r in FRAMEWORKS])
    df.attrs.update(source=FRAMEWORKS_SOURCE, metric="mIoU (%)")
    return df


@dataclass(frozen=True)
class SingleResult:
    """One reported number with its setting."""
    what: str
    value: float
    source: str


LARGE_MODEL = SingleResult("ADE20K, ViT-L (BEiTv2-L adapter), crop 896, mIoU", 58.7,
                           cite("results with large models " + NO_TABLE))


@dataclass(frozen=True)
class DescriptorCount:
    """Size of one descriptor file of the authors' release, and the K the paper uses for that dataset."""
    dataset: str
    classes: int
    descriptions: int
    n_properties: int

    @property
    def per_class(self) -> float:
        return self.descriptions / self.classes

    @property
    def per_property(self) -> float:
        """Descriptions per property, n/K."""
        return self.descriptions / self.n_properties


DESCRIPTOR_COUNTS_SOURCE = (f"descriptor files of the authors' release accompanying arXiv {ARXIV_ID} "
                            "(Cityscapes and BDD share one file)")
DESCRIPTOR_COUNTS: tuple[DescriptorCount, ...] = (
    DescriptorCount("ADE20K", 150, 1478, 256),
    DescriptorCount("COCO-Stuff-164k", 171, 1671, 256),
    DescriptorCount("Pascal Context-59", 59, 584, 128),
    DescriptorCount("Cityscapes / BDD", 19, 186, 32),
)


@dataclass(frozen=True)
class ReleasePrompt:
    """The release's description prompt, as facts about it. Its wording is the authors' and is not reproduced
    here; the kit's prompts (``descriptors/prompts/``) are written in our own words to the same structure."""
    content_order: tuple[str, ...] = ("a general description of the object or scene",
                                      "shape, orientation and primary physical characteristics",
                                      "material, texture or typical colours",
                                      "common features or elements associated with it",
                                      "additional details, variations or environmental context")
    examples: tuple[str, ...] = ("wall", "building", "sky", "floor")
    lines_per_example: str = "5-8"
    examples_as: str = "written out in the prompt, before the request to apply the format to the category"
    lines_asked: str = "no count recorded in the facts file"
    system: str = "a plain system message"
    kept: str = "lines that start with '- ', the prefix stripped"
    class_names: str = "underscores become spaces"
    model: str = "gpt-3.5-turbo, temperature 0"
    retries: str = "on API errors only, random exponential back-off"
    source: str = cite("description prompt " + NO_TABLE) + ", and the authors' release"


RELEASE_PROMPT = ReleasePrompt()


def descriptor_count(dataset: str) -> DescriptorCount:
    for d in DESCRIPTOR_COUNTS:
        if dataset == d.dataset or dataset in d.dataset.split(" / "):
            return d
    raise KeyError(f"no descriptor count for {dataset!r}; known: {', '.join(d.dataset for d in DESCRIPTOR_COUNTS)}")


def descriptor_counts() -> pd.DataFrame:
    df = pd.DataFrame([{"dataset": d.dataset, "classes": d.classes, "descriptions": d.descriptions,
                        "per class": round(d.per_class, 1), "K": d.n_properties,
                        "descriptions per property": round(d.per_property, 1)} for d in DESCRIPTOR_COUNTS])
    df.attrs.update(source=DESCRIPTOR_COUNTS_SOURCE)
    return df
