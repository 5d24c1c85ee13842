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


_usable: set[Path] = set()


def cache_root() -> Path:
    """``$PROLAB_CACHE``, else ``~/.cache/prolab``; created on first use, with an error that names the variable
    when it cannot be (``/proc/none``, a path under a regular file). Set but empty is refused, not read as unset."""
    env = os.environ.get("PROLAB_CACHE")
    if env is not None and not env.strip():
        raise ValueError("PROLAB_CACHE is set but empty: unset it (the cache is then ~/.cache/prolab) or name a folder")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "prolab"
    if root not in _usable:
        where = f"PROLAB_CACHE={env}" if env else "the default cache (set PROLAB_CACHE to use another folder)"
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(e.errno, f"{where}: cannot create the cache folder {root}: {e.strerror}") from None
        if not os.access(root, os.W_OK | os.X_OK):
            raise PermissionError(f"{where}: the cache folder {root} is not writable")
        _usable.add(root)
    return root


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


MAX_NAME = 120   # characters of a path component the kit builds (file systems allow 255 bytes; suffixes follow)


def slug(text: str, what: str = "name") -> str:
    """The one function that turns a name (run, grid, dataset, model, property space, class) into a path
    component: ``Qwen/Qwen2.5 1.5B`` -> ``qwen-qwen2.5-1.5b``. Nothing it returns can leave the folder it is
    joined to (no separators, no ``.``/``..``); empty and over-long names are refused here, with ``what`` and the
    name in the message, not later as ``File name too long``. Names that differ only in case share a component:
    writers that must tell them apart check ``claim`` or the owner recorded in the folder."""
    if not isinstance(text, str):
        raise ValueError(f"{what} {text!r}: must be a string")
    s = re.sub(r"[^a-z0-9.+_-]+", "-", text.strip().lower()).strip("-.")
    if not s:
        raise ValueError(f"{what} {text!r}: cannot build a file name from it (empty once separators and dots are "
                         "dropped); give a name with letters or digits")
    if len(s) > MAX_NAME:
        raise ValueError(f"{what} {text[:40]!r}... is {len(s)} characters long as a file name; at most {MAX_NAME}")
    return s


def component(text: str, what: str = "name") -> str:
    """A name used *verbatim* as part of a file name (a prompt's name): letters, digits, ``._+-``, not starting
    with a dot, at most ``MAX_NAME`` characters; anything else is refused (``slug`` would silently rename it)."""
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]*", text) \
            or len(text) > MAX_NAME:
        raise ValueError(f"{what} {str(text)[:60]!r}: must be letters, digits, '.', '_', '+' or '-' (no path "
                         f"separators, not starting with a dot), at most {MAX_NAME} characters")
    return text


def claim(folder: Path, name: str, what: str) -> None:
    """Record which ``name`` owns ``folder`` (``.owner`` inside it) and refuse another name that maps to the same
    folder (``hcol`` and ``HCOL``): they would overwrite each other's files."""
    from .files import atomic_write_text

    marker = Path(folder) / ".owner"
    if marker.is_file():
        owner = marker.read_text(encoding="utf-8").strip()
        if owner and owner != name:
            raise ValueError(f"{what} {name!r}: its folder {folder} belongs to {what} {owner!r} (the names differ only "
                             f"in case or punctuation, so they share it); give {name!r} another name")
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, name + "\n")


def registered_dataset_names() -> set[str]:
    lists = Path(__file__).resolve().parent / "datasets" / "classlists"
    return {f.name.split(".")[0] for f in lists.glob("*.json")}


def kit_folders() -> set[str]:
    """Names of the folders the kit ships under ``descriptors/`` and ``properties/``: the registered datasets,
    the class lists committed beside them (``descriptors/<name>.txt``) and ``prompts``/``cache``. The registered
    names are read from their class-list files (``prolab/datasets/classlists/<name>.json``, what registers a
    dataset; a test checks they are ``DATASETS``), so paths stays below the datasets package."""
    names = {slug(d) for d in registered_dataset_names()} | {"prompts", "cache"}
    return names | {slug(f.stem) for f in (repo_root() / "descriptors").glob("*.txt")}


def guard_kit_folder(dataset, key: str, out_root, area: str) -> None:
    """Committed folders are written only on purpose: a user's class list or dataset YAML whose name is one of
    ``kit_folders`` (``cityscapes_19.txt``, ``new_classes.txt`` from elsewhere) would overwrite the kit's
    files under ``<area>/<name>/``; it may only when ``out_root`` names the folder to write. The registered
    dataset itself and the kit's own class-list file (``descriptors/<name>.txt``) write there as always."""
    if out_root is not None or str(dataset) == key:
        return
    name = slug(key, "dataset")
    if name not in kit_folders():
        return
    own = repo_root() / "descriptors" / f"{key}.txt"
    if own.is_file() and resolve(dataset).resolve() == own.resolve():
        return
    raise ValueError(f"dataset {str(dataset)!r} is named {key!r}, like the kit's folder {area}/{name}/: writing "
                     f"there would overwrite the kit's files. Rename the file (e.g. my_{key}), or pass --out_root to "
                     "write elsewhere on purpose")


def guard_case_collision(folder: Path, key: str) -> None:
    """Two datasets whose names differ only in case (``hcol``, ``HCOL``) map to one folder: refuse the second
    one (the sidecars beside the descriptor files record which dataset wrote them)."""
    import json

    for meta in sorted(Path(folder).glob("*.meta.json")):
        try:
            owner = json.loads(meta.read_text(encoding="utf-8")).get("dataset")
        except (OSError, ValueError):
            continue
        if isinstance(owner, str) and owner != key:
            raise ValueError(f"dataset {key!r}: its folder {folder} holds the descriptors of dataset {owner!r} "
                             f"({meta.name}); the names differ only in case or punctuation, so they would overwrite "
                             f"each other: give {key!r} another name")


# --- stage 1: descriptions ---------------------------------------------------------------------------------

def prompts_dir() -> Path:
    return repo_root() / "descriptors" / "prompts"


def prompt_path(name: str) -> Path:
    return prompts_dir() / f"{name}.yaml"


def call_cache_path() -> Path:
    """The kit's committed call cache: append-only JSONL of every LLM call behind the committed descriptor files,
    shared by all datasets (a class asked once serves them all). Read by every describe; written only when named
    (``--cache_path descriptors/cache/calls.jsonl``, as ``descriptors/generate.sh`` does)."""
    return repo_root() / "descriptors" / "cache" / "calls.jsonl"


def user_call_cache_path() -> Path:
    """Your calls: new LLM replies go here (``$PROLAB_CACHE/llm/calls.jsonl``), never into a committed file."""
    return cache_root() / "llm" / "calls.jsonl"


def descriptor_name(llm: str, prompt_tag: str) -> str:
    return f"{slug(llm, 'model')}__{component(prompt_tag, 'prompt tag')}"


def workspace_root() -> Path:
    """Where the artefacts of *your* datasets go (descriptors, property spaces): ``$PROLAB_WORKSPACE``, else
    ``$PROLAB_CACHE/workspace``; never the checkout, so describing your data leaves ``git status`` clean."""
    env = os.environ.get("PROLAB_WORKSPACE")
    if env is not None and not env.strip():
        raise ValueError("PROLAB_WORKSPACE is set but empty: unset it (the workspace is then $PROLAB_CACHE/workspace) "
                         "or name a folder")
    return Path(env).expanduser().resolve() if env else cache_root() / "workspace"


def artefact_root(area: str, dataset: str) -> Path:
    """``<area>/`` (``descriptors`` or ``properties``) for a dataset: the checkout's for the kit's own datasets
    (``kit_folders``: the registered ones and the committed class lists), the workspace's for yours."""
    return (repo_root() if slug(dataset, "dataset") in kit_folders() else workspace_root()) / area


def descriptor_path(dataset: str, llm: str, prompt_tag: str, root: Path | None = None) -> Path:
    """``descriptors/<dataset>/<llm>__<prompt-name>-<prompt-id>.json`` (release format), in the checkout for the
    kit's datasets and in the workspace for yours (``artefact_root``), or under ``root``."""
    base = Path(root) if root is not None else artefact_root("descriptors", dataset)
    return base / slug(dataset, "dataset") / f"{descriptor_name(llm, prompt_tag)}.json"


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
    base = Path(root) if root is not None else artefact_root("properties", dataset)
    return base / slug(dataset) / f"{descriptor_stem}__{slug(embedder_id)}__{slug(method)}-k{int(n_properties)}.safetensors"


# --- stage 3: data, checkpoints ----------------------------------------------------------------------------

def datasets_dir() -> Path:
    """Where generated datasets (the embedded default and its variants) are rendered: ``$PROLAB_DATASETS``, else
    ``$PROLAB_CACHE/datasets``; never in git. A generated dataset is the same bytes on every machine (its stamp
    records the generator version and seed), so caches may share one folder: the tests render it once per
    machine, as they build the kernels once (``extensions_dir``)."""
    env = os.environ.get("PROLAB_DATASETS")
    return Path(env).expanduser() if env else cache_root() / "datasets"


def run_dir(run_name: str) -> Path:
    """Checkpoints and logs of one training run: ``~/.cache/prolab/runs/<run_name>/``."""
    return cache_root() / "runs" / slug(run_name, "run_name")


def wovss_run_dir(run_name: str) -> Path:
    """Weights, configuration and log of one PGSeg-stage run (``prolab wovss train``):
    ``~/.cache/prolab/wovss/<run_name>/``."""
    return cache_root() / "wovss" / slug(run_name, "run_name")


def checkpoint_path(run_name: str) -> Path:
    return run_dir(run_name) / "checkpoint.pt"


# --- offline models ----------------------------------------------------------------------------------------

def models_dir() -> Path:
    return cache_root() / "models"


# --- results -----------------------------------------------------------------------------------------------

def results_root() -> Path:
    return repo_root() / "results"


def results_dir(run_name: str) -> Path:
    """``results/<name>/`` of a pipeline run or grid; an empty name is refused (it would be ``results/`` itself)."""
    return results_root() / slug(run_name, "results name")


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def executed_notebook_path(run_name: str, notebook: str) -> Path:
    """Executed copy of a notebook from a pipeline run: ``results/<run>/notebooks/<notebook>.ipynb``."""
    return results_dir(run_name) / "notebooks" / f"{Path(notebook).stem}.ipynb"
