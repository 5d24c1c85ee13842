"""Your own dataset, end to end from one YAML file, and the traps a new user met on the way (issue 14)."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import make_scratch_root, run_prolab, tree_hash

from prolab.datasets.example import ExampleDefaults, write_example

REPO = Path(__file__).resolve().parents[2]
SMALL = ExampleDefaults(n_train=12, n_val=4, n_test=4)


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A scratch checkout (committed descriptors and call cache, the package linked) and an empty cache."""
    return make_scratch_root(tmp_path, monkeypatch, folders=("descriptors", "configs"))


@pytest.fixture
def street(tmp_path):
    return write_example(tmp_path / "street", SMALL, progress=False)


def _prolab(*args, cwd=None, check=True):
    r = run_prolab(*args, cwd=cwd, env={"PROLAB_PROGRESS": "text"})   # in process: no exit or kill under test
    if check and r.returncode != 0:
        raise AssertionError(f"prolab {' '.join(map(str, args))} -> rc {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def _edit(spec: Path, **changes) -> Path:
    raw = yaml.safe_load(spec.read_text())
    raw.update(changes)
    for k in [k for k, v in changes.items() if v is None]:
        raw.pop(k)
    out = spec.with_name(f"edited-{len(list(spec.parent.glob('edited-*')))}.yaml")
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def _tree(root: Path) -> dict[str, dict[str, str]]:
    return {top: tree_hash(root / top) for top in ("descriptors", "configs")}


NEW_NAMES = ["Overcast sky", "Apartment block", "Lamp post", "Asphalt road", "Footway", "Street tree", "Hedge",
             "Railing", "Parked car", "Verge", "Canal"]


def test_a_custom_dataset_runs_describe_to_grid_from_one_yaml(scratch, street, stub_server, tmp_path):
    """The README's 'Your own dataset' commands, as written there, with nothing else: classes no cache has seen
    (asked of an OpenAI-compatible server on 127.0.0.1, then replayed from your cache), one prompt name given in
    the YAML, on a data folder that is read-only, scored on val and test, leaving the checkout as it was (your
    artefacts go to the workspace, new calls to your cache)."""
    cwd = street.parent
    spec = yaml.safe_load(street.read_text())
    spec.update(classes=NEW_NAMES, prompt_names={"Verge": "grass verge beside a road"})
    street.write_text(yaml.safe_dump(spec, sort_keys=False))
    checkout = _tree(scratch)
    workspace = Path(os.environ["PROLAB_CACHE"]) / "workspace"
    for d in [cwd, *[p for p in cwd.rglob("*") if p.is_dir()]]:
        d.chmod(0o555)                                               # your data may be read-only
    llm = "qwen2.5-coder-1.5b-instruct-q4_k_m"                      # the model the later stages look for
    r = _prolab("describe", "--dataset", "street.yaml", "--backend", "openai", "--base_url", stub_server.base_url,
                "--llm", llm, cwd=cwd)
    assert "dataset 'street' (11 classes) from street.yaml" in r.stdout
    assert "min_pooled 8, prompt names on" in r.stdout               # the kit's recipe, as the committed files
    asked = set(stub_server.stats.as_dict()["completed"])
    assert "grass verge beside a road" in asked and "Verge" not in asked and "Canal" in asked
    dfile = workspace / "descriptors" / "street" / f"{llm}__structured-d247051e.json"
    described = json.loads(dfile.read_text())
    assert list(described) == NEW_NAMES and all(len(v) >= 4 for v in described.values())
    calls = Path(os.environ["PROLAB_CACHE"]) / "llm" / "calls.jsonl"
    assert calls.is_file() and "grass verge" in calls.read_text()   # new replies: your cache, not the checkout
    dfile.unlink()
    stub_server.stop()   # replayed from your cache: the calls made against that server, without it
    r = _prolab("describe", "--dataset", "street.yaml", "--base_url", stub_server.base_url, cwd=cwd)
    assert "11/11 classes described; 0 new calls" in r.stdout and json.loads(dfile.read_text()) == described

    r = _prolab("properties", "--dataset", "street.yaml", cwd=cwd)   # finds what describe wrote, by the YAML's name
    n_desc = sum(len(v) for v in described.values())
    k = max(2, round(n_desc / 6))                                     # the rule --help states for a custom list
    assert f"-> {k} properties" in r.stdout and "near-collisions before/after" in r.stdout
    assert (workspace / "properties" / "street").is_dir() and not (scratch / "properties" / "street").exists()

    r = _prolab("train", "--dataset", "street.yaml", "--run_name", "street-prop", "--iters", "4", cwd=cwd)
    assert "preset demo: " in r.stdout and "lr=0.001" in r.stdout       # what the preset sets is said at start
    for split, n in (("val", SMALL.n_val), ("test", SMALL.n_test)):   # per-class IoU on both held-out splits
        out = tmp_path / f"eval-{split}"
        r = _prolab("evaluate", "--run_name", "street-prop", "--split", split, "--out_dir", out, cwd=cwd)
        metrics = json.loads((out / "street-prop" / "metrics.json").read_text())
        assert metrics["config"]["split"] == split and metrics["config"]["images"] == n
        assert all(f.endswith((f"images/{split}", f"labels/{split}")) for f in metrics["config"]["folders"])
        assert len(pd.read_csv(out / "street-prop" / "per_class.csv")) == 11

    # the README's grid, checked (its 9 runs of 200 iterations are what results/custom_grid_street holds)
    r = _prolab("grid", "--config", "configs/grid_custom.yaml", "--dataset", "street.yaml", "--splits", "val",
                "test", "--check", cwd=cwd)
    assert "grid custom_grid_street: 9 runs (3 settings x 3 seeds) on " in r.stdout and "separate = True" in r.stdout
    assert "scored on val, test" in r.stdout
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"name": "mini", "dataset": "synthetic_outdoor", "base": {"mode": "property"},
                                    "vary": {"mode": ["category"]}, "seeds": [0],
                                    "train": {"iters": 3, "warmup_iters": 1}}))
    r = _prolab("grid", "--config", grid, "--dataset", "street.yaml", "--splits", "val", "test", cwd=cwd)
    meta = json.loads((scratch / "results" / "mini_street" / "grid.json").read_text())
    assert meta["dataset"] == "street" and meta["splits"] == ["val", "test"]
    rows = pd.read_csv(scratch / "results" / "mini_street" / "runs.csv")
    assert sorted(rows["mode"]) == ["category", "property"]
    assert rows["mIoU"].notna().all() and rows["mIoU_test"].notna().all()
    assert "the dataset 'street', scored on its val split" in (scratch / "results" / "mini_street" / "tables.md").read_text()
    per_class = pd.read_csv(scratch / "results" / "mini_street" / "per_class.csv")   # written by the grid itself
    assert sorted(per_class["cell"]) == sorted(list(rows["cell"]) * 2) and "Canal" in per_class
    assert sorted(set(per_class["split"])) == ["test", "val"]
    # the checkout is as it was (the committed call cache included); a results folder you make is git-ignored
    assert _tree(scratch) == checkout
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "results/mini_street/runs.csv"])
    assert ignored.returncode == 0
    for d in [cwd, *[p for p in cwd.rglob("*") if p.is_dir()]]:
        d.chmod(0o755)


def test_a_split_read_from_the_training_folder_is_refused(scratch, street):
    from prolab.datasets.layouts import LayoutError
    from prolab.datasets.spec import load_spec
    from prolab.train.config import TrainConfig
    from prolab.train.data import open_split

    no_split = _edit(street, img_dir="images/train", ann_dir="labels/train")
    spec = load_spec(no_split)
    with pytest.raises(LayoutError, match=r"'test' split's images are the training folder .*--allow_train_folder"):
        spec.open("test")
    assert len(spec.open("test", allow_train_folder=True)) == SMALL.n_train   # on purpose: allowed
    assert len(load_spec(street).open("test")) == SMALL.n_test

    # the flag-based 'custom' dataset: the same guard (it used to be a warning, and metrics said "test")
    d = street.parent
    cfg = TrainConfig.demo(dataset="custom", img_dir=str(d / "images/train"), ann_dir=str(d / "labels/train"),
                           classes=str(d / "classes.txt"), ignore_index=11, mode="category")
    with pytest.raises(LayoutError, match=r"Put \{split\} in --img_dir"):
        open_split(cfg, "test")
    cfg = TrainConfig.demo(dataset="custom", img_dir=str(d / "images/{split}"), ann_dir=str(d / "labels/{split}"),
                           classes=str(d / "classes.txt"), ignore_index=11, mode="category")
    assert len(open_split(cfg, "test")) == SMALL.n_test


def test_evaluate_refuses_the_training_folder_from_the_cli(scratch, street):
    no_split = _edit(street, img_dir="images/train", ann_dir="labels/train")
    _prolab("train", "--dataset", no_split, "--run_name", "nosplit", "--iters", "2", "--mode", "category")
    r = _prolab("evaluate", "--run_name", "nosplit", "--split", "test", check=False)
    assert r.returncode == 2 and "training folder" in r.stderr and "--allow_train_folder" in r.stderr
    assert not (scratch / "results" / "eval" / "nosplit" / "metrics.json").exists()


def test_replay_matches_class_names_case_and_separator_insensitively(tmp_path):
    from prolab.describe import describe_dataset
    from prolab.describe.backends import ReplayMissError

    names = tmp_path / "odd.txt"
    names.write_text("SKY\nTraffic-Light\nbuilding\n")    # the cache holds sky, traffic light, building
    out = describe_dataset(str(names), out_root=tmp_path / "d", progress=False)
    assert out.result.new_calls == 0 and not out.result.failures
    assert list(json.loads(out.path.read_text())) == ["SKY", "Traffic-Light", "building"]  # the list's own names

    missing = tmp_path / "missing.txt"
    missing.write_text("Sky\nUnicorn\nroad\nDragon fruit\n")
    with pytest.raises(ReplayMissError) as e:
        describe_dataset(str(missing), out_root=tmp_path / "d", progress=False)
    msg = str(e.value)
    assert "2 of 4 classes" in msg and "'Unicorn'" in msg and "'Dragon fruit'" in msg and "'Sky'" not in msg
    assert f"prolab describe --dataset {missing} --backend llama_cpp --prompt structured" in msg
    assert e.value.missing == ["Unicorn", "Dragon fruit"]


def test_properties_finds_descriptions_where_describe_put_them(scratch, street, tmp_path):
    cwd = street.parent
    r = _prolab("properties", "--dataset", "street.yaml", cwd=cwd, check=False)    # nothing described yet
    assert r.returncode == 2
    assert "no descriptions of 'street' at " in r.stderr and "prolab describe --dataset street.yaml" in r.stderr
    _prolab("describe", "--dataset", "street.yaml", "--out_root", tmp_path / "elsewhere", cwd=cwd)
    r = _prolab("properties", "--dataset", "street.yaml", "--descriptor_root", tmp_path / "elsewhere",
                "--out_root", tmp_path / "spaces", cwd=cwd)
    assert "PropertySpace(street: 11 classes" in r.stdout
    # a class list: the dataset name it stands for is said, not taken silently
    r = _prolab("describe", "--dataset", cwd / "classes.txt", "--out_root", tmp_path / "elsewhere", cwd=cwd)
    assert "dataset 'classes' (11 classes) from" in r.stdout


def test_every_flag_has_one_help_line_with_its_default_said_once():
    from prolab.cli import main

    import argparse

    parser_holder = {}
    orig = argparse.ArgumentParser.parse_args

    def grab(self, *a, **k):
        parser_holder["p"] = self
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = grab
    try:
        with pytest.raises(SystemExit):
            main(["doctor"])
    finally:
        argparse.ArgumentParser.parse_args = orig
    top = parser_holder["p"]
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) >= {"describe", "properties", "train", "evaluate", "grid", "run", "doctor"}
    commands = dict(sub.choices)
    for name, p in list(commands.items()):           # a command's own subcommands too (prolab wovss train)
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                commands.update({f"{name} {child}": cp for child, cp in action.choices.items()})
    assert {"wovss train", "wovss evaluate"} <= set(commands)
    for name, p in commands.items():
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            flag = f"prolab {name} {action.option_strings}"
            assert action.help and len(action.help) > 10, f"{flag} has no help"
            rendered = p.format_help()
            assert "(default: None)" not in rendered, name
            assert action.help.count("(default:") <= 1, f"{flag}: {action.help}"
    train = sub.choices["train"].format_help()
    assert "LONG SHORT" in train and "evaluation" in train          # --scale: what the two numbers are
    assert "(default: .jpg)" in train and "dataset YAML" in train
    props = sub.choices["properties"].format_help()
    assert "one per 6" in " ".join(props.split()) and "n_properties" in props   # K's rule for a custom list


def test_a_label_value_outside_the_classes_names_the_file_and_the_fix(scratch, street):
    from prolab.datasets.layouts import LayoutError
    from prolab.datasets.spec import load_spec

    no_ignore = _edit(street, ignore_index=None)                  # 11 = unlabelled, but not declared
    ds = load_spec(no_ignore).open("train")
    with pytest.raises(LayoutError, match=r"labels/train/train_0000\.png has values \[11\].*set `ignore_index: 11` "
                                          r"in .*edited-0\.yaml"):
        ds.check_files(progress=False)
    from prolab.train.config import TrainConfig
    from prolab.train.data import open_split

    d = street.parent
    cfg = TrainConfig.demo(dataset="custom", img_dir=str(d / "images/{split}"), ann_dir=str(d / "labels/{split}"),
                           classes=str(d / "classes.txt"), mode="category")
    with pytest.raises(LayoutError, match=r"pass --ignore_index 11"):
        open_split(cfg, "train").check_files(progress=False)


def test_property_mode_on_custom_data_without_a_space_says_how_to_build_one(scratch, street):
    d = street.parent
    r = _prolab("train", "--dataset", "custom", "--img_dir", d / "images/{split}", "--ann_dir", d / "labels/{split}",
                "--classes", d / "classes.txt", "--ignore_index", "11", "--iters", "2", check=False)
    assert r.returncode == 2 and "needs a property space" in r.stderr and "prolab properties" in r.stderr
    r = _prolab("train", "--dataset", street, "--iters", "2", check=False)   # YAML, nothing described yet
    assert r.returncode == 2 and "prolab describe --dataset" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("change, words", [
    ({"clases": ["a", "b"]}, "unknown key 'clases' (did you mean 'classes'?)"),
    ({"img_dir": None}, "'img_dir' is required"),
    ({"img_suffix": "jpg"}, "img_suffix = 'jpg': must end in a file extension"),
    ({"ignore_index": 300}, "ignore_index = 300: must be an integer >= 0 and <= 255"),
    ({"name": "my data"}, "name = 'my data': must be letters, digits"),
    ({"classes": ["Sky", "sky"]}, "classes 'Sky' and 'sky' are the same name"),
])
def test_a_bad_dataset_yaml_is_refused_with_its_file_and_key(street, change, words):
    from prolab.datasets.spec import load_spec

    bad = _edit(street, **change)
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        load_spec(bad)
    assert words in str(e.value) and str(bad) in str(e.value)


def test_make_llm_keeps_its_wheels_in_prolab_cache(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    env = {**os.environ, "PROLAB_CACHE": str(tmp_path / "pc")}
    r = subprocess.run(["make", "-n", "llm", f"VENV={tmp_path / 'venv'}"], cwd=REPO, capture_output=True, text=True,
                       env=env)
    assert f"mkdir -p {tmp_path / 'pc'}/wheels" in r.stdout, r.stdout + r.stderr
    assert "/.cache/prolab/wheels" not in r.stdout


def test_registered_classes_keep_their_own_spelling_and_twins_are_chosen_deterministically(tmp_path):
    """The case-insensitive match never changes what a registered class is asked as (its committed cache
    keys), and a cache holding two spellings serves each its own replies."""
    from prolab import paths
    from prolab.datasets import DATASETS, load_class_names
    from prolab.describe import CallCache, make_backend
    from prolab.describe.prompts import load_prompt
    from prolab.describe.retrieval import Retriever

    backend, prompt = make_backend("replay"), load_prompt("structured")
    committed = Retriever(backend, prompt, CallCache(paths.call_cache_path(), readonly=True))
    for d in DATASETS:
        names = load_class_names(d)
        assert committed.query_names(names) == {n: n for n in names}, d

    twins = CallCache(tmp_path / "twins.jsonl")
    for name in ("sky", "Sky"):
        twins.put(f"k-{name}", "- blue", model=backend.model_id, prompt=prompt.tag, class_name=name, attempt=1)
    r = Retriever(backend, prompt, twins)
    assert r.query_names(["sky", "Sky", "SKY", "road"]) == {"sky": "sky", "Sky": "Sky", "SKY": "Sky", "road": "road"}


def test_the_fill_command_repeats_everything_that_is_part_of_the_call_key(tmp_path):
    from prolab.describe import GenerationParams, describe_dataset
    from prolab.describe.backends import ReplayMissError

    names = tmp_path / "new classes.txt"
    names.write_text("unicorn\n")
    cache = tmp_path / "my cache.jsonl"
    with pytest.raises(ReplayMissError) as e:
        describe_dataset(str(names), cache_path=cache, params=GenerationParams(temperature=0.5, seed=3),
                         out_root=tmp_path / "d", progress=False)
    line = str(e.value).splitlines()[-1].strip()
    assert line == (f"prolab describe --dataset '{names}' --backend llama_cpp --prompt structured "
                    f"--cache_path '{cache}' --llm_temperature 0.5 --seed 3")


def test_a_yaml_may_not_take_a_registered_dataset_name(street):
    from prolab.datasets.spec import load_spec

    with pytest.raises(ValueError, match=r"name = 'Cityscapes_19' is the registered dataset 'cityscapes_19'"):
        load_spec(_edit(street, name="Cityscapes_19"))


def test_braces_in_the_yaml_path_do_not_break_the_label_error(tmp_path):
    from prolab.datasets.layouts import LayoutError
    from prolab.datasets.spec import load_spec

    spec = write_example(tmp_path / "{proj}" / "street", SMALL, progress=False)
    with pytest.raises(LayoutError, match=r"set `ignore_index: 11` in .*\{proj\}"):
        load_spec(_edit(spec, ignore_index=None)).open("train").check_files(progress=False)


def test_grid_cells_change_when_the_dataset_yaml_changes(scratch, street):
    from prolab.datasets.spec import find_spec
    from prolab.pipeline.grid import load_grid

    _prolab("describe", "--dataset", street)
    before = {c["cell"] for c in load_grid("configs/grid_custom.yaml", dataset=str(street)).cells()}
    street.write_text(street.read_text().replace("ignore_index: 11", "ignore_index: 11\nlabel_map: {11: 255}"))
    after = {c["cell"] for c in load_grid("configs/grid_custom.yaml", dataset=str(street)).cells()}
    assert before and not before & after      # an edited YAML is never taken for the finished one

    no_val = _edit(street, splits={"train": "train", "val": "validation"})
    with pytest.raises(ValueError, match=r"scores 'val'.*validation"):
        load_grid("configs/grid_custom.yaml", dataset=str(no_val))


def test_flags_a_dataset_yaml_would_ignore_are_refused(street):
    from prolab.train.config import TrainConfig

    with pytest.raises(ValueError, match=r"ignore_index = 0 would be ignored: a dataset YAML sets them itself"):
        TrainConfig.demo(dataset=str(street), ignore_index=0)


def test_prompt_names_in_a_dataset_yaml_are_checked_against_its_classes(street):
    from prolab.datasets.spec import load_spec
    from prolab.describe.senses import prompt_names

    ok = _edit(street, prompt_names={"pole": "street light pole"})      # matched up to case, keyed by the class
    assert load_spec(ok).prompt_names == {"Pole": "street light pole"} and prompt_names(ok) == {"Pole": "street light pole"}
    with pytest.raises(ValueError, match=r"prompt_names names 'Poles', not among the classes"):
        load_spec(_edit(street, prompt_names={"Poles": "street light pole"}))
    with pytest.raises(ValueError, match="prompt_names must map class names to non-empty prompt names"):
        load_spec(_edit(street, prompt_names={"Pole": ""}))
