"""What every subcommand shares: help texts, flag values read relative to the caller, the subparser factory."""
from __future__ import annotations

import argparse

DATASET_HELP = ("a registered dataset (see `prolab doctor`), a dataset YAML (your own data; "
                "docs/howto/own-data.md; `python -m prolab.datasets.spec` prints an example) or a class-list file (.txt/.json)")
K_HELP = ("K, the number of properties (default: the paper's K for a paper dataset, e.g. 256 for ade20k_150; "
          "a dataset YAML's n_properties; otherwise one per 6 descriptions, at least 2)")


def help_text(text: str, default=None) -> str:
    """A help line with its default said once (argparse's %(default)s is not used anywhere)."""
    return text if default is None else f"{text} (default: {default})"


def here(value: str | None) -> str | None:
    """A path flag: relative to the current folder (where the user is), unless it only exists relative to the
    repository root (``configs/demo.yaml`` from anywhere). The API and the notebooks keep the repository rule."""
    if not value:
        return value
    from pathlib import Path

    from .. import paths

    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    probe = lambda q: Path(str(q).replace("{split}", "train")).exists()  # noqa: E731  (a {split} template)
    if not probe(p) and probe(paths.resolve(p)):
        return value
    return str(Path.cwd() / p)


PATH_FLAGS = ("out_root", "cache_path", "descriptor_file", "descriptor_root", "release_export", "data_root",
              "img_dir", "ann_dir", "classes", "property_space", "out_dir", "config", "checkpoint")


def subparser(sub, name: str, help: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help)


def say_dataset(ds: str) -> None:
    """Name the dataset a file stands for, so no name is taken silently from a file name."""
    from ..datasets import DATASETS, dataset_key, load_class_names

    if ds not in DATASETS:
        print(f"dataset {dataset_key(ds)!r} ({len(load_class_names(ds))} classes) from {ds}", flush=True)
