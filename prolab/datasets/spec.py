"""Your own dataset in one YAML file: where the images and label maps are, the class names, the ignore value.

Every stage accepts the file's path wherever it accepts a dataset name (``--dataset my.yaml``), so describe ->
properties -> train -> evaluate -> grid chain through the same names and default places: descriptions in
``descriptors/<name>/``, the property space in ``properties/<name>/``, runs in the cache. Example::

    name: street                  # the dataset's name in file names and tables (letters, digits, . _ -)
    data_root: .                  # folder holding the splits; relative to this file (default: its folder)
    img_dir: images/{split}       # {split} is replaced by the split's folder (see splits)
    ann_dir: labels/{split}
    img_suffix: .jpg
    seg_map_suffix: .png
    classes: [sky, building, fence]   # in label order; or a .txt/.json class list, relative to this file
    ignore_index: 11              # the raw label value that means "not labelled"
    splits: {train: train, val: val, test: test}   # split name -> folder name (default: the same)
    label_map: {0: 0, 1: 1, 7: 255}   # optional: raw value -> class index (255 = ignore)
    n_properties: 12              # optional: K (default: one property per six descriptions)
    prompt_names: {Pole: street light pole}   # optional: the name a class is asked under (descriptions stay keyed by the class)

Relative paths are relative to the YAML file; ``~`` and environment variables (``$HOME``) are expanded in
``data_root``, ``img_dir``, ``ann_dir`` and ``classes``. ``name`` must not be a registered dataset's name.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..defaults import IGNORE_INDEX
from ..checks import Rule, check, unknown_names

SUFFIXES = (".yaml", ".yml")
KEYS = {
    "name": Rule(str, pattern=r"[A-Za-z0-9][A-Za-z0-9._-]*", pattern_help="letters, digits, '.', '_' or '-'"),
    "data_root": Rule(str, nullable=True),
    "img_dir": Rule(str),
    "ann_dir": Rule(str),
    "img_suffix": Rule(str, nullable=True),
    "seg_map_suffix": Rule(str, nullable=True),
    "classes": None,                      # a list of names or a class-list file: checked by hand
    "ignore_index": Rule(int, min=0, max=255, nullable=True),
    "reduce_zero_label": Rule(bool, nullable=True),
    "splits": None,
    "label_map": None,
    "n_properties": Rule(int, min=1, nullable=True),
    "description": Rule(str, nullable=True),
    "prompt_names": None,                 # {class: name put to the LLM}: checked by hand against the classes
}


def is_spec_path(dataset) -> bool:
    """Whether a ``--dataset`` value names a dataset YAML file (by its suffix)."""
    return isinstance(dataset, (str, os.PathLike)) and Path(str(dataset)).suffix.lower() in SUFFIXES


def find_spec(dataset: str | os.PathLike) -> Path:
    """The YAML file a ``--dataset`` value names: relative to the current folder, else to the repository root."""
    from .. import paths

    p = Path(os.path.expandvars(str(dataset))).expanduser()
    for cand in (p, paths.resolve(p)):
        if cand.is_file():
            return cand.resolve()
    raise FileNotFoundError(f"dataset file {dataset} not found (looked in {Path.cwd()} and {paths.repo_root()})")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    class_names: tuple[str, ...]
    data_root: Path
    img_dir: str
    ann_dir: str
    img_suffix: str = ".jpg"
    seg_map_suffix: str = ".png"
    ignore_index: int = IGNORE_INDEX
    reduce_zero_label: bool = False
    splits: dict = field(default_factory=dict)
    label_map: dict | None = None
    n_properties: int | None = None
    source: Path | None = None
    prompt_names: dict = field(default_factory=dict)

    def folder(self, split: str) -> tuple[Path, Path]:
        """(image folder, label folder) of a split."""
        sub = self.splits.get(split, split)
        return (self.data_root / self.img_dir.replace("{split}", sub),
                self.data_root / self.ann_dir.replace("{split}", sub))

    def open(self, split: str = "train", transform=None, allow_train_folder: bool = False):
        """The split as a ``SegmentationDataset``. Evaluating a split whose image folder *is* the training
        folder is an error unless ``allow_train_folder`` (it would measure fitting, not generalisation)."""
        from .layouts import SegmentationDataset, guard_train_folder, spec_layout

        if split != "train":
            fix = "give img_dir and ann_dir a {split} placeholder (and list the split folders under 'splits')"
            for i, what in ((0, "images"), (1, "label maps")):   # labels too: same file names, training labels
                guard_train_folder(self.folder(split)[i], self.folder("train")[i], split, f"{self.source}",
                                   allow_train_folder, fix=fix, what=what)
        img, ann = self.folder(split)
        ds = SegmentationDataset(self.data_root, spec_layout(self, img, ann), list(self.class_names), "",
                                 transform, self.label_map, self.ignore_index, name=self.name)
        ds.split, ds.ignore_hint = split, f"set `ignore_index: {{value}}` in {self.source}"  # {value}: replaced
        return ds

    def describe(self) -> str:
        return (f"{self.name}: {len(self.class_names)} classes, images {self.img_dir}/*{self.img_suffix}, labels "
                f"{self.ann_dir}/*{self.seg_map_suffix} under {self.data_root}, ignore value {self.ignore_index}")


def _classes(value, base: Path, where: str) -> tuple[str, ...]:
    from .classes import class_key, normalize_class_name, read_class_names

    if isinstance(value, list):
        if not value or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{where}: classes must be a non-empty list of names or a class-list file")
        names = [normalize_class_name(v) for v in value]
    elif isinstance(value, str):
        f = Path(os.path.expandvars(value)).expanduser()
        names = read_class_names(f if f.is_absolute() else base / f)
    else:
        raise ValueError(f"{where}: classes must be a list of names or the path of a .txt/.json class list")
    seen: dict[str, str] = {}
    for n in names:  # descriptions are matched by name up to case and separators: such twins would share them
        if class_key(n) in seen:
            raise ValueError(f"{where}: classes {seen[class_key(n)]!r} and {n!r} are the same name up to case and "
                             "separators; rename one")
        seen[class_key(n)] = n
    return tuple(names)


def _prompt_names(value, class_names: tuple[str, ...], where: str) -> dict[str, str]:
    """``prompt_names``: a mapping {class: the name the LLM is asked under}, every key one of the classes."""
    from .classes import class_key

    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) and k.strip() and v.strip()
                                              for k, v in value.items()):
        raise ValueError(f"{where}: prompt_names must map class names to non-empty prompt names, e.g. "
                         "{Pole: street light pole}")
    by_key = {class_key(c): c for c in class_names}
    unknown = [k for k in value if class_key(k) not in by_key]
    if unknown:
        raise ValueError(f"{where}: prompt_names names {', '.join(map(repr, unknown))}, not among the classes "
                         f"({', '.join(class_names)})")
    return {by_key[class_key(k)]: " ".join(v.split()) for k, v in value.items()}


def _int_map(value, what: str, where: str, values_ok) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: {what} must be a mapping")
    out = {}
    for k, v in value.items():
        if not values_ok(k, v):
            raise ValueError(f"{where}: {what} entry {k!r}: {v!r} is not valid")
        out[k] = v
    return out


def _load(path: Path) -> DatasetSpec:
    from .. import paths
    from ..files import read_yaml_mapping
    from .classes import DATASETS

    where = str(path)
    raw = read_yaml_mapping(path, "dataset file")
    unknown_names(raw, KEYS, "key", where)
    for key in ("name", "img_dir", "ann_dir", "classes"):
        if raw.get(key) is None:
            raise ValueError(f"{where}: {key!r} is required (see `python -m prolab.datasets.spec` for an example)")
    for key, rule in KEYS.items():
        if rule is not None and key in raw:
            check(key, raw[key], rule, where)
    taken = {paths.slug(d): d for d in DATASETS}
    if paths.slug(raw["name"]) in taken:  # its descriptors and spaces would overwrite the registered dataset's
        raise ValueError(f"{where}: name = {raw['name']!r} is the registered dataset {taken[paths.slug(raw['name'])]!r}; "
                         "give your data its own name (e.g. my_" + raw["name"] + ")")
    for key in ("img_dir", "ann_dir"):
        raw[key] = os.path.expandvars(os.path.expanduser(raw[key]))
    base = path.parent
    root = Path(os.path.expandvars(str(raw.get("data_root") or "."))).expanduser()
    root = (root if root.is_absolute() else base / root).resolve()
    splits = _int_map(raw.get("splits") or {}, "splits", where,
                      lambda k, v: isinstance(k, str) and isinstance(v, str) and bool(v.strip()))
    label_map = None
    if raw.get("label_map") is not None:
        label_map = _int_map(raw["label_map"], "label_map", where,
                             lambda k, v: isinstance(k, int) and 0 <= k <= 255 and (v is None or isinstance(v, int)))
    for key in ("img_suffix", "seg_map_suffix"):
        s = raw.get(key)
        if s is not None and not re.fullmatch(r"[^/\\]*\.[A-Za-z0-9]+", s):
            raise ValueError(f"{where}: {key} = {s!r}: must end in a file extension, e.g. '.jpg' or '_label.png'")
    class_names = _classes(raw["classes"], base, where)
    return DatasetSpec(
        name=raw["name"], class_names=class_names, data_root=root,
        img_dir=raw["img_dir"], ann_dir=raw["ann_dir"], img_suffix=raw.get("img_suffix") or ".jpg",
        seg_map_suffix=raw.get("seg_map_suffix") or ".png",
        ignore_index=IGNORE_INDEX if raw.get("ignore_index") is None else raw["ignore_index"],
        reduce_zero_label=bool(raw.get("reduce_zero_label")), splits=splits, label_map=label_map,
        n_properties=raw.get("n_properties"), source=path,
        prompt_names=_prompt_names(raw.get("prompt_names"), class_names, where))


def load_spec(dataset: str | os.PathLike) -> DatasetSpec:
    """Read and check a dataset YAML (read afresh each time: it is small, and an edit must count at once)."""
    return _load(find_spec(dataset))


def spec_id(dataset: str | os.PathLike) -> str:
    """The name plus a hash of what the YAML says (its text and the class names): two different files of the
    same name, or an edited file, never pass for each other in a grid's list of finished cells."""
    from ..files import stable_hash

    spec = load_spec(dataset)
    text = spec.source.read_text(encoding="utf-8")
    return f"{spec.name}-{stable_hash([text, list(spec.class_names)], 8)}"


def dataset_summary(dataset: str) -> str:
    """A few lines on where a dataset's data and names come from (a registered name or a dataset YAML)."""
    from .classes import DATASETS, read_class_names
    from .layouts import LAYOUTS

    if is_spec_path(dataset):
        spec = load_spec(dataset)
        splits = ", ".join(f"{k} -> {spec.folder(k)[0]}" for k in (spec.splits or {"train": "train"}))
        return (f"{spec.describe()}\n  splits: {splits}\n  classes: {', '.join(spec.class_names)}\n"
                f"  from {spec.source}")
    names = read_class_names(dataset)
    if dataset in DATASETS:
        lay = LAYOUTS.get(dataset)
        where = f"images {lay.img_dir}/*{lay.img_suffix}, labels {lay.ann_dir}/*{lay.seg_map_suffix}" if lay else ""
        return f"{DATASETS[dataset].title}: {len(names)} classes; {where}\n  classes: {', '.join(names[:20])}" + \
            (" ..." if len(names) > 20 else "")
    return f"class list {dataset}: {len(names)} classes (no images: describe and properties only)"


EXAMPLE = __doc__.split("Example::\n\n", 1)[1].split("\n\nRelative", 1)[0]

if __name__ == "__main__":
    print("\n".join(line[4:] for line in EXAMPLE.splitlines()))
