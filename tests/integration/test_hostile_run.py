"""A hostile user of `prolab run`: bad parameters, bad run configs, failing and concurrent runs.

Every error is one line naming the notebook and the parameter (or the config file and the key) and the value;
the CLI exits 2 without a traceback; a run that fails leaves the committed results folder byte for byte as it
was. Notebooks are not executed here (the executor is replaced where a run is needed), so each test takes
seconds."""
import ast
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tree_hash, write_run_config

from prolab import paths
from prolab.pipeline.runner import PipelineError, load_config, run_pipeline
from prolab.pipeline import parameters
from prolab.validation import ValidationError, check

REPO = Path(__file__).resolve().parents[2]


_tree_hash = tree_hash


def _one_line(msg: str) -> None:
    assert "\n" not in msg.strip() and "Traceback" not in msg, msg


# -- a replacement for papermill's executor: no kernel, the same files -------------------------------------------

class FakeExecutor:
    """Writes what papermill writes (the notebook with its papermill metadata) and, like the real notebooks,
    a file into the results folder; raises a notebook error for the notebooks in ``fail``."""

    def __init__(self, fail=()):
        self.fail, self.calls = set(fail), []

    def __call__(self, input_path, output_path, parameters=None, cwd=None, kernel_name=None, progress_bar=True):
        import papermill as pm

        name = Path(input_path).stem
        self.calls.append(name)
        if name in self.fail:
            Path(output_path).write_text(Path(input_path).read_text())   # the half-executed copy
            raise pm.PapermillExecutionError(2, 3, "boom()", "ValueError", f"{name} refused its input", [])
        nb = json.loads(Path(input_path).read_text())
        nb["metadata"]["papermill"] = {"input_path": str(input_path), "output_path": str(output_path),
                                       "parameters": parameters}
        Path(output_path).write_text(json.dumps(nb))
        made = paths.results_dir("demo") / "made" / f"{name}.txt"      # what a step writes beside its notebook
        made.parent.mkdir(parents=True, exist_ok=True)
        made.write_text(json.dumps(parameters, sort_keys=True))


@pytest.fixture
def fake(monkeypatch):
    import papermill

    ex = FakeExecutor()
    monkeypatch.setattr(papermill, "execute_notebook", ex)
    return ex


def _demo_like(root, seed=0):
    """A run config named demo, like the committed one, of two quick steps."""
    return write_run_config(root, {"run_name": "demo", "notebooks": [
        {"notebook": "00_prolab_in_60_lines", "parameters": {"seed": seed}},
        {"notebook": "07_ablation_tables", "parameters": {"write": False}}]})


def _committed_demo(root):
    """The committed results/demo in the scratch checkout."""
    shutil.copytree(REPO / "results" / "demo", root / "results" / "demo")
    return root / "results" / "demo"


# -- 1a: every parameter is checked before anything runs --------------------------------------------------------

def test_prolab_run_with_an_unknown_dataset_fails_before_anything_runs(scratch):
    demo = _committed_demo(scratch)
    shutil.copytree(REPO / "results" / "demo_grid", scratch / "results" / "demo_grid")   # notebook 07's input
    before = _tree_hash(demo)
    r = subprocess.run([sys.executable, "-m", "prolab", "run", "--config", "configs/demo.yaml", "-p",
                        "dataset=nonexistent"], capture_output=True, text=True, timeout=120, cwd=scratch)
    assert r.returncode == 2, r.stderr
    _one_line(r.stderr)
    assert "02_llm_retrieval" in r.stderr and "dataset = 'nonexistent'" in r.stderr, r.stderr
    assert "registered dataset" in r.stderr and "demo.yaml" in r.stderr and "-p/-f" in r.stderr, r.stderr
    assert "[1/9]" not in r.stdout                          # no notebook ran
    assert _tree_hash(demo) == before
    assert not list((scratch / "results").glob(".demo*")) and not (scratch / "results" / "demo.lock").exists()


# -- 1b: results are replaced only by a finished run --------------------------------------------------------------

def test_a_failed_run_leaves_the_committed_folder_byte_identical(scratch, fake):
    demo = _committed_demo(scratch)
    before = _tree_hash(demo)
    fake.fail = {"07_ablation_tables"}
    with pytest.raises(PipelineError) as e:
        run_pipeline(_demo_like(scratch), progress=False)
    assert fake.calls == ["00_prolab_in_60_lines", "07_ablation_tables"]   # step 00 ran and wrote, then 07 failed
    msg = str(e.value)
    _one_line(msg)
    assert msg.startswith("notebook 07_ablation_tables failed at cell 3") and "07_ablation_tables refused" in msg
    assert "results/demo is unchanged" in msg, msg
    assert _tree_hash(demo) == before                       # config.json, timings.json, notebooks, everything
    assert not list((scratch / "results").glob(".demo*"))   # no copy or half-made folder left beside it
    failed = paths.cache_root() / "failed_runs" / "demo" / "notebooks" / "07_ablation_tables.failed.ipynb"
    assert f"executed copy at {failed}" in msg and failed.exists()   # the failed run can still be looked at


def test_a_finished_run_replaces_the_folder_and_unchanged_steps_are_still_reused(scratch, fake, capsys):
    demo = _committed_demo(scratch)
    out = run_pipeline(_demo_like(scratch), progress=False)
    assert out == demo and fake.calls == ["00_prolab_in_60_lines", "07_ablation_tables"]
    config = json.loads((demo / "config.json").read_text())
    assert [s["notebook"] for s in config["notebooks"]] == ["00_prolab_in_60_lines.ipynb", "07_ablation_tables.ipynb"]
    assert set(json.loads((demo / "timings.json").read_text())) == {"00_prolab_in_60_lines.ipynb",
                                                                    "07_ablation_tables.ipynb"}
    # the folder describes this run: the committed run's other executed notebooks are gone
    assert sorted(p.name for p in (demo / "notebooks").iterdir()) == ["00_prolab_in_60_lines.ipynb",
                                                                     "07_ablation_tables.ipynb"]
    assert (demo / "made" / "00_prolab_in_60_lines.txt").exists()
    assert not list((scratch / "results").glob(".demo*"))
    capsys.readouterr()
    # unchanged: both reused from the folder, nothing executed
    fake.calls.clear()
    run_pipeline(_demo_like(scratch), progress=False)
    assert fake.calls == [] and capsys.readouterr().out.count("unchanged, skipped") == 2
    finished = _tree_hash(demo)
    # a changed step that fails: the finished run stays, and its skip state with it
    fake.fail = {"00_prolab_in_60_lines"}
    with pytest.raises(PipelineError):
        run_pipeline(_demo_like(scratch, seed=1), progress=False)
    assert _tree_hash(demo) == finished
    fake.fail, fake.calls = set(), []
    run_pipeline(_demo_like(scratch), progress=False)
    assert fake.calls == []                                 # still reused after the failed run


def test_a_killed_run_is_resumed_and_its_failure_puts_the_finished_run_back(scratch, fake, capsys):
    from prolab.pipeline.runfolder import set_aside

    demo = _committed_demo(scratch)
    finished = _tree_hash(demo)
    # what `kill -9` in the middle of a run leaves: the last finished run set aside, the folder half rewritten
    set_aside(demo)
    (demo / "config.json").write_text("{}")
    (demo / "notebooks" / "06_evaluate.ipynb").unlink()
    fake.fail = {"07_ablation_tables"}
    with pytest.raises(PipelineError):
        run_pipeline(_demo_like(scratch), progress=False)
    assert "resuming an unfinished run" in capsys.readouterr().out
    assert _tree_hash(demo) == finished                     # the copy of the finished run, not the killed run's
    assert not list((scratch / "results").glob(".demo*"))


def test_an_interrupted_run_also_puts_the_finished_run_back(scratch, monkeypatch):
    import papermill

    demo = _committed_demo(scratch)
    before = _tree_hash(demo)

    def interrupted(input_path, output_path, **kw):
        (paths.results_dir("demo") / "timings.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(_demo_like(scratch), progress=False)
    assert _tree_hash(demo) == before


def test_a_second_writer_stops_at_once_naming_the_holder(scratch, fake, capsys):
    from prolab import cli

    demo = _committed_demo(scratch)
    before = _tree_hash(demo)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from prolab.files import folder_lock\n"
                               "with folder_lock(sys.argv[1], 'results folder'):\n"
                               "    print('held', flush=True); time.sleep(60)\n", str(demo)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert (scratch / "results" / "demo.lock.owner").read_text().startswith(f"pid {holder.pid} ")
        t0 = time.time()
        rc = cli.main(["run", "--config", str(_demo_like(scratch))])
        err = capsys.readouterr().err
        assert rc == 2 and time.time() - t0 < 30 and fake.calls == [], err
        _one_line(err)
        assert f"pid {holder.pid}" in err and "results/demo" in err and "being written" in err, err
    finally:
        holder.kill()
        holder.wait()
    assert _tree_hash(demo) == before


def test_a_run_name_of_a_folder_that_is_not_a_run_is_refused(scratch, fake):
    grid = scratch / "results" / "g"
    grid.mkdir(parents=True)
    (grid / "grid.json").write_text("{}")
    cfg = write_run_config(scratch, {"run_name": "g", "notebooks": ["07_ablation_tables"]})
    with pytest.raises(ValidationError, match="not a `prolab run` folder"):
        run_pipeline(cfg, progress=False)
    assert fake.calls == [] and [p.name for p in grid.iterdir()] == ["grid.json"]


# -- 2: the run config itself ------------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg, words", [
    ({"run_name": "x", "notebooks": [{"notebook": 5}]}, ["notebooks[0].notebook = 5", "notebook name"]),
    ({"run_name": "x", "notebooks": [{"notebook": "07_ablation_tables", "paramters": {"write": False}}]},
     ["notebooks[0]", "unknown key 'paramters'", "did you mean 'parameters'"]),
    ({"run_name": "x", "notebooks": "07_ablation_tables"},
     ["notebooks = '07_ablation_tables'", "must be a list of steps"]),
    ({"run_name": "x", "notebooks": {"notebook": "07_ablation_tables"}}, ["notebooks = {", "must be a list"]),
    ({"run_name": "x", "notebooks": [["07_ablation_tables"]]}, ["notebooks[0] = ['07_ablation_tables']"]),
    ({"run_name": "x", "notebooks": [{"notebook": "07_ablation_tables", "parameters": ["write"]}]},
     ["notebooks[0].parameters = ['write']", "mapping"]),
    ({"run_name": "x", "notebooks": [{"notebook": "../notebooks/07_ablation_tables"}]}, ["not a path"]),
    ({"run_name": "x", "notebooks": [{"parameters": {}}]}, ["notebooks[0]", "needs a 'notebook'"]),
    ({"run_name": "", "notebooks": ["07_ablation_tables"]}, ["run_name = ''"]),
    ({"run_name": "..", "notebooks": ["07_ablation_tables"]}, ["run_name = '..'"]),
    ({"run_name": "x", "parameters": [1], "notebooks": ["07_ablation_tables"]}, ["parameters = [1]", "mapping"]),
])
def test_a_malformed_run_config_is_one_line_naming_the_file_and_the_key(scratch, cfg, words):
    f = write_run_config(scratch, cfg)
    with pytest.raises(ValueError) as e:
        load_config(f)
    msg = str(e.value)
    _one_line(msg)
    assert msg.startswith(f"{f}: "), msg
    for w in words:
        assert w in msg, msg


def test_a_malformed_run_config_exits_2_from_the_cli(scratch, capsys):
    from prolab import cli

    f = write_run_config(scratch, {"run_name": "x", "notebooks": [{"notebook": 5}]})
    assert cli.main(["run", "--config", str(f)]) == 2
    err = capsys.readouterr().err
    _one_line(err)
    assert err.startswith("prolab run: error: ") and "notebooks[0].notebook = 5" in err, err


# -- 3: every notebook parameter has a rule, and the rules are used ---------------------------------------------

def _parameters_cell(nb_file: Path) -> str:
    nb = json.loads(nb_file.read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{nb_file.name}: {len(cells)} cells tagged parameters"
    return "".join(cells[0]["source"])


def _assignments(src: str) -> dict[str, object]:
    return {t.id: ast.literal_eval(node.value) for node in ast.parse(src).body if isinstance(node, ast.Assign)
            for t in node.targets}


NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("nb_file", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_parameter_has_a_rule_that_its_default_passes(nb_file):
    params = _assignments(_parameters_cell(nb_file))
    rules = parameters.NOTEBOOK_RULES.get(nb_file.stem)
    assert rules is not None, f"{nb_file.stem} has no rules in prolab.pipeline.parameters.NOTEBOOK_RULES"
    assert set(params) == set(rules), (f"{nb_file.stem}: without a rule {sorted(set(params) - set(rules))}, "
                                       f"rules for no parameter {sorted(set(rules) - set(params))}")
    for name, default in params.items():
        check(name, default, rules[name], nb_file.stem)     # the notebook's own default is valid


@pytest.mark.parametrize("nb_file", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter_without_a_warning(nb_file, caplog):
    import papermill as pm

    with caplog.at_level(logging.WARNING):
        found = pm.inspect_notebook(str(nb_file))
    assert not [r for r in caplog.records if "Unable to parse" in r.getMessage()], caplog.text
    assert set(found) == set(_assignments(_parameters_cell(nb_file)))   # none dropped (a '=' in a comment did)


@pytest.mark.parametrize("notebook, name, value, words", [
    ("02_llm_retrieval", "seed", 99999999999999999999, ["<= 4294967295"]),
    ("00_prolab_in_60_lines", "seed", -1, [">= 0"]),
    ("04_property_space", "ks", [], ["non-empty list"]),
    ("04_property_space", "ks", [8, 0], [">= 1"]),
    ("05_train_segmentation", "backbone", "not_a_model", ["vit_adapter_base or a timm model name"]),
    ("05_train_segmentation", "pretrained", "nowhere.pth", ["existing weights file"]),
    ("05_train_segmentation", "dataset", "classes.txt", ["registered dataset", "dataset YAML"]),
    ("05_train_segmentation", "iters", 0, [">= 1"]),
    ("12_learnability", "n_drop", -3, [">= 1"]),
    ("09_unseen_classes", "unseen_grid", "results/nowhere", ["no folder"]),
    ("00_prolab_in_60_lines", "n_properties", 16, ["<= 15"]),
    ("00_prolab_in_60_lines", "held_out", "tree", ["one of sky, grass"]),
    ("00_prolab_in_60_lines", "temperature", 0, ["> 0"]),
    ("01_prompt_design", "prompts", ["structured", "nope"], ["'nope'"]),
    ("01_prompt_design", "classes", [], ["non-empty list of strings"]),
    ("01_prompt_design", "base_url", "localhost:8000", ["http"]),
    ("02_llm_retrieval", "dataset", "nonexistent", ["registered dataset"]),
    ("02_llm_retrieval", "dataset", "cityscapes19", ["did you mean 'cityscapes_19'"]),
    ("02_llm_retrieval", "dataset", "mine.yaml", ["no file"]),
    ("02_llm_retrieval", "prompt", "nope", ["descriptors/prompts/"]),
    ("02_llm_retrieval", "min_pooled", 99, ["<= 15"]),
    ("03_embedding_clustering", "projection", "umap", ["one of pca, tsne"]),
    ("03_embedding_clustering", "descriptor_file", "descriptors/none.json", ["no file"]),
    ("06_evaluate", "run_names", "nb05-property", ["list"]),
    ("07_ablation_tables", "grid", "results/nowhere", ["no folder"]),
])
def test_a_bad_notebook_parameter_names_the_notebook_the_parameter_and_the_value(scratch, notebook, name, value,
                                                                               words):
    f = write_run_config(scratch, {"run_name": "x", "notebooks": [notebook]})
    with pytest.raises(ValidationError) as e:
        load_config(f, overrides={name: value})
    msg = str(e.value)
    _one_line(msg)
    assert f"({notebook}.ipynb) (set by -p/-f, which reach every notebook declaring it; for one notebook: its " \
           f"step's parameters): {name} = {value!r}: must be " in msg, msg
    assert msg.startswith(str(f)), msg
    for w in words:
        assert w in msg, msg
    assert not (scratch / "results" / "x").exists()


def test_a_dataset_yaml_is_read_up_front(scratch):
    bad = scratch / "mine.yaml"
    bad.write_text("name: mine\nimg_dir: i\nann_dir: a\nclasses: [a, b]\nignore: 3\n")
    f = write_run_config(scratch, {"run_name": "x", "notebooks": ["05_train_segmentation"]})
    with pytest.raises(ValidationError) as e:
        load_config(f, overrides={"dataset": str(bad)})
    _one_line(str(e.value))
    assert "dataset = " in str(e.value) and "'ignore'" in str(e.value), str(e.value)
    bad.write_text("name: mine\nimg_dir: i\nann_dir: a\nclasses: [a, b]\n")
    load_config(f, overrides={"dataset": str(bad)})          # a valid one passes (its data is read at training)


def test_good_values_pass_and_notebook_00_takes_its_parameters(scratch):
    f = write_run_config(scratch, {"run_name": "x", "notebooks": ["00_prolab_in_60_lines", "02_llm_retrieval",
                                                         "05_train_segmentation"]})
    cfg = load_config(f, overrides={"n_properties": 5, "temperature": 0.5, "seed": 2**32 - 1,
                                    "dataset": "synthetic_outdoor", "backbone": "resnet18", "pretrained": "none",
                                    "pool_embedder": None})
    p00, p02, p05 = (s.parameters for s in cfg.steps)
    assert p00 == {"n_properties": 5, "temperature": 0.5, "seed": 2**32 - 1}
    assert p02["pool_embedder"] is None and p05["backbone"] == "resnet18"


@pytest.mark.parametrize("argv", [["describe", "--dataset", "synthetic_outdoor"],
                                  ["properties", "--dataset", "synthetic_outdoor"]])
def test_a_huge_seed_flag_is_refused_naming_the_flag(argv, capsys, tmp_path, monkeypatch):
    from prolab import cli

    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path))
    assert cli.main([*argv, "--seed", "99999999999999999999", "--out_root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    _one_line(err)
    assert "seed = 99999999999999999999: must be an integer >= 0 and <= 4294967295" in err, err
    assert not any(tmp_path.iterdir())


def test_bad_p_and_f_values_are_one_line(tmp_path):
    from prolab.pipeline.runner import parse_overrides

    with pytest.raises(ValueError) as e:
        parse_overrides(["ks=[1,"])
    _one_line(str(e.value))
    assert str(e.value).startswith("-p 'ks=[1,': the value is not valid YAML"), str(e.value)
    f = tmp_path / "p.yaml"
    f.write_text("ks: [1,\nseed: 2\n")
    with pytest.raises(ValueError) as e:
        parse_overrides(files=[str(f)])
    _one_line(str(e.value))
    assert str(e.value).startswith(f"-f {f}: ") and "not valid YAML" in str(e.value), str(e.value)
