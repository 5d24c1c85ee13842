"""The notebook pipeline runner, the ablation grid and the tables."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import make_scratch_root, run_prolab
import yaml

from prolab import paths
from prolab.pipeline.grid import load_grid, run_grid
from prolab.pipeline.runner import load_config
from prolab.reports.tables import all_tables, write_tables

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def scratch_results(tmp_path, monkeypatch):
    """Run pipelines against a scratch copy of the repository root so results/ stays untouched."""
    return make_scratch_root(tmp_path, monkeypatch)


def _config(root, steps, name="t"):
    f = root / "configs" / f"{name}.yaml"
    f.write_text(yaml.safe_dump({"run_name": name, "notebooks": steps}))
    return f


# Executing, skipping and re-running changed steps are tested on a two-step chain in test_chain.py; here a kill
# between two steps (the second a cheap one: tables from a copy of a committed grid).
STEPS = [{"notebook": "02_llm_retrieval", "parameters": {"dataset": "synthetic_outdoor", "out_root": "results/t/d"}},
         {"notebook": "07_ablation_tables", "parameters": {"grid": "results/grid_copy", "write": False}}]


def test_runner_resumes_after_kill(scratch_results):
    shutil.copytree(REPO / "results" / "demo_grid", scratch_results / "results" / "grid_copy")
    cfg = _config(scratch_results, STEPS, "k")
    env = {**os.environ}
    proc = subprocess.Popen([sys.executable, "-m", "prolab", "run", "--config", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state = scratch_results / "results" / "k" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not state.exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists() and "07_ablation_tables.ipynb" not in json.loads(state.read_text())
    r = run_prolab("run", "--config", cfg)          # the resumed run: in process (its exit status is not the point)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "02_llm_retrieval.ipynb: unchanged, skipped" in r.stdout
    assert set(json.loads(state.read_text())) == {"02_llm_retrieval.ipynb", "07_ablation_tables.ipynb"}


def test_bad_run_config(scratch_results):
    with pytest.raises(FileNotFoundError, match="no notebook 99_nothing.ipynb"):
        load_config(_config(scratch_results, [{"notebook": "99_nothing"}], "bad"))


GRID = {"name": "tgrid", "dataset": "synthetic_outdoor", "base": {"n_properties": 8},
        "vary": {"mode": ["category"]}, "seeds": [0],
        "train": {"iters": 2, "batch_size": 2, "crop_size": 64, "scale": [128, 64], "channels": 16}}


def _grid(root, spec, name="g"):
    f = root / "configs" / f"{name}.yaml"
    f.write_text(yaml.safe_dump(spec))
    return f


def test_grid_appends_rows_and_skips_finished_cells(scratch_results):
    cfg = load_grid(_grid(scratch_results, GRID))
    assert [c["axis"] for c in cfg.cells()] == ["base", "mode"]
    runs = run_grid(cfg, progress=False)
    assert len(runs) == 2 and set(runs["mode"]) == {"property", "category"}
    assert {"mIoU", "mAcc", "aAcc", "train_seconds", "n_properties", "seed"} <= set(runs.columns)
    out = scratch_results / "results" / "tgrid"
    curves = pd.read_csv(out / "curves.csv")
    assert len(curves) == 4
    # a second call finds both cells in the CSV and trains nothing
    mtime = (out / "runs.csv").stat().st_mtime_ns
    again = run_grid(cfg, progress=False)
    assert len(again) == 2 and (out / "runs.csv").stat().st_mtime_ns == mtime
    # one more seed: only the two new cells run
    more = run_grid(load_grid(_grid(scratch_results, {**GRID, "seeds": [0, 1]})), progress=False)
    assert len(more) == 4 and sorted(more["seed"].tolist()) == [0, 0, 1, 1]
    # rows made by other code are not results of this code: they are run again and replaced
    stale = pd.read_csv(out / "runs.csv")
    stale.loc[stale["seed"] == 1, "code"] = "older-code"
    stale.to_csv(out / "runs.csv", index=False)
    redone = run_grid(load_grid(_grid(scratch_results, {**GRID, "seeds": [0, 1]})), progress=False)
    assert len(redone) == 4 and set(redone["code"]) == {stale.loc[stale["seed"] == 0, "code"].iloc[0]}
    assert len(pd.read_csv(out / "curves.csv")) == 8


def test_grid_cross_multiplies_cells_and_unseen_rows_carry_the_protocol(scratch_results):
    spec = {**GRID, "vary": {"mode": ["name_embedding"]}, "cross": {"iters": [1, 2]},
            "train": {**GRID["train"], "unseen": "bus,boat"}}
    spec["train"].pop("iters")
    cfg = load_grid(_grid(scratch_results, spec))
    cells = cfg.cells()
    assert [(c["mode"], c["iters"]) for c in cells] == [("property", 1), ("name_embedding", 1), ("property", 2),
                                                        ("name_embedding", 2)]
    assert len({c["cell"] for c in cells}) == 4
    runs = run_grid(cfg, progress=False)
    assert {"seen_mIoU", "unseen_mIoU", "HM", "cal_seen_mIoU", "cal_unseen_mIoU", "cal_HM", "gamma"} <= set(runs)
    assert sorted(runs["iters"]) == [1, 1, 2, 2] and runs["HM"].notna().all()
    from prolab.properties import PropertySpace

    spaces = list((paths.cache_root() / "grid_spaces").rglob("*unseen-bus-boat*.safetensors"))
    assert spaces and PropertySpace.load(spaces[0]).notes["unseen"] == ["bus", "boat"]


def test_grid_shards_split_the_cells_and_merge_their_rows(scratch_results, monkeypatch):
    """Two shards running at once over one results folder: each runs its own cells, no row is lost."""
    import threading

    import prolab.pipeline.grid as grid

    def fake_cell(cfg, cell, progress=True):     # training is tested above; here only the bookkeeping
        time.sleep(0.05)
        return {**cell, "mIoU": 1.0, "train_seconds": 0.0}, [{"cell": cell["cell"], "iteration": 1, "loss": 0.5}]

    monkeypatch.setattr(grid, "run_cell", fake_cell)
    cfg = load_grid(_grid(scratch_results, {**GRID, "seeds": [0, 1, 2]}))
    ran = {}
    threads = [threading.Thread(target=lambda i=i: ran.update({i: run_grid(cfg, progress=False, shard=(i, 2))}))
               for i in (0, 1)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    rows = pd.read_csv(scratch_results / "results" / "tgrid" / "runs.csv")
    assert sorted(rows["cell"]) == sorted(c["cell"] for c in cfg.cells()) and len(rows) == 6
    assert len(pd.read_csv(scratch_results / "results" / "tgrid" / "curves.csv")) == 6
    assert max(len(r) for r in ran.values()) <= 6
    with pytest.raises(ValueError, match="I/N"):
        grid.parse_shard("2")
    with pytest.raises(ValueError, match="0 <= I < N"):
        grid.parse_shard("2/2")
    assert grid.parse_shard("1/3") == (1, 3) and grid.parse_shard(None) is None


def test_tables_regenerate_identically(tmp_path):
    runs = pd.DataFrame([
        {"axis": "base", "cell": "a", "mode": "property", "n_properties": 24, "loss": "cos_sigmoid", "seed": 0,
         "mIoU": 40.0, "mAcc": 50.0},
        {"axis": "base", "cell": "b", "mode": "property", "n_properties": 24, "loss": "cos_sigmoid", "seed": 1,
         "mIoU": 42.0, "mAcc": 52.0},
        {"axis": "mode", "cell": "c", "mode": "category", "n_properties": 24, "loss": "cos_sigmoid", "seed": 0,
         "mIoU": 38.0, "mAcc": 47.0},
        {"axis": "n_properties", "cell": "d", "mode": "property", "n_properties": 6, "loss": "cos_sigmoid",
         "seed": 0, "mIoU": 30.0, "mAcc": 45.0},
    ])
    t = all_tables(runs, n_descriptions=139)
    mode = t["mode"].set_index("Property vs category supervision")
    assert mode.loc["property", "mIoU (ours)"] == "41.00 ± 1.41" and mode.loc["category", "runs"] == 1
    assert mode.loc["property", "paper (ADE20K)"] == "49.0"
    k = t["n_properties"].set_index("Number of properties")
    assert k.loc["24", "paper (ADE20K)"] == "K=256: 48.3"   # 139/24 = 5.8 descriptions per property
    assert k.loc["6", "paper (ADE20K)"] == "K=64: 47.8"     # 139/6 = 23
    a = write_tables(runs, tmp_path / "a", 139)
    b = write_tables(runs, tmp_path / "b", 139)
    for f in ("tables.md", "tables/mode.csv", "tables/n_properties.csv"):
        assert (a / f).read_bytes() == (b / f).read_bytes()


@pytest.mark.parametrize("change,msg", [
    ({"vary": {"colour": ["red"]}}, "unknown axis in vary .* 'colour'"),
    ({"vary": {"n_properties": ["many"]}}, "n_properties = 'many': must be an integer"),
    ({"vary": {"loss": ["hinge"]}}, "loss = 'hinge': must be one of cos_sigmoid"),
    ({"vary": {"prompt": ["nonexistent_prompt"]}}, "prompt 'nonexistent_prompt' not found"),
    ({"vary": {"llm": ["gpt-9"]}}, "needs the descriptor file descriptors/synthetic_outdoor/gpt-9__structured-"),
    ({"seeds": [0, "one"]}, "seeds = \\[0, 'one'\\]: must be a list of integers"),
    ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
    ({"train": {"learning_rate": 1}}, "train: .*learning_rate"),
    ({"extra": 1}, "unknown keys \\[.extra.\\]"),
    ({"vary": {"unseen": ["buss"]}}, "unseen classes \\['buss'\\] are not classes of it; did you mean 'bus'"),
    ({"vary": {"iters": [5]}, "cross": {"iters": [10]}}, "in both 'vary' and 'cross'"),
    ({"cross": {"iters": 10}}, "cross.iters must be a non-empty list"),
    ({"cross": {"iters": [0]}}, "iters = 0: must be an integer >= 1"),
])
def test_bad_grid_yaml_fails_before_running(scratch_results, change, msg):
    with pytest.raises((ValueError, FileNotFoundError), match=msg):
        load_grid(_grid(scratch_results, {**GRID, **change}, "bad"))
    assert not (scratch_results / "results" / "tgrid").exists()


def test_paper_configs_are_valid():
    for f in sorted((paths.repo_root() / "configs").glob("paper_*.yaml")):
        cfg = load_config(f)
        assert [s.notebook for s in cfg.steps][-2:] == ["05_train_segmentation.ipynb", "06_evaluate.ipynb"]
        train = cfg.steps[-2].parameters
        assert train["preset"] == "paper" and train["iters"] == 160000


def test_paper_settings_have_one_source():
    """configs/paper_*.yaml, the paper preset and configs/mmseg/ say what prolab.paper.RELEASE_CONFIGS says."""
    import ast

    from prolab.paper import RELEASE_CONFIGS
    from prolab.train.config import TrainConfig

    for ds, r in RELEASE_CONFIGS.items():
        cfg = load_config(paths.repo_root() / "configs" / f"paper_{ds}.yaml")
        nb05 = cfg.steps[-2].parameters
        given = {k: v for k, v in nb05.items() if k in {"iters", "batch_size", "crop_size", "lr"}}
        tc = TrainConfig.preset("paper", dataset=ds, **given)
        assert (tc.crop_size, tuple(tc.scale), tc.batch_size, tc.amp, tc.temperature, tc.normalize, tc.iters) == \
               (r.crop_size, r.scale, r.batch_size, r.fp16, r.temperature, r.normalize, r.iters), ds
        assert cfg.parameters.get("n_properties") == r.n_properties, ds
        # the mmseg config: crop, slide stride, batch per GPU, fp16 or not, T and normalisation (read as text)
        text = (paths.repo_root() / "configs" / "mmseg" / f"prolab_{ds}.py").read_text()
        tree = ast.parse(text)
        names = {t.id: n.value for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                 if isinstance(t, ast.Name)}
        assert ast.literal_eval(names["crop_size"]) == (r.crop_size, r.crop_size), ds
        assert f"stride=({r.slide_stride}, {r.slide_stride})" in text, ds
        assert f"train_dataloader = dict(batch_size={r.samples_per_gpu}," in text, ds
        assert ('type="OptimWrapper"' in text) is (not r.fp16), ds
        assert ("temperature=0.01" in text and "normalize=True" in text) is (r.temperature == 0.01 and r.normalize), ds
        assert f"scale=({r.scale[0]}, {r.scale[1]})" in text or r.scale == (2048, 512), ds


def test_the_repair_axis_adds_cells_without_moving_the_others(scratch_results):
    base = load_grid(_grid(scratch_results, GRID)).cells()
    more = load_grid(_grid(scratch_results, {**GRID, "vary": {"mode": ["category"], "repair": [True]}})).cells()
    assert [c["cell"] for c in more[:2]] == [c["cell"] for c in base]       # committed rows stay current
    assert more[2]["axis"] == "repair" and more[2]["repair"] is True and more[2]["cell"] not in {c["cell"] for c in base}
    with pytest.raises(ValueError, match="repair"):
        load_grid(_grid(scratch_results, {**GRID, "vary": {"repair": ["yes"]}}))


def test_grid_splits_are_checked_before_anything_runs(scratch_results):
    for bad in (["train"], [], ["val", "val"], "val", ["val,test"], ["val test"]):
        with pytest.raises(ValueError, match="splits"):
            load_grid(_grid(scratch_results, {**GRID, "splits": bad}))
    with pytest.raises(ValueError, match="cannot open the split 'nosuch'"):
        load_grid(_grid(scratch_results, {**GRID, "splits": ["val", "nosuch"]}))
    assert load_grid(_grid(scratch_results, GRID), splits=["val"]).splits == ["val"]


def test_tables_name_the_base_value_of_a_training_setting():
    from prolab.reports.tables import ablation_table

    runs = pd.DataFrame([{"axis": "base", "normalize": float("nan"), "mIoU": 40.0, "mAcc": 50.0, "seed": 0},
                         {"axis": "normalize", "normalize": 1.0, "mIoU": 45.0, "mAcc": 55.0, "seed": 0}])
    t = ablation_table(runs, "normalize")
    assert list(t.iloc[:, 0]) == ["off", "on"] and list(t["base"]) == ["yes", ""]
    assert list(ablation_table(runs, "normalize", train={"normalize": True}).iloc[:, 0]) == ["on"]   # both rows on


def test_a_row_older_than_an_axis_is_labelled_with_the_axis_default():
    """Rows written before the `repair` axis existed hold NaN there; they ran unrepaired (found in review: the
    label fell through to the training-preset lookup and said "none")."""
    from prolab.reports.tables import value_label

    assert value_label("repair", float("nan")) == "off" and value_label("repair", True) == "on"
    assert value_label("n_properties", float("nan")) == "—"
