"""A second label set over the embedded default's images: coarser classes with other names.

ProLab's paper leaves a property space *shared across datasets* as future work. To test it without a second
dataset, ``synthetic_coarse`` relabels the same rendered scenes with a coarser vocabulary borrowed from
Cityscapes and ADE20K: grass, tree and bush become *vegetation*; mountain, sand, rock and snow become
*terrain*; sky and cloud become *sky*. The descriptions of those names are already in the committed call cache
(asked for Cityscapes and ADE20K), so the variant is described offline with 0 new calls.

``python -m prolab.datasets.variants DIR`` writes ``DIR/synthetic_coarse.yaml`` (a dataset YAML, see
``prolab.datasets.spec``) pointing at the generated images in the cache.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from ..files import atomic_write_text
from .resolve import load_class_names

NAME = "synthetic_coarse"
# coarse class -> the synthetic_outdoor classes it merges
COARSE = {"sky": ["sky", "cloud"], "vegetation": ["grass", "tree", "bush"],
          "terrain": ["mountain", "sand", "rock", "snow"], "water": ["water"], "road": ["road"],
          "sidewalk": ["sidewalk"], "building": ["building"], "fence": ["fence"], "pole": ["pole"], "car": ["car"],
          "bus": ["bus"], "boat": ["boat"]}


def fine_to_coarse() -> dict[str, str]:
    """synthetic_outdoor class -> its coarse class (every fine class has exactly one)."""
    out = {f: c for c, fs in COARSE.items() for f in fs}
    fine = load_class_names("synthetic_outdoor")
    missing = sorted(set(fine) - set(out))
    if missing or len(out) != len(fine):
        raise AssertionError(f"the coarse vocabulary does not cover synthetic_outdoor: {missing}")
    return out


def write_coarse_variant(folder: str | Path, progress: bool = True) -> Path:
    """Write ``synthetic_coarse.yaml`` in ``folder`` (the embedded default is generated first if needed)."""
    from .synthetic import generate

    root = generate(progress=progress)
    fine = load_class_names("synthetic_outdoor")
    coarse = list(COARSE)
    mapping = fine_to_coarse()
    spec = {"name": NAME, "data_root": str(root), "img_dir": "img_dir/{split}", "ann_dir": "ann_dir/{split}",
            "img_suffix": ".png", "seg_map_suffix": ".png", "classes": coarse, "ignore_index": 255,
            "splits": {"train": "train", "val": "val"},
            "label_map": {i: coarse.index(mapping[f]) for i, f in enumerate(fine)}}
    out = Path(folder).expanduser() / f"{NAME}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    header = ("# The embedded default's images with a coarser vocabulary (prolab.datasets.variants): written by\n"
              "# `python -m prolab.datasets.variants DIR`; data_root is this machine's generated copy.\n")
    return atomic_write_text(out, header + yaml.safe_dump(spec, sort_keys=False))


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m prolab.datasets.variants DIR")
    from prolab.entry import entry_point

    sys.exit(entry_point(lambda: print(write_coarse_variant(sys.argv[1])), "python -m prolab.datasets.variants"))
