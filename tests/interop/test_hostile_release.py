"""Hostile-user review: converting the authors' checkpoint (errors, half-made runs, --force, two writers), their
property partition (ambiguous, blank and repeated entries) and the JupyterLab save hook (a user's notebooks)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from prolab.datasets import load_class_names

REPO = Path(__file__).resolve().parents[2]
ADE_SPACE = next((REPO / "properties" / "ade20k_150").glob("*.safetensors"))


# -- prolab.interop.release.checkpoint ----------------------------------------------------------------------------------

@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny_release():
    """Every key of the release's layout (no auxiliary head) as a tiny tensor: converts in milliseconds; the
    property head has the committed ADE20K space's width."""
    from prolab.properties import PropertySpace
    from prolab.interop.release.keys import release_key_names

    d = PropertySpace.load(ADE_SPACE).dim
    state = {k: torch.zeros(1) for k in release_key_names(aux=False)}
    state["backbone.pos_embed"] = torch.zeros(1, 1 + 4, 8)
    state["decode_head.conv_seg.weight"] = torch.zeros(d, 64, 1, 1)
    state["decode_head.conv_seg.bias"] = torch.zeros(d)
    state["decode_head.bottleneck.conv.weight"] = torch.zeros(64, 8, 3, 3)
    return state


def _train_module():
    import importlib

    return importlib.import_module("prolab.train.build")   # where release_to_run finds build_model


class _TinyModel(torch.nn.Module):
    """Stands in for the ViT-Adapter-B model (built in seconds, ~0.4 GB): what release_to_run needs of it."""
    warmup_classifier = None

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(2, 2)

    def load_state_dict(self, state, strict=True):   # the numeric conversion is tested in test_release_checkpoint
        self.loaded = state


@pytest.fixture
def tiny_model(monkeypatch):
    from prolab.properties import PropertySpace

    def build(cfg, class_names):   # reads the space the way build_model does: it must exist where cfg says
        return _TinyModel(), PropertySpace.load(cfg.property_space)

    monkeypatch.setattr(_train_module(), "build_model", build)


def _old_run(run: Path, old_id: str = "old1") -> None:
    run.mkdir(parents=True)
    (run / "identity.json").write_text(json.dumps({"id": old_id}))
    (run / "model.safetensors").write_bytes(b"the previous weights")


def _siblings(run: Path) -> list[str]:
    return sorted(p.name for p in run.parent.iterdir()) if run.parent.is_dir() else []


def test_failed_conversion_leaves_nothing_and_retry_works(tiny_release, tmp_path, cache):
    from prolab import paths
    from prolab.interop.release.checkpoint import release_to_run

    missing = tmp_path / "no-data"
    for _ in range(2):   # the retry fails for the same reason, not FileExistsError of a half-made folder
        with pytest.raises((FileNotFoundError, ValueError)) as e:
            release_to_run(tiny_release, ADE_SPACE, "rel", data_root=missing)
        assert not isinstance(e.value, FileExistsError), e.value
    run = paths.run_dir("rel")
    assert not run.exists() and not [n for n in _siblings(run) if ".partial-" in n]


def test_late_failure_removes_the_staging_folder(tiny_release, tmp_path, cache, monkeypatch):
    from prolab import paths
    from prolab.datasets.sample import write_sample
    from prolab.interop.release.checkpoint import release_to_run

    def broken(cfg, class_names):
        raise RuntimeError("model build failed")

    monkeypatch.setattr(_train_module(), "build_model", broken)
    data_root = write_sample("ade20k_150", tmp_path / "data")
    for _ in range(2):
        with pytest.raises(RuntimeError, match="model build failed"):
            release_to_run(tiny_release, ADE_SPACE, "rel", data_root=data_root)
    run = paths.run_dir("rel")
    assert not run.exists() and not [n for n in _siblings(run) if ".partial-" in n]


def test_force_sets_the_old_run_aside_only_after_the_new_one_is_made(tiny_release, tiny_model, tmp_path, cache):
    from prolab import paths
    from prolab.datasets.sample import write_sample
    from prolab.interop.release.checkpoint import release_to_run

    run = paths.run_dir("rel")
    _old_run(run)
    with pytest.raises((FileNotFoundError, ValueError)):   # the new run fails: the old one stays where it was
        release_to_run(tiny_release, ADE_SPACE, "rel", data_root=tmp_path / "no-data", force=True)
    assert (run / "model.safetensors").read_bytes() == b"the previous weights"
    assert [n for n in _siblings(run) if not n.endswith((".lock", ".lock.owner"))] == ["rel"]

    data_root = write_sample("ade20k_150", tmp_path / "data")
    res = release_to_run(tiny_release, ADE_SPACE, "rel", data_root=data_root, force=True)
    assert res.run_dir == run and res.property_space == run / "property_space.safetensors"
    for name in ("model.safetensors", "config.json", "identity.json", "classes.json", "release.json",
                 "property_space.safetensors", "property_space.json"):
        assert (run / name).is_file(), name
    # the recorded config names the space at its final place, not the staging folder's
    assert json.loads((run / "config.json").read_text())["property_space"] == str(run / "property_space.safetensors")
    assert json.loads((run / "classes.json").read_text())["class_names"] == load_class_names("ade20k_150")
    assert (run.with_name("rel@old1") / "model.safetensors").read_bytes() == b"the previous weights"  # kept
    assert not [n for n in _siblings(run) if ".partial-" in n]
    with pytest.raises(FileExistsError, match="--force"):
        release_to_run(tiny_release, ADE_SPACE, "rel", data_root=data_root)


def test_a_second_conversion_into_the_same_run_is_refused(tiny_release, tiny_model, tmp_path, cache):
    from filelock import FileLock

    from prolab import paths
    from prolab.interop.release.checkpoint import release_to_run

    run = paths.run_dir("rel")
    run.parent.mkdir(parents=True)
    with FileLock(str(run.with_name("rel.lock")), timeout=0):   # another process converting into runs/rel
        run.with_name("rel.lock.owner").write_text("pid 4242 on host since 2026-01-01T00:00:00Z\n")
        with pytest.raises(RuntimeError, match="4242") as e:
            release_to_run(tiny_release, ADE_SPACE, "rel", data_root=tmp_path / "data")
        assert str(run) in str(e.value) and "\n" not in str(e.value)
        assert not run.exists()


def test_cli_errors_are_one_line_and_exit_2(tmp_path, cache, capsys):
    from prolab.interop.release.checkpoint import cli

    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    assert cli([str(bad), str(ADE_SPACE), "--run_name", "x", "--data_root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "garbage.pth" in err and "Traceback" not in err
    # a bank file torch cannot read (torch.load raises a bare KeyError): named, in one line
    assert cli([str(ADE_SPACE), str(bad), "--run_name", "x", "--data_root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "garbage.pth" in err
    with pytest.raises(SystemExit) as e:   # a usage error: one line too
        cli([str(bad)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "--run_name" in err


def test_cli_module_exits_2_without_a_traceback(tmp_path):
    env = {**os.environ, "PROLAB_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "prolab.interop.release.checkpoint", str(tmp_path / "nope.pth"), str(ADE_SPACE),
                        "--run_name", "x", "--data_root", str(tmp_path)], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error: ") and "nope.pth" in lines[0]


# -- prolab.interop.release.partition -----------------------------------------------------------------------------------

NAMES = ["road", "sky", "sky: blue", "car"]


def _write(tmp_path, data, name="property_x.json"):
    f = tmp_path / name
    f.write_text(json.dumps(data))
    return f


def test_entry_that_reads_as_two_classes_is_an_error(tmp_path):
    from prolab.interop.release import read_partition

    f = _write(tmp_path, {"p": ["sky: blue: a bright blue sky", "road: flat"]})
    with pytest.raises(ValueError) as e:
        read_partition(f, NAMES)
    msg = str(e.value)
    assert str(f) in msg and "sky: blue: a bright blue sky" in msg and "'sky'" in msg and "'sky: blue'" in msg
    assert "--aliases" in msg and "\n" not in msg
    # the user's alias of one spelling decides
    part = read_partition(f, NAMES, aliases={"sky: blue": "sky: blue"})
    assert part["members"][0][0] == (NAMES.index("sky: blue"), "a bright blue sky")
    part = read_partition(f, NAMES, aliases={"sky": "sky"})
    assert part["members"][0][0] == (NAMES.index("sky"), "blue: a bright blue sky")


def test_entry_with_one_reading_is_read(tmp_path):
    from prolab.interop.release import read_partition

    f = _write(tmp_path, {"p": ["sky: grey: overcast", "car: fast: on roads", "sky: blue sky"]})
    part = read_partition(f, NAMES)   # "sky: grey" and "car: fast" are no classes: one reading each
    assert part["members"] == [[(1, "grey: overcast"), (3, "fast: on roads"), (1, "blue sky")]]
    f = _write(tmp_path, {"p": ["sky: blue: a bright blue sky"]})
    # without the class "sky: blue", the entry reads one way only
    assert read_partition(f, ["road", "sky", "car"])["members"] == [[(1, "blue: a bright blue sky")]]
    # with "sky: blue" the only such class, it is that class (it used to be read as an unknown class "sky")
    assert read_partition(f, ["road", "sky: blue"])["members"] == [[(1, "a bright blue sky")]]


@pytest.mark.parametrize("prop", ["", "   "])
def test_blank_property_name_is_refused(tmp_path, prop):
    from prolab.interop.release import read_partition

    f = _write(tmp_path, {"fine": ["road: flat"], prop: ["car: fast"]})
    with pytest.raises(ValueError, match="blank") as e:
        read_partition(f, NAMES)
    assert str(f) in str(e.value)


def test_dropped_duplicates_are_reported(tmp_path):
    from prolab.interop.release import partition_report, partition_report_lines, partition_space, read_partition
    from prolab.embed.embedders import Embedder

    class Stub(Embedder):
        kind, model_id, dim = "stub", "stub", 3

        def encode(self, texts, progress=False):
            return np.array([[len(t), 1.0, 0.5] for t in texts], dtype=np.float32)

    f = _write(tmp_path, {"p": ["road: flat", "road : flat", "car: fast"], "q": ["car: fast", "car: fast"]},
               "property_cityscapes.json")
    cs = load_class_names("cityscapes_19")
    part = read_partition(f, cs)
    assert part["duplicates_dropped"] == 2 and part["duplicate_entries"] == [("p", "road : flat"), ("q", "car: fast")]
    lines = partition_report_lines(partition_report(partition_space(f, "cityscapes_19", embedder=Stub(),
                                                                    progress=False)))
    dup = [ln for ln in lines if "duplicate" in ln]
    assert len(dup) == 1 and "2" in dup[0] and "road : flat" in dup[0]


# -- prolab.lab -------------------------------------------------------------------------------------------------

def test_save_hook_leaves_the_users_notebooks_in_notebooks_alone(tmp_path, monkeypatch):
    from prolab.lab import strip_outputs_on_save

    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    monkeypatch.setenv("PROLAB_ROOT", str(root))

    def ran():
        cell = {"cell_type": "code", "source": "1", "metadata": {"execution": {}}, "execution_count": 3,
                "outputs": [{"output_type": "stream", "name": "stdout", "text": "1\n"}]}
        return {"type": "notebook", "content": {"cells": [cell], "metadata": {"widgets": {}}, "nbformat": 4,
                                                "nbformat_minor": 5}}

    class Manager:
        root_dir = str(root)

    for name in ("Untitled.ipynb", "05_train_segmentation-Copy1.ipynb", "09_mine.ipynb", "mine.ipynb"):
        model = ran()
        strip_outputs_on_save(model, f"notebooks/{name}", Manager())
        assert model == ran(), name
    model = ran()
    strip_outputs_on_save(model, "notebooks/05_train_segmentation.ipynb", Manager())   # the kit's own
    assert model["content"]["cells"][0]["outputs"] == [] and "widgets" not in model["content"]["metadata"]


def test_kit_notebooks_are_the_pipeline_and_the_committed_ones():
    import yaml

    from prolab.lab import KIT_NOTEBOOKS

    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    assert list(KIT_NOTEBOOKS) == [f"{s['notebook']}.ipynb" for s in demo["notebooks"]]
    assert set(KIT_NOTEBOOKS) == {p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")
                                  if "-Copy" not in p.name}
