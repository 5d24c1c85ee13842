"""The one home of the kit's defaults and choices; every other module imports them from here.

Stage 1 (descriptions): the offline LLM and the prompt. Stage 2 (properties): the embedder, the clustering
method and the rule for K. Stage 3 (segmentation): the loss names, the ignore index, the sigmoid temperature
and the training presets. Changing a default here changes it for the CLI, the notebooks, the grid and the API.
"""
from __future__ import annotations

# --- stage 1 ------------------------------------------------------------------------------------------------
LLM = "qwen2.5-coder-1.5b-instruct-q4_k_m"   # the packaged Qwen2.5-Coder-1.5B-Instruct GGUF (offline)
PROMPT = "structured"
BACKENDS = ("replay", "llama_cpp", "openai", "transformers")

# --- stage 2 ------------------------------------------------------------------------------------------------
EMBEDDER = "all-MiniLM-L6-v2"                # offline; the paper uses BAAI/bge-base-en-v1.5
EMBEDDER_KIND = "sentence-transformers"
EMBEDDER_KINDS = ("sentence-transformers", "flag", "release")
METHOD = "kmeans"
METHODS = ("kmeans", "gmm", "vmf")
DESCRIPTIONS_PER_PROPERTY = 6                # the paper's K is about one property per 5-6 descriptions


def n_properties_rule(n_descriptions: int) -> int:
    """K for a class list without a paper value: about one property per six descriptions (at least 2)."""
    return max(2, round(n_descriptions / DESCRIPTIONS_PER_PROPERTY))


# --- stage 3 ------------------------------------------------------------------------------------------------
PROPERTY_LOSSES = ("cos_sigmoid", "bce", "cos")
CATEGORY_LOSS = "ce"
LOSS = "cos_sigmoid"
MODES = ("property", "category", "name_embedding")   # name_embedding: regress the class name's sentence embedding
IGNORE_INDEX = 255
TEMPERATURE = 0.04                           # T in sigmoid(z / T); the paper uses 0.01 with normalised e
BACKBONE = "mobilenetv2_100"                 # offline ImageNet weights ship in a package
# The layer that makes the pixel embedding (mmseg's conv_seg, main and auxiliary head): the release inherits
# mmseg 0.x BaseDecodeHead's init_cfg, N(0, 0.01) weights and zero bias. "pytorch" keeps nn.Conv2d's default
# (kaiming-uniform), the kit's behaviour before it was compared with the release: std(z/T) about 7 at step 0.
HEAD_INITS = ("release", "pytorch")
HEAD_INIT = "release"
# The release L2-normalises every row of the property bank when it loads it; raw K-Means centres (norms 0.6-1.0)
# would give each property its own effective temperature.
NORMALIZE_BANK = True


def aux_weight_for(mode: str) -> float:
    """The auxiliary head's effective loss weight in the release. Its configs say 0.4 for both heads, but its
    cosine loss (``CosineSimilarityLoss``) stores ``loss_weight`` and never applies it, so its property models
    train with 1.0; category models go through mmseg's cross-entropy, which applies 0.4. The class-name-embedding
    baseline uses the same cosine loss as the property head, hence 1.0 too."""
    return 0.4 if mode == "category" else 1.0


# Training presets live in ``prolab.presets``: a preset is a set of config values, and a run's identity holds
# its resolved config, so presets are kept out of the hashed training code (``prolab.identity``).
from .presets import PRESETS  # noqa: E402,F401
