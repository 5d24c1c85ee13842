"""`prolab verify`: the comparison, what it reads from each kind of results folder, and the command end to end on
folders in the real formats (copies of the committed ones, or written by the evaluation's own writer). Nothing
here trains: the re-run's subprocess is replaced by one that copies a folder."""
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prolab.cli import main
from prolab.pipeline import collect as c
from prolab.pipeline import verify as v

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results"


# --- compare -------------------------------------------------------------------------------------------------

def test_equal_values_pass_at_tolerance_zero():
    rows, ok = v.compare({"a": 1.5, "b": 3, "h": "abc"}, {"a": 1.5, "b": 3.0, "h": "abc"}, 0)
    assert ok and [r.key for r in rows] == ["a", "b", "h"] and all(r.ok for r in rows)
    assert rows[0].diff == 0 and rows[2].diff is None


def test_a_difference_beyond_the_tolerance_fails_and_names_the_key():
    rows, ok = v.compare({"mIoU": 32.24, "mAcc": 39.03}, {"mIoU": 32.30, "mAcc": 39.03}, 0.05)
    assert not ok
    (bad,) = [r for r in rows if not r.ok]
    assert bad.key == "mIoU" and bad.diff == pytest.approx(0.06) and "tolerance" in bad.note
    assert "mIoU" in v.format_table(rows, lambda r: not r.ok)


def test_a_difference_within_the_tolerance_passes():
    rows, ok = v.compare({"mIoU": 32.24}, {"mIoU": 32.30}, 0.1)
    assert ok and rows[0].diff == pytest.approx(0.06)
    assert not v.compare({"mIoU": 32.24}, {"mIoU": 32.30}, 0)[1]     # tolerance 0: any difference fails


def test_a_key_missing_on_either_side_fails():
    rows, ok = v.compare({"a": 1.0, "gone": 2.0}, {"a": 1.0, "new": 3.0}, 1e9)
    assert not ok
    by_key = {r.key: r for r in rows}
    assert list(by_key) == ["a", "gone", "new"]
    assert by_key["a"].ok
    assert not by_key["gone"].ok and by_key["gone"].note == "missing in the re-run"
    assert not by_key["new"].ok and by_key["new"].note == "not in the committed results"


def test_nan_and_none_equal_each_other_but_not_a_number():
    rows, ok = v.compare({"x": math.nan, "y": None, "z": math.nan}, {"x": math.nan, "y": math.nan, "z": 1.0}, 100)
    assert [r.ok for r in rows] == [True, True, False]
    assert rows[2].note == "NaN on one side" and not ok
    assert v.compare({"i": math.inf}, {"i": math.inf})[1]


def test_hashes_compare_by_equality():
    rows, ok = v.compare({"f.json | sha256": "aaaa"}, {"f.json | sha256": "bbbb"}, 1e9)
    assert not ok and rows[0].note == "differs"


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_tolerance_must_be_finite_and_not_negative(bad):
    with pytest.raises(ValueError, match="tolerance"):
        v.compare({}, {}, bad)


def test_report_states_the_tolerance_and_the_verdict():
    rows, ok = v.compare({"runs.csv | base seed 0 | mIoU": 1.0, "curves.csv | x | loss": 2.0},
                         {"runs.csv | base seed 0 | mIoU": 1.0, "curves.csv | x | loss": 2.0})
    text = v.report(rows, ok, 0.0)
    assert text.splitlines()[-1].startswith("REPRODUCED: all 2 values within tolerance 0 (absolute")
    assert "deterministic" in text.splitlines()[-1]
    assert "runs.csv | base seed 0 | mIoU" in text and "curves.csv | x | loss" not in text   # equal detail hidden
    assert "1 equal values not shown" in text and "curves.csv" in text   # ... but counted per file
    rows, ok = v.compare({"a": 1.0}, {"a": 2.0}, 0.5)
    assert v.report(rows, ok, 0.5).splitlines()[-1].startswith("NOT REPRODUCED: 1 of 1 values differ beyond "
                                                                "tolerance 0.5 (absolute")


# --- what a folder holds -------------------------------------------------------------------------------------

def _eval_run(folder: Path, run: str, cm: np.ndarray, names: list[str]) -> None:
    """An evaluation folder written by the evaluation's own writer (as notebook 06 does)."""
    from prolab.evaluate.metrics import EvalResult, metrics_from_confusion, save_results

    save_results(EvalResult(metrics_from_confusion(cm, names), cm, names, 4), folder / "eval" / run,
                 {"run": {"run_name": run}})


def _fake_run_folder(folder: Path, cm: np.ndarray) -> Path:
    names = ["sky", "road", "car"]
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"run_name": "demo", "source": "demo.yaml", "parameters": {},
                                                    "notebooks": [{"notebook": "06_evaluate.ipynb",
                                                                   "parameters": {}}]}))
    (folder / "environment.json").write_text(json.dumps({"python": "3.11.7", "versions": {"torch": "2.14.1"}}))
    (folder / "timings.json").write_text(json.dumps({"06_evaluate.ipynb": 1.0}))
    _eval_run(folder, "demo-property", cm, names)
    return folder


CM = np.array([[50, 2, 0], [1, 40, 3], [0, 4, 10]])


def test_a_run_folder_yields_its_evaluation_metrics(tmp_path):
    d = v.collect(_fake_run_folder(tmp_path / "demo", CM))
    assert v.folder_kind(tmp_path / "demo") == "run"
    for key in ("eval/demo-property/metrics.json | mIoU", "eval/demo-property/metrics.json | aAcc",
                "eval/demo-property/metrics.json | n_images", "eval/demo-property/per_class.csv | car | IoU",
                "eval/demo-property/confusion.csv | road->car"):
        assert key in d, key
    assert d["eval/demo-property/confusion.csv | road->car"] == 3
    assert not any("created" in k or "config" in k or "timings" in k or "environment" in k for k in d)


def test_the_committed_demo_yields_metrics_and_artefact_hashes():
    d = v.collect(RESULTS / "demo")
    runs = sorted(p.name for p in (RESULTS / "demo" / "eval").iterdir())
    assert runs and all(f"eval/{r}/metrics.json | mIoU" in d for r in runs)
    assert all(isinstance(x, (int, float)) for k, x in d.items() if k.startswith("eval/"))
    assert any(k.startswith("descriptors/") and k.endswith("| sha256") for k in d)
    assert any(k.startswith("properties/") and k.endswith("| tensors_sha256") for k in d)


def test_a_grid_yields_metric_columns_not_settings_or_times():
    d = v.collect(RESULTS / "demo_grid")
    keys = {k.split(" | ")[2] for k in d if k.startswith("runs.csv")}
    assert {"mIoU", "mAcc", "aAcc", "unseen_IoU"} <= keys
    assert not keys & {"train_seconds", "finished", "code", "cell", "seed", "n_properties", "temperature"}
    assert "runs.csv | n_properties=6 seed 1 | mIoU" in d and "runs.csv | mode=category seed 2 | mIoU" in d
    assert any(k.startswith("curves.csv | base seed 0 iteration 1 |") for k in d)
    assert any(k.startswith("per_class.csv | base seed 0 |") for k in d)
    unseen = {k.split(" | ")[2] for k in v.collect(RESULTS / "unseen_grid") if k.startswith("runs.csv")}
    assert {"seen_mIoU", "unseen_mIoU", "HM", "cal_HM", "gamma"} <= unseen


def test_label_sets_yield_their_runs():
    d = v.collect(RESULTS / "label_sets")
    assert v.folder_kind(RESULTS / "label_sets") == "label_sets"
    assert "runs.csv | seed 0 fine->fine: its own signatures | mIoU" in d
    assert not any(k.endswith("| iters") or k.endswith("| seed") for k in d)


def test_an_unknown_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    assert main(["verify", str(tmp_path / "x"), "--against", str(tmp_path / "x")]) == 2
    assert "not a results folder" in capsys.readouterr().err


# --- the command on folders, no re-run (--against) ------------------------------------------------------------

def _copy(name: str, dest: Path) -> Path:
    return Path(shutil.copytree(RESULTS / name, dest / name))


def test_verify_against_an_identical_folder_passes(tmp_path, capsys):
    other = _copy("demo", tmp_path)
    assert main(["verify", str(RESULTS / "demo"), "--against", str(other)]) == 0
    out = capsys.readouterr().out
    assert "REPRODUCED" in out and "tolerance 0 (absolute" in out and "eval/demo-property/metrics.json | mIoU" in out


def test_verify_against_a_changed_metric_fails_and_names_it(tmp_path, capsys):
    a = _fake_run_folder(tmp_path / "a" / "demo", CM)
    b = _fake_run_folder(tmp_path / "b" / "demo", CM)
    m = b / "eval" / "demo-property" / "metrics.json"
    data = json.loads(m.read_text())
    data["mIoU"] = round(data["mIoU"] + 0.5, 2)
    data["created"] = "another day"                  # not a metric
    m.write_text(json.dumps(data))
    assert main(["verify", str(a), "--against", str(b)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "eval/demo-property/metrics.json | mIoU" in out
    assert out.strip().splitlines()[-1].startswith("NOT REPRODUCED: 1 of ")
    assert main(["verify", str(a), "--against", str(b), "--tolerance", "0.6"]) == 0
    assert "tolerance 0.6" in capsys.readouterr().out
    assert main(["verify", str(a), "--against", str(b), "--tolerance", "0.4"]) == 1


def test_a_changed_confusion_count_fails(tmp_path, capsys):
    cm = CM.copy()
    cm[1, 2] += 1                                     # one more road pixel called car: every derived value moves
    a, b = _fake_run_folder(tmp_path / "a" / "demo", CM), _fake_run_folder(tmp_path / "b" / "demo", cm)
    assert main(["verify", str(a), "--against", str(b), "--tolerance", "0"]) == 1
    out = capsys.readouterr().out
    assert "eval/demo-property/confusion.csv | road->car" in out and "FAIL" in out


def test_a_missing_run_fails(tmp_path, capsys):
    a = _fake_run_folder(tmp_path / "a" / "demo", CM)
    _eval_run(a, "demo-category", CM, ["sky", "road", "car"])
    b = _fake_run_folder(tmp_path / "b" / "demo", CM)
    assert main(["verify", str(a), "--against", str(b), "--tolerance", "1000"]) == 1
    assert "missing in the re-run" in capsys.readouterr().out


def test_grid_times_and_code_are_not_compared_but_a_missing_row_is(tmp_path, capsys):
    other = _copy("demo_grid", tmp_path)
    runs = pd.read_csv(other / "runs.csv")
    runs["train_seconds"] += 10
    runs["finished"] = "2030-01-01T00:00:00+00:00"
    runs["cell"] = runs["cell"].str[::-1]            # another hashing: rows still match by setting and seed
    runs["code"] = "0123456789abcdef"
    runs.to_csv(other / "runs.csv", index=False)
    for f in ("curves.csv", "per_class.csv"):
        t = pd.read_csv(other / f)
        t["cell"] = t["cell"].str[::-1]
        t.to_csv(other / f, index=False)
    assert main(["verify", str(RESULTS / "demo_grid"), "--against", str(other)]) == 0
    out = capsys.readouterr().out
    assert "REPRODUCED" in out and "note: the committed rows were made by code" in out
    runs.iloc[1:].to_csv(other / "runs.csv", index=False)
    assert main(["verify", str(RESULTS / "demo_grid"), "--against", str(other)]) == 1
    out = capsys.readouterr().out
    assert "runs.csv | base seed 0 | mIoU" in out and "missing in the re-run" in out


def test_a_changed_loss_in_a_curve_fails(tmp_path, capsys):
    other = _copy("unseen_grid", tmp_path)
    curves = pd.read_csv(other / "curves.csv")
    runs = pd.read_csv(other / "runs.csv")
    cell = runs.loc[(runs["axis"] == "base") & (runs["seed"] == 0), "cell"].iloc[0]
    curves.loc[curves.index[(curves["cell"] == cell) & (curves["iteration"] == 6)][0], "loss"] += 1e-7
    curves.to_csv(other / "curves.csv", index=False)
    assert main(["verify", str(RESULTS / "unseen_grid"), "--against", str(other)]) == 1
    assert "curves.csv | base seed 0 iteration 6 | loss" in capsys.readouterr().out
    assert main(["verify", str(RESULTS / "unseen_grid"), "--against", str(other), "--tolerance", "1e-6"]) == 0


def test_label_sets_against_a_changed_copy(tmp_path, capsys):
    other = _copy("label_sets", tmp_path)
    runs = pd.read_csv(other / "runs.csv")
    runs.loc[0, "mIoU"] = float("nan")
    runs.to_csv(other / "runs.csv", index=False)
    assert main(["verify", str(RESULTS / "label_sets"), "--against", str(other)]) == 1
    assert "NaN on one side" in capsys.readouterr().out


def test_folders_of_different_kinds_are_refused(capsys):
    assert main(["verify", str(RESULTS / "demo"), "--against", str(RESULTS / "demo_grid")]) == 2
    assert "grid folder" in capsys.readouterr().err


# --- the re-run (the command that made the folder, in a scratch copy with an empty cache) ----------------------

def test_the_rerun_config_of_the_demo_is_the_committed_resolved_config(tmp_path):
    import yaml

    from prolab.pipeline.runner import load_config

    committed = json.loads((RESULTS / "demo" / "config.json").read_text())
    f = tmp_path / "demo.yaml"
    f.write_text(yaml.safe_dump(v.run_config(committed), sort_keys=False))
    cfg = load_config(f)                                  # the runner accepts it: every name and value checked
    assert cfg.run_name == committed["run_name"]
    assert [(s.notebook, s.parameters) for s in cfg.steps] == [(s["notebook"], s["parameters"])
                                                               for s in committed["notebooks"]]


@pytest.mark.parametrize("grid", ["demo_grid", "unseen_grid", "budget_grid"])
def test_the_rerun_config_of_a_grid_makes_the_committed_rows(tmp_path, grid):
    """The grid YAML rebuilt from grid.json runs exactly the rows runs.csv holds (matched as verify matches)."""
    import yaml

    from prolab.pipeline.grid import load_grid

    recorded = json.loads((RESULTS / grid / "grid.json").read_text())
    f = tmp_path / "grid.yaml"
    f.write_text(yaml.safe_dump(v.grid_config(recorded)))
    cfg = load_grid(f)
    cross = list(recorded.get("cross") or {})
    made = {c.grid_label(cell, cross) for cell in cfg.cells()}
    committed = {c.grid_label(r, cross) for r in pd.read_csv(RESULTS / grid / "runs.csv").to_dict("records")}
    assert cfg.name == recorded["name"] and made == committed


def test_a_grid_on_a_dataset_yaml_cannot_be_rerun():
    recorded = json.loads((RESULTS / "custom_grid_street" / "grid.json").read_text())
    with pytest.raises(ValueError, match="--against"):
        v.grid_config(recorded)


def test_the_scratch_checkout_leaves_the_verified_folder_out(tmp_path):
    root = v.scratch_checkout(tmp_path / "repo", "demo")
    assert not (root / "results" / "demo").exists()
    assert (root / "results" / "demo_grid" / "runs.csv").is_file()       # notebook 07 reads it
    assert (root / "notebooks" / "06_evaluate.ipynb").is_file()
    assert (root / "descriptors" / "cache" / "calls.jsonl").is_file()    # the replayed LLM answers
    assert (root / "prolab").is_symlink() and (root / "prolab" / "cli" / "__init__.py").is_file()
    assert not (root / ".git").exists() and not (root / ".venv").exists()


def test_verify_reruns_in_a_scratch_copy_with_an_empty_cache(tmp_path, monkeypatch, capsys):
    """The whole command, with the re-run replaced by a copy of the committed folder: the command it runs, the
    environment it gives it, the comparison, and the scratch folder removed afterwards."""
    calls = []

    def fake_run(cmd, cwd, env):
        calls.append((cmd, cwd, env))
        assert Path(env["PROLAB_ROOT"]) == Path(cwd) and Path(env["PROLAB_CACHE"]).parent == Path(cwd).parent
        assert not Path(env["PROLAB_CACHE"]).exists() or not any(Path(env["PROLAB_CACHE"]).iterdir())
        shutil.copytree(RESULTS / "demo", Path(cwd) / "results" / "demo")
        return 0

    monkeypatch.setattr(v, "execute", fake_run)
    made = []
    real_mkdtemp = v.tempfile.mkdtemp
    monkeypatch.setattr(v.tempfile, "mkdtemp", lambda **kw: made.append(real_mkdtemp(dir=tmp_path, **kw)) or made[-1])
    assert main(["verify"]) == 0                               # default: results/demo
    (cmd, cwd, env), = calls
    assert cmd[1:4] == ["-m", "prolab", "run"] and cmd[-1].endswith("demo.yaml")
    out = capsys.readouterr().out
    assert "empty PROLAB_CACHE" in out and "REPRODUCED" in out
    assert made and not Path(made[0]).exists()                 # the scratch folder is removed


def test_keep_keeps_the_rerun_and_refuses_a_used_folder(tmp_path, monkeypatch, capsys):
    def fake_run(cmd, cwd, env):
        shutil.copytree(RESULTS / "label_sets", Path(cwd) / "results" / "label_sets")
        runs = pd.read_csv(Path(cwd) / "results" / "label_sets" / "runs.csv")
        runs.loc[2, "aAcc"] += 0.01
        runs.to_csv(Path(cwd) / "results" / "label_sets" / "runs.csv", index=False)
        return 0

    monkeypatch.setattr(v, "execute", fake_run)
    keep = tmp_path / "kept"
    assert main(["verify", str(RESULTS / "label_sets"), "--keep", str(keep)]) == 1
    out = capsys.readouterr().out
    assert "prolab.analysis.label_sets --seeds 0 1 2" in out and "| aAcc" in out and "FAIL" in out
    assert (keep / "repo" / "results" / "label_sets" / "runs.csv").is_file()
    assert main(["verify", str(RESULTS / "label_sets"), "--keep", str(keep)]) == 2
    assert "new or empty folder" in capsys.readouterr().err


def test_a_failed_rerun_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(v, "execute", lambda cmd, cwd, env: 3)
    monkeypatch.setattr(v.tempfile, "mkdtemp", lambda **kw: str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    assert main(["verify", str(RESULTS / "demo")]) == 2
    assert "the re-run failed (exit status 3)" in capsys.readouterr().err
    assert not (tmp_path / "scratch").exists()


def test_a_rerun_that_fails_late_still_compares_what_it_made(tmp_path, monkeypatch, capsys):
    def fake_run(cmd, cwd, env):       # notebooks 00-06 ran, a later one failed
        made = shutil.copytree(RESULTS / "demo", Path(cwd) / "results" / "demo")
        m = Path(made) / "eval" / "demo-property" / "metrics.json"
        data = json.loads(m.read_text())
        data["mAcc"] += 1
        m.write_text(json.dumps(data))
        shutil.rmtree(Path(made) / "eval" / "demo-category")
        return 2

    monkeypatch.setattr(v, "execute", fake_run)
    monkeypatch.setattr(v.tempfile, "mkdtemp", lambda **kw: str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    assert main(["verify"]) == 2
    cap = capsys.readouterr()
    assert "the re-run failed (exit status 2)" in cap.err
    assert "what it made before it stopped" in cap.out and "eval/demo-property/metrics.json | mAcc" in cap.out
    assert "1 of them differ" in cap.out and "were not made" in cap.out
    assert "eval/demo-category/metrics.json | mIoU" not in cap.out     # not made: counted, not listed
    assert not (tmp_path / "scratch").exists()


def test_many_differences_are_listed_up_to_a_limit_per_file():
    committed = {f"confusion.csv | c{i}": float(i) for i in range(30)}
    committed["metrics.json | mIoU"] = 1.0
    rerun = {k: x + 1 for k, x in committed.items()}
    rows, ok = v.compare(committed, rerun)
    text = v.report(rows, ok, 0.0, per_file=5)
    assert "metrics.json | mIoU" in text and "confusion.csv | c4 " in text and "confusion.csv | c5 " not in text
    assert "25 more differing values" in text and "31 of 31 values differ" in text
    assert "confusion.csv | c29 " in v.report(rows, ok, 0.0, show_all=True)


def test_the_rerun_renders_the_dataset_in_its_empty_cache_and_reuses_kernels(tmp_path, monkeypatch):
    """A shared dataset folder (PROLAB_DATASETS, as the tests set it) is not carried into a verification: the
    re-run renders the embedded default again, as its docstring says; compiled kernels are carried."""
    from prolab import paths
    from prolab.pipeline.verify import rerun_environment

    monkeypatch.setenv("PROLAB_DATASETS", str(tmp_path / "shared"))
    assert paths.datasets_dir() == tmp_path / "shared"
    monkeypatch.setenv("PROLAB_EXTENSIONS", str(tmp_path / "kernels"))
    env, said = rerun_environment(tmp_path / "root", tmp_path / "cache", {"torch_threads": 1})
    assert "PROLAB_DATASETS" not in env and env["PROLAB_CACHE"] == str(tmp_path / "cache")
    assert env["PROLAB_EXTENSIONS"] == str(tmp_path / "kernels") and "reused" in said
    monkeypatch.delenv("PROLAB_DATASETS")
    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "c2"))
    assert paths.datasets_dir() == tmp_path / "c2" / "datasets"
