"""A hostile user's cases (issue "Nothing mixed, nothing written where it should not be, nothing scored against
the wrong labels"): one fault-injection test per finding, each on the real mechanism (locks, path components,
class binding, split guards), fast enough for the default suite."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prolab import paths

REPO = Path(__file__).resolve().parents[2]


def _data(tmp_path: Path, n: int = 4, size=(40, 30), fill: int | None = None, split: bool = False):
    """A tiny custom dataset: random images, label maps over 3 classes (or all ``fill``)."""
    rng = np.random.default_rng(0)
    subs = ["train", "val"] if split else [""]
    for s in subs:
        for d in ("img", "ann"):
            (tmp_path / d / s).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(tmp_path / "img" / s / f"{i}.jpg")
            lab = np.full((size[1], size[0]), fill, np.uint8) if fill is not None else \
                rng.integers(0, 3, (size[1], size[0]), dtype=np.uint8)
            Image.fromarray(lab).save(tmp_path / "ann" / s / f"{i}.png")
    (tmp_path / "classes.txt").write_text("road\nsky\ntree\n")
    return tmp_path / "img", tmp_path / "ann", tmp_path / "classes.txt"


def _cfg(img, ann, classes, run_name="tiny", **kw):
    from prolab.train.config import TrainConfig

    return TrainConfig.demo(run_name=run_name, dataset="custom", img_dir=str(img), ann_dir=str(ann),
                            classes=str(classes), mode="category", iters=2, batch_size=2, crop_size=32,
                            scale=(40, 30), pretrained=None, channels=8, **kw)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# -- 1: two writers of one run folder ----------------------------------------------------------------------------

def test_a_second_train_of_a_live_run_stops_with_the_holders_pid_and_moves_nothing(tmp_path, cache):
    from prolab.files import FolderBusyError
    from prolab.train import train

    img, ann, classes = _data(tmp_path)
    run = paths.run_dir("shared")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from prolab.files import folder_lock
            with folder_lock({str(run)!r}, "run"):
                print("held", flush=True)
                time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusyError, match=rf"run .*shared is being written by pid {holder.pid}"):
            train(_cfg(img, ann, classes, run_name="shared"), progress=False)
        assert not run.exists() and not list(run.parent.glob("shared@*"))   # nothing made, nothing set aside
        # kill -9: the kernel drops the lock; the next writer proceeds
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        res = train(_cfg(img, ann, classes, run_name="shared"), progress=False)
        assert res.weights.is_file() and not (run.parent / "shared.lock.owner").exists()
    finally:
        holder.kill()


def test_the_cli_says_busy_in_one_line(tmp_path, cache):
    from prolab.files import folder_lock

    img, ann, classes = _data(tmp_path)
    with folder_lock(paths.run_dir("busy"), "run"):
        r = subprocess.run([sys.executable, "-m", "prolab", "train", "--run_name", "busy", "--dataset", "custom",
                            "--img_dir", str(img), "--ann_dir", str(ann), "--classes", str(classes),
                            "--mode", "category", "--iters", "2"],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path)
    assert r.returncode == 2 and f"pid {os.getpid()}" in r.stderr and "Traceback" not in r.stderr


# -- 2, 9, low: names that become paths ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["", "   ", ".", "..", "../..", "/", "x" * 300])
def test_names_that_cannot_be_a_folder_are_refused_by_the_one_function(name):
    with pytest.raises(ValueError, match="run_name"):
        paths.run_dir(name)
    with pytest.raises(ValueError, match="results name"):
        paths.results_dir(name)


@pytest.mark.parametrize("name", ["ok", "My Run", "../../x", "a/b"])
def test_every_name_stays_inside_its_folder(name, tmp_path, monkeypatch):
    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PROLAB_ROOT", str(tmp_path / "repo"))
    for built, root in ((paths.run_dir(name), tmp_path / "cache" / "runs"),
                        (paths.results_dir(name), tmp_path / "repo" / "results"),
                        # your datasets' artefacts: the workspace, never the checkout
                        (paths.descriptor_path(name, name, "p-1").parent, tmp_path / "cache" / "workspace" / "descriptors"),
                        (paths.property_space_path(name, "d", name, "kmeans", 4).parent,
                         tmp_path / "cache" / "workspace" / "properties")):
        assert built.parent == root, built


def test_a_prompt_named_like_a_path_is_refused_before_anything_is_written(tmp_path):
    from prolab.describe.prompts import load_prompt

    bad = tmp_path / "evil.yaml"
    bad.write_text("name: ../../../../tmp/x\ntemplate: 'Describe {class_name}.'\n")
    with pytest.raises(ValueError, match=r"evil\.yaml: name '\.\./\.\./\.\./\.\./tmp/x'"):
        load_prompt(bad)
    with pytest.raises(ValueError, match="prompt tag"):
        paths.descriptor_path("d", "m", "../../x-1")


def test_an_empty_grid_name_never_writes_into_results(tmp_path):
    from prolab.pipeline.grid import load_grid

    cfg = tmp_path / "g.yaml"
    cfg.write_text("name: ''\ndataset: synthetic_outdoor\nseeds: [0]\n")
    with pytest.raises(ValueError, match="'name' must be a non-empty string"):
        load_grid(cfg)
    cfg.write_text("name: '..'\ndataset: synthetic_outdoor\nseeds: [0]\n")
    with pytest.raises(ValueError, match="grid name"):
        load_grid(cfg)


# -- 3, 7: committed folders, names that differ in case -----------------------------------------------------------

def test_a_class_list_named_like_a_kit_folder_never_writes_there(tmp_path):
    from prolab.describe import describe_dataset

    committed = REPO / "descriptors" / "cityscapes_19"
    before = {f: f.read_bytes() for f in committed.iterdir()}
    for name in ("cityscapes_19", "new_classes", "prompt_design_classes"):
        f = tmp_path / f"{name}.txt"
        f.write_text("road\nsky\n")
        with pytest.raises(ValueError, match=rf"named '{name}', like the kit's folder descriptors/{name}/"):
            describe_dataset(str(f), backend="replay", progress=False)
    assert {f: f.read_bytes() for f in committed.iterdir()} == before
    # on purpose: --out_root names the folder; the kit's own class list and the registered name write as always
    paths.guard_kit_folder(str(tmp_path / "cityscapes_19.txt"), "cityscapes_19", tmp_path / "out", "descriptors")
    paths.guard_kit_folder("descriptors/new_classes.txt", "new_classes", None, "descriptors")
    paths.guard_kit_folder("cityscapes_19", "cityscapes_19", None, "descriptors")


def test_the_properties_command_refuses_a_kit_folder_name_too(tmp_path):
    f = tmp_path / "ade20k_150.txt"
    f.write_text("wall\nfloor\n")
    r = subprocess.run([sys.executable, "-m", "prolab", "properties", "--dataset", str(f)], capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 2 and "like the kit's folder properties/ade20k_150/" in r.stderr


def test_datasets_differing_only_in_case_do_not_share_a_descriptor_folder(tmp_path):
    from prolab.describe import describe_dataset

    out = tmp_path / "out"
    (out / "hcol").mkdir(parents=True)
    (out / "hcol" / "m__p-1.meta.json").write_text(json.dumps({"dataset": "hcol"}))
    f = tmp_path / "HCOL.txt"
    f.write_text("road\nsky\n")
    with pytest.raises(ValueError, match="holds the descriptors of dataset 'hcol'"):
        describe_dataset(str(f), backend="replay", out_root=out, progress=False)


def test_runs_differing_only_in_case_do_not_share_a_folder(tmp_path, cache):
    from prolab.train import train

    img, ann, classes = _data(tmp_path)
    train(_cfg(img, ann, classes, run_name="Caps"), progress=False)
    with pytest.raises(ValueError, match="belongs to run_name 'Caps'"):
        train(_cfg(img, ann, classes, run_name="caps"), progress=False)


# -- 5: the {split} guard covers label folders --------------------------------------------------------------------

def test_val_images_are_never_scored_against_the_training_label_maps(tmp_path):
    from prolab.datasets.layouts import LayoutError
    from prolab.datasets.spec import load_spec

    _data(tmp_path, split=True)
    spec = tmp_path / "mine.yaml"
    spec.write_text("name: mine\nimg_dir: img/{split}\nann_dir: ann/train\nclasses: classes.txt\n")
    with pytest.raises(LayoutError, match=r"'val' split's label maps are the training folder"):
        load_spec(spec).open("val")
    load_spec(spec).open("train")   # training itself is fine
    # the flag-based custom dataset obeys the same guard
    from prolab.train.data import open_split

    cfg = _cfg(tmp_path / "img/{split}", tmp_path / "ann/train", tmp_path / "classes.txt")
    with pytest.raises(LayoutError, match="label maps are the training folder"):
        open_split(cfg, "val")


# -- 6: runs are bound to their classes ----------------------------------------------------------------------------

def test_evaluate_refuses_a_class_list_edited_since_training(tmp_path, cache):
    from prolab.train import train
    from prolab.evaluate.score import evaluate_runs

    img, ann, classes = _data(tmp_path)
    train(_cfg(img, ann, classes, run_name="bound"), progress=False)
    bound = json.loads((paths.run_dir("bound") / "classes.json").read_text())
    assert bound["class_names"] == ["road", "sky", "tree"]
    classes.write_text("sky\nroad\ntree\n")          # two names swapped
    with pytest.raises(ValueError, match=r"the same classes in another order: 'sky' is label 0, was 1"):
        evaluate_runs(["bound"], progress=False)
    classes.write_text("road\nsky\n")                # one name fewer: no raw size-mismatch dump
    with pytest.raises(ValueError, match=r"missing from it: \['tree'\]"):
        evaluate_runs(["bound"], progress=False)


def test_the_mmseg_plugin_refuses_a_space_for_other_classes():
    pytest.importorskip("mmseg")
    from types import SimpleNamespace as NS

    from prolab.interop.mmseg.hooks import ProLabClassCheckHook

    names = [f"class {i}" for i in range(18)]
    head = NS(space_classes=list(reversed(names)))
    runner = NS(model=NS(decode_head=head, auxiliary_head=None),
                train_loop=NS(dataloader=NS(dataset=NS(metainfo={"classes": tuple(names)}))))
    with pytest.raises(ValueError, match="the same classes in another order"):
        ProLabClassCheckHook().before_train(runner)
    head.space_classes = names
    ProLabClassCheckHook().before_train(runner)
    assert "ProLabClassCheckHook" in (REPO / "configs/mmseg/_base_/runtime.py").read_text()


# -- 11: a grid's train section ------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [("seed", 3), ("mode", "category"), ("loss", "bce"), ("temperature", 0.1),
                                        ("run_name", "x"), ("property_space", "p.safetensors"),
                                        ("dataset", "cityscapes_19"), ("n_properties", 12)])
def test_a_grid_train_section_with_a_per_cell_setting_is_refused_at_check(tmp_path, key, value):
    from prolab.pipeline.grid import load_grid

    cfg = tmp_path / "g.yaml"
    cfg.write_text(f"name: g\ndataset: synthetic_outdoor\nseeds: [0]\ntrain:\n  {key}: {json.dumps(value)}\n")
    with pytest.raises(ValueError, match=rf"g\.yaml: train: \['{key}'\] are set by each cell"):
        load_grid(cfg)


def test_grid_check_with_a_shard_lists_only_its_runs():
    r = subprocess.run([sys.executable, "-m", "prolab", "grid", "--config", "configs/grid_demo.yaml", "--check",
                        "--shard", "1/2"], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    total = int(r.stdout.split(": ", 1)[1].split(" runs")[0])
    listed = [line for line in r.stdout.splitlines() if line.startswith("  ")]
    assert len(listed) == total // 2 and f"shard 1/2: {total // 2} of them" in r.stdout


# -- 14: nothing labelled ------------------------------------------------------------------------------------------

def test_a_dataset_whose_labels_are_all_ignore_does_not_train(tmp_path, cache):
    from prolab.datasets.layouts import LayoutError
    from prolab.train import train

    img, ann, classes = _data(tmp_path, fill=255)
    with pytest.raises(LayoutError, match="no pixel of the 4 label maps .* belongs to a class"):
        train(_cfg(img, ann, classes, run_name="empty"), progress=False)
    assert not (paths.run_dir("empty") / "metrics.jsonl").exists()


# -- low: class lists ----------------------------------------------------------------------------------------------

def test_an_empty_class_name_names_its_file(tmp_path):
    from prolab.datasets import load_class_names

    f = tmp_path / "c.json"
    f.write_text(json.dumps(["road", "  ", "sky"]))
    with pytest.raises(ValueError, match=r"c\.json: class 1: empty class name"):
        load_class_names(f)


# -- low: the cache and writes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["/proc/none/prolab", "FILE/sub"])
def test_an_unusable_cache_is_named(tmp_path, monkeypatch, value):
    (tmp_path / "FILE").write_text("x")
    monkeypatch.setenv("PROLAB_CACHE", value.replace("FILE", str(tmp_path / "FILE")))
    with pytest.raises(OSError, match="PROLAB_CACHE=.*cannot create the cache folder"):
        paths.cache_root()


def test_an_empty_cache_variable_is_not_read_as_unset(monkeypatch):
    monkeypatch.setenv("PROLAB_CACHE", "")
    with pytest.raises(ValueError, match="PROLAB_CACHE is set but empty"):
        paths.cache_root()


def test_a_failed_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    import errno

    from prolab.files import atomic_write_text

    f = atomic_write_text(tmp_path / "a.json", "old")

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", lambda fd: full(fd, b""))
    with pytest.raises(OSError, match=r"cannot write .*a\.json: No space left on device"):
        atomic_write_text(f, "new")
    assert f.read_text() == "old" and not list(tmp_path.glob(".*.tmp"))


def test_a_data_root_that_is_a_file_says_so(tmp_path):
    from prolab.datasets.layouts import LayoutError, open_dataset

    (tmp_path / "root").write_text("")
    with pytest.raises(LayoutError, match="is a file, not a folder"):
        open_dataset("cityscapes_19", tmp_path / "root", "val")


def test_a_space_where_classes_have_no_property_is_refused(tmp_path):
    from prolab.properties import PropertySpace
    from prolab.train.config import TrainConfig
    from prolab.train.build import load_space_for

    src = next((REPO / "properties" / "synthetic_outdoor").glob("*k24.safetensors"))
    space = PropertySpace.load(src)
    space.signatures = space.signatures.copy()
    space.signatures[:16] = 0
    bad = space.save(tmp_path / "bad.safetensors")
    cfg = TrainConfig.demo(property_space=str(bad))
    with pytest.raises(ValueError, match=r"bad\.safetensors: 16 classes have no property"):
        load_space_for(cfg, list(space.class_names))


# -- every entry point: one line, exit 2 ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["prolab.interop.mmseg.train", "no_such_config.py"],
                                  ["prolab.datasets.example", "/proc/none/x"],
                                  ["prolab.describe.report", "no_such_file.json"]])
def test_module_entry_points_fail_in_one_line(argv, tmp_path):
    r = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(REPO), "PROLAB_CACHE": str(tmp_path / "c")})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "error:" in r.stderr.strip().splitlines()[-1]   # argparse's usage line may come before it


def test_every_training_setting_is_checked_so_a_string_is_never_a_truthy_flag():
    """A grid's `train:` or a config YAML saying "false" for a flag used to train with it on (`amp`, `resume`):
    every TrainConfig field has a validation rule now."""
    from dataclasses import fields

    from prolab.train.config import TrainConfig
    from prolab.train.config import RULES

    assert [f.name for f in fields(TrainConfig) if f.name not in RULES] == []
    for bad, msg in ((dict(amp="false"), "amp = 'false': must be true or false"),
                     (dict(resume="no"), "resume = 'no': must be true or false"),
                     (dict(img_suffix="jpg"), "img_suffix = 'jpg': must be a file ending"),
                     (dict(backbone=3), "backbone = 3: must be a string"),
                     (dict(property_space=""), "property_space = '': must be a path")):
        with pytest.raises(ValueError, match=msg):
            TrainConfig.preset("demo", **bad)
