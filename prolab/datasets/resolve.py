"""What a ``dataset`` value means: the one place that knows its four meanings.

A dataset is named by a string everywhere (CLI flags, notebook parameters, grid YAMLs, a run's config): a
registered dataset (``synthetic_outdoor``, ``ade20k_150``), the path of a dataset YAML (your own data), the path
of a class list (.txt/.json: classes without images, for stages 1 and 2), or ``custom`` (a run given
``img_dir``/``ann_dir``/``classes`` directly). ``resolve`` turns the string into a typed ``DatasetRef``;
``dataset_key`` and ``load_class_names`` are read from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .classes import DATASETS, LISTS, read_class_names, unseen_class_names
from .spec import is_spec_path, load_spec

KINDS = ("registered", "yaml", "class_list", "custom")


@dataclass(frozen=True)
class DatasetRef:
    value: str             # as given
    kind: str              # one of KINDS
    key: str               # the name in file names and tables

    @property
    def is_registered(self) -> bool:
        return self.kind == "registered"

    def class_names(self, normalize: bool = True) -> list[str]:
        if self.kind == "yaml":  # normalised and checked for duplicates when the YAML was read
            return list(load_spec(self.value).class_names)
        if self.kind == "custom":
            raise ValueError("dataset 'custom' has no class list of its own: its run names one (classes)")
        return read_class_names(self.value, normalize)


def resolve(dataset: str | Path) -> DatasetRef:
    """The typed reference of a ``dataset`` value (a YAML is read and checked now)."""
    value = str(dataset)
    if is_spec_path(value):
        return DatasetRef(value, "yaml", load_spec(value).name)
    if value in DATASETS:
        return DatasetRef(value, "registered", value)
    if value == "custom":
        return DatasetRef(value, "custom", value)
    return DatasetRef(value, "class_list", Path(value).stem if Path(value).suffix else value)


def dataset_key(dataset: str | Path) -> str:
    """The name a dataset goes by in file names and tables: a registered name as is, a dataset YAML's
    ``name:``, a class-list file's stem (``my_classes.txt`` -> ``my_classes``)."""
    return resolve(dataset).key


def load_class_names(dataset_or_path: str | Path, normalize: bool = True) -> list[str]:
    """Class names in label order, for a registered dataset, a dataset YAML or a class-list file. Names are
    normalised (``normalize_class_name``) unless ``normalize=False``; duplicates after normalisation are an error
    because descriptor files key descriptions by name."""
    if is_spec_path(dataset_or_path):
        return resolve(dataset_or_path).class_names(normalize)
    return read_class_names(dataset_or_path, normalize)


def seen_class_names(dataset: str) -> list[str]:
    """Classes that are labelled in training (all of them, except a dataset's reserved unseen classes)."""
    unseen = set(unseen_class_names(dataset))
    return [c for c in load_class_names(dataset) if c not in unseen]


def palette(dataset: str) -> list[list[int]]:
    """The RGB colour of each class (mmseg's palettes; our own for the embedded default; a seeded random one
    for any other dataset)."""
    import json

    if dataset not in DATASETS:
        import numpy as np

        n = len(load_class_names(dataset))
        return np.random.default_rng(0).integers(0, 256, size=(n, 3)).tolist()
    f = LISTS / Path(DATASETS[dataset].class_file).with_suffix(".palette.json").name
    return json.loads(f.read_text()) if f.exists() else []
