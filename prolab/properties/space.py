"""The PropertySpace artefact: what stage 2 hands to segmentation.

- ``bank`` E (K x d): the property centres in embedding space;
- ``signatures`` Y (C x K, 0/1): class c has property k if any of its descriptions fell into cluster k;
- the description -> property table, property names, class names, embedder id, clustering parameters and the
  hash of the source descriptor file.

Saved without pickle: tensors in ``<name>.safetensors``, everything else in ``<name>.json`` beside it.
The release's embedding-bank layout (a torch file holding the descriptions and ``[bank (d x K), labels (K x C)]``)
can be written and read, so the authors' configs can use our spaces and we can load theirs.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..files import (atomic_write_bytes, atomic_write_json, canonical_safetensors, file_sha256, read_json,
                     stable_hash)

FORMAT_VERSION = 1


@dataclass
class PropertySpace:
    bank: np.ndarray                  # (K, d) float32
    signatures: np.ndarray            # (C, K) uint8
    class_names: list[str]
    descriptions: list[str]           # every description, in class order
    desc_class: np.ndarray            # (n,) int64: class index of each description
    desc_property: np.ndarray         # (n,) int64: property index (-1 when unknown, e.g. imported spaces)
    property_names: list[str]
    embedder_id: str = ""
    clustering: dict[str, Any] = field(default_factory=dict)
    dataset: str = ""
    source: dict[str, Any] = field(default_factory=dict)   # descriptor file name and sha256
    notes: dict[str, Any] = field(default_factory=dict)    # collisions repaired, empty clusters, ...

    # -- shape ---------------------------------------------------------------------------------------------
    @property
    def n_properties(self) -> int:
        return int(self.bank.shape[0])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def dim(self) -> int:
        return int(self.bank.shape[1])

    def __repr__(self) -> str:
        return (f"PropertySpace({self.dataset or '?'}: {self.n_classes} classes, {len(self.descriptions)} descriptions "
                f"-> {self.n_properties} properties, d={self.dim}, embedder={self.embedder_id})")

    def check(self) -> "PropertySpace":
        c, k = self.signatures.shape
        if k != self.n_properties or c != self.n_classes:
            raise ValueError(f"signatures {self.signatures.shape} do not fit {self.n_classes} classes x "
                             f"{self.n_properties} properties")
        if len(self.property_names) != self.n_properties:
            raise ValueError(f"{len(self.property_names)} property names for {self.n_properties} properties")
        n = len(self.descriptions)
        if self.desc_class.shape != (n,) or self.desc_property.shape != (n,):
            raise ValueError("description tables do not match the number of descriptions")
        return self

    def content_hash(self) -> str:
        """Hash of what training uses: bank, signatures, class names and descriptions (not the file bytes)."""
        h = hashlib.sha256()
        for a in (self.bank.astype(np.float32), self.signatures.astype(np.uint8)):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(stable_hash({"class_names": self.class_names, "descriptions": self.descriptions}).encode())
        return h.hexdigest()[:16]

    # -- views ---------------------------------------------------------------------------------------------
    def descriptions_of(self, class_name: str) -> list[str]:
        c = self.class_names.index(class_name)
        return [d for d, i in zip(self.descriptions, self.desc_class) if i == c]

    def members(self, k: int) -> list[str]:
        """"class: description" lines of property k (the release's naming format)."""
        return [f"{self.class_names[c]}: {d}" for d, c, p in zip(self.descriptions, self.desc_class,
                                                                  self.desc_property) if p == k]

    def properties_of(self, class_name: str) -> list[str]:
        c = self.class_names.index(class_name)
        return [self.property_names[k] for k in np.flatnonzero(self.signatures[c])]

    def table(self):
        """The description -> property table as a DataFrame."""
        import pandas as pd

        return pd.DataFrame({
            "class_name": [self.class_names[c] for c in self.desc_class],
            "description": self.descriptions,
            "property": self.desc_property,
            "property_name": [self.property_names[p] if p >= 0 else "" for p in self.desc_property],
        })

    # -- save / load (no pickle) ---------------------------------------------------------------------------
    def save(self, path: str | Path, extra_meta: dict[str, Any] | None = None) -> Path:
        from safetensors.numpy import save

        self.check()
        path = tensor_path(path)
        tensors = {"bank": np.ascontiguousarray(self.bank, dtype=np.float32),
                   "signatures": np.ascontiguousarray(self.signatures, dtype=np.uint8),
                   "desc_class": np.ascontiguousarray(self.desc_class, dtype=np.int64),
                   "desc_property": np.ascontiguousarray(self.desc_property, dtype=np.int64)}
        blob = canonical_safetensors(save(tensors, metadata={"format": "prolab.PropertySpace",
                                                             "version": str(FORMAT_VERSION)}))
        atomic_write_bytes(path, blob)
        tensors_sha = hashlib.sha256(blob).hexdigest()[:16]
        meta = {"format": "prolab.PropertySpace", "version": FORMAT_VERSION, "dataset": self.dataset,
                "tensors_sha256": tensors_sha, "binding_sha256": _binding(tensors_sha, self.class_names,
                                                                          self.descriptions),
                "n_classes": self.n_classes, "n_properties": self.n_properties, "dim": self.dim,
                "embedder_id": self.embedder_id, "clustering": self.clustering, "source": self.source,
                "notes": self.notes, "class_names": self.class_names, "property_names": self.property_names,
                "descriptions": self.descriptions, **(extra_meta or {})}
        atomic_write_json(path.with_suffix(".json"), meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "PropertySpace":
        from safetensors.numpy import load_file

        path = tensor_path(path)
        if not path.exists():
            raise FileNotFoundError(f"property space not found: {path}")
        meta = read_json(path.with_suffix(".json"))
        if meta.get("format") != "prolab.PropertySpace":
            raise ValueError(f"{path.with_suffix('.json')} is not a prolab property space")
        missing = {"class_names", "descriptions", "property_names"} - set(meta)
        if missing:
            raise ValueError(f"{path.with_suffix('.json')} lacks {sorted(missing)}")
        _verify(path, meta)
        try:
            t = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - safetensors' own error types
            raise ValueError(f"{path} cannot be read as safetensors ({type(e).__name__}: {e})") from None
        return cls(bank=t["bank"], signatures=t["signatures"], class_names=meta["class_names"],
                   descriptions=meta["descriptions"], desc_class=t["desc_class"], desc_property=t["desc_property"],
                   property_names=meta["property_names"], embedder_id=meta.get("embedder_id", ""),
                   clustering=meta.get("clustering", {}), dataset=meta.get("dataset", ""),
                   source=meta.get("source", {}), notes=meta.get("notes", {})).check()

    # -- the release's layout ------------------------------------------------------------------------------
    def to_release(self, path: str | Path, release_names: bool = True) -> Path:
        """A torch file ``{"descriptions": {class: [...]}, "embeddings": [bank (d x K), labels (K x C)]}``.

        A space built from an imported release file (or a release partition) writes the class names that file
        used (``source["release_names"]``, e.g. 'storage tank' for mmseg's 'tank'), unless ``release_names`` is
        False."""
        import io

        import torch

        spelled = dict(self.source.get("release_names") or {}) if release_names else {}
        descs = {spelled.get(c, c): self.descriptions_of(c) for c in self.class_names}
        if len(descs) != len(self.class_names):
            raise ValueError(f"release names {spelled} merge two classes; write with release_names=False")
        obj = {"descriptions": descs,
               "embeddings": [torch.from_numpy(np.ascontiguousarray(self.bank.T, dtype=np.float32)),
                              torch.from_numpy(np.ascontiguousarray(self.signatures.T, dtype=np.float32))]}
        buf = io.BytesIO()
        torch.save(obj, buf)
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def from_release(cls, path: str | Path, dataset: str = "") -> "PropertySpace":
        """Read a release-layout file (``weights_only=True``: no code runs). The release keeps no
        description -> property table, so ``desc_property`` is -1 and properties get numbered names."""
        import torch

        obj = torch.load(str(path), map_location="cpu", weights_only=True)
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: expected a dict with the descriptions and [bank, labels]")
        descs = next((v for v in obj.values() if isinstance(v, dict)
                      and all(isinstance(x, (list, tuple)) for x in v.values())), None)
        pair = next((v for v in obj.values() if isinstance(v, (list, tuple)) and len(v) == 2
                     and all(torch.is_tensor(t) for t in v)), None)
        if descs is None or pair is None:
            raise ValueError(f"{path}: found no descriptions dict and [bank (d x K), labels (K x C)] pair "
                             f"(keys: {list(obj)})")
        bank, labels = (t.detach().float().numpy() for t in pair)
        if bank.shape[1] != labels.shape[0] or labels.shape[1] != len(descs):
            raise ValueError(f"{path}: bank {bank.shape} and labels {labels.shape} do not fit "
                             f"{len(descs)} classes (expected d x K and K x C)")
        class_names = list(descs)
        flat = [(i, d) for i, c in enumerate(class_names) for d in descs[c]]
        return cls(bank=bank.T.copy(), signatures=(labels.T > 0.5).astype(np.uint8), class_names=class_names,
                   descriptions=[d for _, d in flat], desc_class=np.array([i for i, _ in flat], dtype=np.int64),
                   desc_property=-np.ones(len(flat), dtype=np.int64),
                   property_names=[f"property {k}" for k in range(bank.shape[1])], dataset=dataset,
                   source={"imported_from": Path(path).name}).check()


def _binding(tensors_sha: str, class_names: list[str], descriptions: list[str]) -> str:
    """Ties the JSON's class names and descriptions to the tensors they index."""
    return stable_hash({"tensors": tensors_sha, "class_names": class_names, "descriptions": descriptions})


def _verify(path: Path, meta: dict[str, Any]) -> None:
    """The .safetensors and .json of a space must come from the same save: compare the tensors' hash and the
    binding of names to tensors recorded at save time. Property names are free to edit by hand."""
    js = path.with_suffix(".json")
    if "tensors_sha256" not in meta:
        warnings.warn(f"{js} records no tensor hash (written before prolab checked them): the pairing of "
                      f"{js.name} and {path.name} cannot be verified; save the space again to add it", stacklevel=3)
        return
    actual = file_sha256(path)
    if actual != meta["tensors_sha256"]:
        raise ValueError(f"{path} does not belong to {js.name}: its tensors hash to {actual}, the JSON records "
                         f"{meta['tensors_sha256']} (the two files come from different runs, or one was changed); "
                         "rebuild the space with `prolab properties`")
    if _binding(actual, meta["class_names"], meta["descriptions"]) != meta.get("binding_sha256"):
        raise ValueError(f"{js}: its class names or descriptions were changed after it was saved (they no longer "
                         f"match the tensors of {path.name}); rebuild the space with `prolab properties`")


def tensor_path(path: str | Path) -> Path:
    """``x.safetensors`` for ``x``, ``x.json`` or ``x.safetensors`` (names may contain dots: qwen2.5-...)."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        return p.with_suffix(".safetensors")
    return p.with_name(p.name + ".safetensors")


def signatures_from_assignments(desc_class: np.ndarray, desc_property: np.ndarray, n_classes: int,
                                n_properties: int) -> np.ndarray:
    """Y[c, k] = 1 if any description of class c is assigned to property k."""
    y = np.zeros((n_classes, n_properties), dtype=np.uint8)
    y[desc_class, desc_property] = 1
    return y
