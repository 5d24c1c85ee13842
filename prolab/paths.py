"""The one place that names every artefact of the pipeline.

Each stage reads the previous stage's artefact from disk and writes its own; every file name is built here
from the parameters that produced it, so notebooks, the CLI and tests never spell a path by hand.

Two roots:
- the repository (``repo_root()``): committed artefacts -- prompts, descriptor files, the LLM call cache,
  results. Override with ``PROLAB_ROOT`` to point the kit at another checkout or a scratch copy.
- the user cache (``cache_root()``): large things rebuilt on demand -- assembled offline models, embedding
  caches, checkpoints. Override with ``PROLAB_CACHE`` (default ``~/.cache/prolab``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """Root holding ``descriptors/`` and ``results/`` (the checkout, unless ``PROLAB_ROOT`` says otherwise)."""
    env = os.environ.get("PROLAB_ROOT")
    return Path(env).expanduser().resolve() if env else _PACKAGE_DIR.parent


def resolve(path: str | os.PathLike) -> Path:
    """A user-given path: absolute as is, relative to the repository root otherwise (notebooks run in
    notebooks/, the CLI anywhere: one rule for both)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else repo_root() / p


def cache_root() -> Path:
    env = os.environ.get("PROLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prolab"


def extensions_dir() -> Path:
    """Where compiled kernels (``segment.fused``) are built: ``$PROLAB_EXTENSIONS``, else
    ``$PROLAB_CACHE/torch_extensions``. Tests point it at one folder so their scratch caches share one build."""
    env = os.environ.get("PROLAB_EXTENSIONS")
    return Path(env).expanduser() if env else cache_root() / "torch_extensions"


def output_root(given: str | os.PathLike | None, kind: str) -> Path:
    """Where a notebook writes its artefacts: the given folder (relative to the repository root), else
    ``$PROLAB_CACHE/<kind>``, so stepping through the notebooks never rewrites committed files (those change
    only through the regeneration commands, which name their folders)."""
    return resolve(given) if given else cache_root() / kind


def portable(path: str | os.PathLike) -> str:
    """A path as it should be written into a committed or shared file: ``$PROLAB_CACHE/...`` inside the cache,
    repository-relative inside the checkout, absolute otherwise (so results do not carry one machine's home)."""
    p = Path(path).expanduser().resolve()
    for root, prefix in ((cache_root().expanduser().resolve(), "$PROLAB_CACHE"), (repo_root(), "")):
        if p.is_relative_to(root):
            rel = p.relative_to(root).as_posix()
            return f"{prefix}/{rel}" if prefix else (rel or ".")
    return str(p)


def slug(text: str) -> str:
    """File-name-safe form of a model or dataset name: ``Qwen/Qwen2.5 1.5B`` -> ``qwen-qwen2.5-1.5b``."""
    s = re.sub(r"[^a-z0-9.+_-]+", "-", str(text).strip().lower()).strip("-.")
    if not s:
        raise ValueError(f"cannot build a file name from {text!r}")
    return s


# --- stage 1: descriptions ---------------------------------------------------------------------------------

def prompts_dir() -> Path:
    return repo_root() / "descriptors" / "prompts"


def prompt_path(name: str) -> Path:
    return prompts_dir() / f"{name}.yaml"


def call_cache_path() -> Path:
    """Append-only JSONL of every LLM call, shared by all datasets (a class asked once serves them all)."""
    return repo_root() / "descriptors" / "cache" / "calls.jsonl"


def descriptor_name(llm: str, prompt_tag: str) -> str:
    return f"{slug(llm)}__{prompt_tag}"


def descriptor_path(dataset: str, llm: str, prompt_tag: str, root: Path | None = None) -> Path:
    """``descriptors/<dataset>/<llm>__<prompt-name>-<prompt-id>.json`` (release format)."""
    base = Path(root) if root is not None else repo_root() / "descriptors"
    return base / slug(dataset) / f"{descriptor_name(llm, prompt_tag)}.json"


def descriptor_meta_path(descriptor_file: Path) -> Path:
    """Metadata sidecar beside a descriptor file."""
    p = Path(descriptor_file)
    return p.with_name(p.stem + ".meta.json")


# --- stage 2: property spaces -----------------------------------------------------------------------------

def embedding_cache_dir(embedder_id: str) -> Path:
    """Shards of cached description embeddings for one embedder, shared by every dataset."""
    return cache_root() / "embeddings" / slug(embedder_id)


def property_space_path(dataset: str, descriptor_stem: str, embedder_id: str, method: str, n_properties: int,
                        root: Path | None = None) -> Path:
    """``properties/<dataset>/<descriptor file stem>__<embedder>__<method>-k<K>.safetensors`` (+ ``.json``)."""
    base = Path(root) if root is not None else repo_root() / "properties"
    return base / slug(dataset) / f"{descriptor_stem}__{slug(embedder_id)}__{slug(method)}-k{int(n_properties)}.safetensors"


# --- stage 3: data, checkpoints ----------------------------------------------------------------------------

def datasets_dir() -> Path:
    """Generated datasets (the embedded default) live in the user cache, never in git."""
    return cache_root() / "datasets"


def run_dir(run_name: str) -> Path:
    """Checkpoints and logs of one training run: ``~/.cache/prolab/runs/<run_name>/``."""
    return cache_root() / "runs" / slug(run_name)


def checkpoint_path(run_name: str) -> Path:
    return run_dir(run_name) / "checkpoint.pt"


# --- offline models ----------------------------------------------------------------------------------------

def models_dir() -> Path:
    return cache_root() / "models"


# --- results -----------------------------------------------------------------------------------------------

def results_dir(run_name: str = "") -> Path:
    base = repo_root() / "results"
    return base / slug(run_name) if run_name else base


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def executed_notebook_path(run_name: str, notebook: str) -> Path:
    """Executed copy of a notebook from a pipeline run: ``results/<run>/notebooks/<notebook>.ipynb``."""
    return results_dir(run_name) / "notebooks" / f"{Path(notebook).stem}.ipynb"
