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

# Training presets: "paper" is the paper's ADE20K schedule for the base model; "demo" trains the embedded
# default in about a minute on 2 CPU cores. A preset is a starting point: any field can be overridden.
PRESETS: dict[str, dict] = {
    "paper": {},   # TrainConfig's own field defaults are the paper's
    "demo": dict(dataset="synthetic_outdoor", channels=64, crop_size=128, scale=(256, 128), batch_size=8,
                 iters=60, lr=1e-3, warmup_iters=10, checkpoint_interval=20, log_interval=5),
}
