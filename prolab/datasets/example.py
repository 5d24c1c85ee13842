"""A small "your own data" example, written the way users' data usually arrives: JPEG photos and PNG label maps
in ``images/{split}`` and ``labels/{split}``, capitalised class names, label 11 meaning "unlabelled", a test
split, and a dataset YAML that describes it all. The scenes are the embedded generator's street scenes,
relabelled to 11 street classes (cloud counts as Sky; mountain, sand, rock, snow, bus and boat are unlabelled).

    python -m prolab.datasets.example /tmp/street        # writes /tmp/street/street.yaml and the data

It is what the "Your own dataset" guide (docs/howto/own-data.md), the tests and ``results/street_grid`` run on. Its classes
are described offline: the call cache holds the embedded default's lower-case names, and class names are
matched case-insensitively.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..files import atomic_write_json, atomic_write_text, read_json
from ..progress import tqdm
from .synthetic import C, render_scene

# our class -> the generator's classes it is made of; everything else is "unlabelled"
CLASSES = {"Sky": ("sky", "cloud"), "Building": ("building",), "Pole": ("pole",), "Road": ("road",),
           "Sidewalk": ("sidewalk",), "Tree": ("tree",), "Bush": ("bush",), "Fence": ("fence",), "Car": ("car",),
           "Grass": ("grass",), "Water": ("water",)}
UNLABELLED = len(CLASSES)   # 11, as in CamVid-style data


@dataclass(frozen=True)
class ExampleDefaults:
    size: int = 128
    n_train: int = 160
    n_val: int = 40
    n_test: int = 40
    seed: int = 7
    street_fraction: float = 0.85
    version: int = 1


def _lut() -> np.ndarray:
    lut = np.full(256, UNLABELLED, dtype=np.uint8)
    for i, parts in enumerate(CLASSES.values()):
        for name in parts:
            lut[C[name]] = i
    return lut


YAML = """\
# The example dataset of prolab.datasets.example: a dataset YAML as you would write one for your own data.
name: street
data_root: .                # relative to this file
img_dir: images/{split}
ann_dir: labels/{split}
img_suffix: .jpg
seg_map_suffix: .png
classes: classes.txt        # one name per line, in label order
ignore_index: 11            # the label value that means "unlabelled"
splits: {train: train, val: val, test: test}
"""


def write_example(out_dir: str | Path, defaults: ExampleDefaults = ExampleDefaults(), progress: bool = True) -> Path:
    """Write the example under ``out_dir`` (skipped when its stamp matches) and return its YAML file."""
    out = Path(out_dir).expanduser().resolve()
    stamp, spec = out / "prolab_example.json", out / "street.yaml"
    if stamp.exists() and read_json(stamp).get("config") == asdict(defaults) and spec.exists():
        return spec
    lut = _lut()
    jobs = [(split, i) for split, n in (("train", defaults.n_train), ("val", defaults.n_val),
                                        ("test", defaults.n_test)) for i in range(n)]
    for split in ("train", "val", "test"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    offset = {"train": 0, "val": 100_000, "test": 200_000}
    for split, i in tqdm(jobs, desc="rendering the example dataset", unit="image", disable=not progress):
        img, lab = render_scene(defaults.seed * 1_000_003 + offset[split] + i, defaults.size, defaults.street_fraction)
        Image.fromarray(img).save(out / "images" / split / f"{split}_{i:04d}.jpg", quality=92)
        Image.fromarray(lut[lab]).save(out / "labels" / split / f"{split}_{i:04d}.png")
    atomic_write_text(out / "classes.txt", "\n".join(CLASSES) + "\n")
    atomic_write_text(spec, YAML)
    atomic_write_json(stamp, {"config": asdict(defaults), "classes": list(CLASSES)})
    return spec


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python -m prolab.datasets.example OUT_DIR   (writes OUT_DIR/street.yaml and the data)")
    from prolab.entry import entry_point

    sys.exit(entry_point(lambda: print(write_example(sys.argv[1])), "python -m prolab.datasets.example"))
