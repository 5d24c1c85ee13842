"""One property space for several label sets (the paper's future work: a space shared across datasets).

The descriptions of every class of every label set are clustered together, so the properties are shared; a
class name that appears in two label sets is one class (its descriptions must agree). Each label set then gets
its own view of the space, ``subset``: its classes in its label order, the same bank. A model trained on one
label set's view predicts property activations that any other view can read: evaluating on another label set
is swapping the signatures, with no retraining (``analysis.transfer``).
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import paths
from ..datasets import dataset_key, load_class_names
from ..describe.descriptors import load_descriptors
from .space import PropertySpace


def union_descriptions(label_sets: dict[str, Path]) -> dict[str, list[str]]:
    """{class: descriptions} over the label sets ({dataset: descriptor file}), classes in first-seen order; a
    class shared by two label sets must have the same descriptions in both."""
    out: dict[str, list[str]] = {}
    where: dict[str, str] = {}
    for dataset, dfile in label_sets.items():
        for c, d in load_descriptors(dfile, load_class_names(dataset)).items():
            if c in out and out[c] != d:
                raise ValueError(f"class {c!r} is described differently in {where[c]} and {dataset} ({dfile}); a "
                                 "shared class needs one set of descriptions (describe both from the same cache)")
            out.setdefault(c, d)
            where.setdefault(c, dataset)
    return out


def build_joint_space(label_sets: dict[str, str | Path], n_properties: int | None = None, embedder=None,
                      seed: int = 0, out_root: str | Path | None = None, progress: bool = True):
    """Cluster the union of the label sets' descriptions into one space (``properties.build_property_space`` on
    the union); returns its BuildOutput. ``label_sets``: {dataset (registered name or YAML): descriptor file}."""
    from .. import defaults
    from .build import build_property_space

    files = {ds: paths.resolve(f) for ds, f in label_sets.items()}
    for ds, f in files.items():
        if not f.exists():
            raise FileNotFoundError(f"label set {ds}: descriptor file {f} not found (prolab describe --dataset {ds})")
    union = union_descriptions(files)
    name = "joint__" + "__".join(dataset_key(d) for d in label_sets)
    with tempfile.TemporaryDirectory() as tmp:
        classes = Path(tmp) / f"{name}.txt"
        classes.write_text("\n".join(union) + "\n", encoding="utf-8")
        dfile = Path(tmp) / f"{name}.json"
        dfile.write_text(json.dumps(union, ensure_ascii=False), encoding="utf-8")
        out = build_property_space(str(classes), dfile, embedder or defaults.EMBEDDER, n_properties=n_properties,
                                   seed=seed, out_root=out_root or paths.cache_root() / "spaces",
                                   progress=progress)
    out.space.notes["label_sets"] = {dataset_key(ds): load_class_names(ds) for ds in label_sets}
    return out


def subset(space: PropertySpace, dataset: str) -> PropertySpace:
    """The view of a joint space for one label set: its classes in its label order, the same bank and
    properties, only its classes' descriptions."""
    names = load_class_names(dataset)
    missing = [c for c in names if c not in space.class_names]
    if missing:
        raise ValueError(f"the joint space has no classes {missing} of {dataset}")
    idx = [space.class_names.index(c) for c in names]
    remap = {old: new for new, old in enumerate(idx)}
    rows = np.flatnonzero(np.isin(space.desc_class, idx))
    rows = rows[np.argsort([remap[int(c)] for c in space.desc_class[rows]], kind="stable")]  # label order
    return replace(space, signatures=space.signatures[idx].copy(), class_names=list(names),
                   descriptions=[space.descriptions[j] for j in rows],
                   desc_class=np.array([remap[int(c)] for c in space.desc_class[rows]], dtype=np.int64),
                   desc_property=space.desc_property[rows].copy(), dataset=dataset_key(dataset),
                   source={**space.source, "joint_space": space.dataset},
                   notes={"label_sets": space.notes.get("label_sets", {})}).check()


def save_subset(view: PropertySpace, joint_path: str | Path) -> Path:
    """Save a label set's view beside the joint space: ``<joint stem>__<dataset>.safetensors``."""
    joint_path = Path(joint_path)
    return view.save(joint_path.with_name(f"{joint_path.stem}__{view.dataset}.safetensors"))


__all__ = ["union_descriptions", "build_joint_space", "subset", "save_subset"]
