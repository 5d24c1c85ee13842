"""Descriptor files: ``{class_name: [description, ...]}`` in dataset class order (the release's format),
each with a ``.meta.json`` sidecar; plus import from and export to the authors' released files."""
from __future__ import annotations

import json
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .. import paths
from ..datasets import normalize_class_name
from ..files import atomic_write_json, atomic_write_text, file_sha256, read_json, utc_now


def save_descriptors(path: str | Path, descriptions: dict[str, list[str]], meta: dict[str, Any],
                     allow_empty: bool = False) -> Path:
    """Write the descriptor file and its sidecar atomically. The descriptor file holds nothing but the
    descriptions, so two runs that got the same replies write identical bytes. A class without descriptions
    is an error unless ``allow_empty`` (a run with failures, whose sidecar lists them)."""
    path = Path(path)
    _check(descriptions, str(path))
    empty = [c for c, d in descriptions.items() if not d]
    if empty and not allow_empty:
        raise ValueError(f"{path}: classes without descriptions: {', '.join(map(repr, empty[:10]))}")
    atomic_write_json(path, descriptions)
    meta = {**meta, "descriptor_sha256": file_sha256(path)}
    atomic_write_json(paths.descriptor_meta_path(path), meta)
    return path


def load_descriptors(path: str | Path, class_names: list[str] | None = None) -> dict[str, list[str]]:
    """Read a descriptor file (ours or the release's). With ``class_names``, check it covers exactly them,
    in order, and name the first mismatch."""
    path = Path(path)
    data = read_json(path)
    _check(data, str(path))
    if class_names is not None:
        keys = list(data)
        if len(keys) != len(class_names):
            raise ValueError(f"{path}: {len(keys)} classes, but the class list has {len(class_names)}")
        for i, (k, c) in enumerate(zip(keys, class_names)):
            if k != c:
                raise ValueError(f"{path}: class {i} is {k!r}, the class list says {c!r} "
                                 "(use import_release to match the release's files by index)")
    return data


def load_meta(path: str | Path) -> dict[str, Any]:
    meta = paths.descriptor_meta_path(Path(path))
    return read_json(meta) if meta.exists() else {}


def _check(data: Any, source: str) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a descriptor file is a JSON object {{class_name: [description, ...]}}")
    for name, descs in data.items():
        if not isinstance(descs, list) or not all(isinstance(d, str) for d in descs):
            raise ValueError(f"{source}: class {name!r} must map to a list of strings")


def descriptor_stats(descriptions: dict[str, list[str]]) -> dict[str, Any]:
    counts = {c: len(d) for c, d in descriptions.items()}
    all_descs = [d for ds in descriptions.values() for d in ds]
    return {"n_classes": len(counts), "n_descriptions": len(all_descs),
            "min_per_class": min(counts.values(), default=0), "max_per_class": max(counts.values(), default=0),
            "counts": counts}


# --- the authors' release ----------------------------------------------------------------------------------

def import_release(src: str | Path, class_names: list[str], dest: str | Path | None = None,
                   source_note: str = "") -> dict[str, list[str]]:
    """Read a released descriptor file and key it by *our* class names, matching by index.

    The release's names sometimes differ from mmseg's (ADE20K 122 "storage tank" vs "tank"): each difference
    is warned about, never silently dropped. With ``dest``, write a descriptor file + sidecar that records the
    release's own names so ``export_release`` gives the original file back.
    """
    src = Path(src)
    with open(src, encoding="utf-8") as f:
        try:
            raw = json.load(f, object_pairs_hook=OrderedDict)
        except json.JSONDecodeError as e:
            raise ValueError(f"{src} is not valid JSON: {e}") from None
    _check(raw, str(src))
    release_names = list(raw)
    if len(release_names) != len(class_names):
        raise ValueError(f"{src} has {len(release_names)} classes but the class list has {len(class_names)}; "
                         "release files are matched by index, so the counts must agree")
    renamed = {}
    for i, (theirs, ours) in enumerate(zip(release_names, class_names)):
        if normalize_class_name(theirs).lower() != normalize_class_name(ours).lower():
            renamed[i] = (theirs, ours)
            warnings.warn(f"{src.name}: class {i} is {theirs!r} in the release and {ours!r} in the class list; "
                          "matched by index", stacklevel=2)
    out = {ours: list(raw[theirs]) for theirs, ours in zip(release_names, class_names)}
    if dest is not None:
        meta = {"source": "imported", "imported_from": src.name, "note": source_note,
                "release_names": release_names, "renamed": {str(i): list(p) for i, p in renamed.items()},
                "source_sha256": file_sha256(src), "created": utc_now(), **descriptor_stats(out)}
        save_descriptors(dest, out, meta)
    return out


def export_release(descriptor_file: str | Path, dest: str | Path, use_release_names: bool = True,
                   indent: int | None = None) -> Path:
    """Write a descriptor file in the release's format. Imported files get their original class names back."""
    data = load_descriptors(descriptor_file)
    names = list(data)
    meta = load_meta(descriptor_file)
    if use_release_names and meta.get("release_names"):
        names = meta["release_names"]
        if len(names) != len(data):
            raise ValueError(f"{descriptor_file}: sidecar lists {len(names)} release names for {len(data)} classes")
    out = {n: d for n, d in zip(names, data.values())}
    text = json.dumps(out, ensure_ascii=False, indent=indent) if indent is not None else json.dumps(out)
    return atomic_write_text(dest, text if indent is None else text + "\n")


__all__ = ["save_descriptors", "load_descriptors", "load_meta", "descriptor_stats", "import_release",
           "export_release"]
