"""Class lists: the five paper datasets, the embedded default, and any user list (.txt or .json)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

LISTS = Path(__file__).resolve().parent / "classlists"


@dataclass(frozen=True)
class DatasetInfo:
    name: str             # registry key, also the folder name under descriptors/
    title: str            # human-readable
    class_file: str       # file in prolab/datasets/classlists/
    n_classes: int
    n_properties: int     # the paper's K for this dataset (about one property per 5-6 descriptions)


DATASETS: dict[str, DatasetInfo] = {d.name: d for d in [
    DatasetInfo("ade20k_150", "ADE20K (150 classes)", "ade20k_150.json", 150, 256),
    DatasetInfo("coco_stuff_171", "COCO-Stuff-164k (171 classes)", "coco_stuff_171.json", 171, 256),
    DatasetInfo("pascal_context_59", "Pascal Context (59 classes)", "pascal_context_59.json", 59, 128),
    DatasetInfo("cityscapes_19", "Cityscapes (19 classes)", "cityscapes_19.json", 19, 32),
    DatasetInfo("bdd100k_19", "BDD100K (19 classes)", "bdd100k_19.json", 19, 32),
    # The embedded default: procedurally rendered outdoor scenes (see prolab.datasets).
    DatasetInfo("synthetic_outdoor", "Embedded synthetic outdoor scenes (18 classes)", "synthetic_outdoor.json",
                18, 24),
]}


def registered_datasets() -> list[str]:
    return list(DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; registered: {', '.join(DATASETS)} "
                       "(or pass a path to a .txt/.json class list)") from None


def class_key(name: str) -> str:
    """Case- and separator-insensitive form of a class name (``Traffic_Light`` == ``traffic-light``): how class
    names are matched against the LLM call cache."""
    import re

    return " ".join(re.split(r"[\s_\-./]+", name.casefold())).strip()


def normalize_class_name(name: str) -> str:
    """The form used in prompts and descriptor keys: stripped, underscores as spaces, single spaces."""
    if not isinstance(name, str):
        raise TypeError(f"class name must be a string, got {name!r}")
    out = " ".join(name.replace("_", " ").split())
    if not out:
        raise ValueError(f"empty class name {name!r}")
    return out


def _read_list(path: Path) -> list[str]:
    if not path.exists():
        raise FileNotFoundError(f"class list not found: {path}")
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"class list {path} is not valid JSON: {e}") from None
        if isinstance(data, dict) and "classes" in data:
            data = data["classes"]
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise ValueError(f"class list {path} must be a JSON list of strings (or {{'classes': [...]}})")
        return data
    if path.suffix in (".txt", ""):
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    raise ValueError(f"class list {path}: expected a .txt (one name per line) or .json file")


def read_class_names(dataset_or_path: str | Path, normalize: bool = True) -> list[str]:
    """Class names in label order, for a registered dataset name or a class-list file (.txt/.json); a dataset
    YAML goes through ``prolab.datasets.load_class_names``, which knows every meaning of a dataset value.

    Names are normalised (``normalize_class_name``) unless ``normalize=False``; duplicates after
    normalisation are an error because descriptor files key descriptions by name.
    """
    key = str(dataset_or_path)
    if key in DATASETS:
        raw = _read_list(LISTS / DATASETS[key].class_file)
        source = f"dataset {key}"
    else:
        path = Path(dataset_or_path)
        if not path.exists() and not path.is_absolute():
            from .. import paths

            if paths.resolve(path).exists():  # relative to the repository root, as everywhere in the kit
                path = paths.resolve(path)
        if not path.suffix and not path.exists():
            dataset_info(key)  # raises the "unknown dataset" error with the registered names
        raw = _read_list(path)
        source = str(path)
    names = []
    for i, n in enumerate(raw):
        try:
            names.append(normalize_class_name(n) if normalize else n)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{source}: class {i}: {e}") from None
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise ValueError(f"{source}: class {n!r} appears twice (index {seen[n]} and {i})")
        seen[n] = i
    return names


def unseen_class_names(dataset: str) -> list[str]:
    """Classes reserved as unseen for the open-vocabulary protocol (empty for the paper datasets)."""
    if dataset not in DATASETS:
        return []
    f = LISTS / Path(DATASETS[dataset].class_file).with_suffix(".unseen.json").name
    return _read_list(f) if f.exists() else []




def class_list_hash(class_names) -> str:
    """Hash of class names *in label order*: what binds a property space, a run or a converted checkpoint to the
    class list it was made for (label i means class i)."""
    from ..files import stable_hash

    return stable_hash([str(c) for c in class_names], 12)


def check_same_classes(made_for, given, what: str, source: str) -> None:
    """Refuse to use ``what`` (made for the classes ``made_for``) with the classes ``given`` by ``source``
    unless they are the same names in the same order; the message says what differs."""
    made_for, given = list(made_for), list(given)
    if made_for == given:
        return
    missing = [c for c in made_for if c not in given]
    extra = [c for c in given if c not in made_for]
    if missing or extra:
        detail = (f"missing from it: {missing[:5]}" if missing else "") + ("; " if missing and extra else "") + \
                 (f"not in {what}: {extra[:5]}" if extra else "")
    else:
        moved = [f"{c!r} is label {i}, was {made_for.index(c)}" for i, c in enumerate(given) if made_for[i] != c]
        detail = "the same classes in another order: " + ", ".join(moved[:4]) + (" ..." if len(moved) > 4 else "")
    raise ValueError(f"{what} was made for {len(made_for)} classes (class hash {class_list_hash(made_for)}); {source} "
                     f"gives {len(given)} (class hash {class_list_hash(given)}): {detail}. Its labels would be scored "
                     "under the wrong names: use the class list it was made with, or make it again")
