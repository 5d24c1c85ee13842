"""Fault injection: every fault a user can cause or meet ends in a clear error or is handled, and nothing
finished or committed is lost. One test (or a few) per row of the hardening table (README, "When things go
wrong"); each asserts the outcome: the error names the file or value, committed files keep their bytes, no key
reaches a file, a re-run repeats no finished call."""
import json
import os
import pickle
import shutil
import subprocess
import sys
import warnings
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_prolab
from PIL import Image

from prolab import paths
from prolab.describe import CallCache, RetrievalDefaults, describe_dataset, load_prompt, make_backend, retrieve
from prolab.describe.stub_server import StubChatServer, StubScript, stub_reply

REPO = Path(__file__).resolve().parents[2]
P = load_prompt("structured")
FAST = RetrievalDefaults(backoff_base=0.01, backoff_max=0.05)
KEY = "sk-test-" + "Zq3" * 10  # key-shaped, never real
COMMITTED = paths.descriptor_path("cityscapes_19", "qwen2.5-coder-1.5b-instruct-q4_k_m", P.tag)


def _prolab(*args, env=None):
    """``prolab <args>`` in this process (conftest.run_prolab: the same parser, command and error handling)."""
    return run_prolab(*args, env=env)


def _prolab_process(*args, env=None, timeout=300):
    """``prolab <args>`` as the console runs it, for the test whose subject is the process's exit status."""
    return subprocess.run([sys.executable, "-m", "prolab", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _snapshot(*files):
    return {str(f): Path(f).read_bytes() for f in files}


def _no_key_in(folder: Path, key: str = KEY):
    for f in Path(folder).rglob("*"):
        if f.is_file():
            assert key.encode() not in f.read_bytes(), f


@pytest.fixture
def classes_file(tmp_path):
    f = tmp_path / "street.txt"
    f.write_text("road\nsky\ntree\n")
    return f


# -- 1: --max_attempts 0; empty classes; a failed run never overwrites a complete file -------------------------

def test_max_attempts_zero_is_refused_and_committed_file_kept():
    before = _snapshot(COMMITTED, paths.descriptor_meta_path(COMMITTED))
    r = _prolab("describe", "--dataset", "cityscapes_19", "--max_attempts", "0")
    assert r.returncode == 2 and "max_attempts = 0" in r.stderr and ">= 1" in r.stderr, r.stderr
    assert _snapshot(*map(Path, before)) == before


def test_a_run_with_failed_classes_never_replaces_a_complete_file(stub_server, classes_file, tmp_path):
    backend = make_backend("openai", "stub-model", base_url=stub_server.base_url)
    first = describe_dataset(str(classes_file), backend, out_root=tmp_path / "out",
                             cache_path=tmp_path / "c.jsonl", defaults=FAST, progress=False)
    assert not first.result.failures
    good = first.path.read_bytes()
    # a second run, other generation settings (other calls), where 'sky' only ever gets refusals
    stub_server.script.replies["sky"] = ["I'm sorry, I cannot help with that."] * 5
    from prolab.describe import GenerationParams

    second = describe_dataset(str(classes_file), backend, out_root=tmp_path / "out", cache_path=tmp_path / "c.jsonl",
                              params=GenerationParams(seed=7), defaults=FAST, progress=False)
    assert list(second.result.failures) == ["sky"]
    assert "0/" not in second.result.summary() and "2/3 classes described" in second.result.summary()
    assert second.path.name.endswith(".partial.json") and first.path.read_bytes() == good
    assert json.loads(second.path.read_text())["sky"] == []  # kept as what it is: an empty, failed class


# -- 2: undecodable replies --------------------------------------------------------------------------------------

def test_undecodable_replies_are_sanitised_cached_and_never_abort(tmp_path):
    script = StubScript(replies={"road": [stub_reply("road").encode() + b"\n- broken \xff\xfe bytes here"],
                                 "sky": [stub_reply("sky") + "\n- lone \ud800 surrogate"]})
    cache = tmp_path / "c.jsonl"
    with StubChatServer(script) as srv:
        backend = make_backend("openai", "stub-model", base_url=srv.base_url)
        res = retrieve(["road", "sky", "tree"], backend, P, CallCache(cache), defaults=FAST, progress=False)
        assert not res.failures, res.failures
        n = srv.stats.requests
        assert n == 3  # one call per class: the bad bytes cost nothing but their own characters
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no skipped cache line
            again = retrieve(["road", "sky", "tree"], backend, P, CallCache(cache), defaults=FAST, progress=False)
        assert srv.stats.requests == n and again.new_calls == 0  # replayed, not asked again
    cache.read_bytes().decode("utf-8")  # strict: the cache is valid UTF-8
    recs = {r["class_name"]: r for r in CallCache(cache).records()}
    assert recs["road"]["sanitized"] and "\ufffd" in recs["road"]["reply"]
    assert recs["sky"]["sanitized"] and "\ud800" not in recs["sky"]["reply"]
    assert any("broken" in d for d in res.descriptions["road"])


# -- 3: OPENAI_BASE_URL in the environment -----------------------------------------------------------------------

def test_openai_base_url_from_the_environment_gets_no_openai_key(stub_server, classes_file, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", stub_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    backend = make_backend("openai", "gpt-4o-mini")
    assert backend.base_url == stub_server.base_url and backend.cache_scope() == {"base_url": stub_server.base_url}
    out = describe_dataset(str(classes_file), backend, out_root=tmp_path / "out", cache_path=tmp_path / "c.jsonl",
                           defaults=FAST, progress=False)
    assert stub_server.stats.requests == 3
    assert not any(KEY in h for h in stub_server.stats.auth_headers)
    assert out.meta["backend"]["base_url"] == stub_server.base_url
    meta = json.loads(paths.descriptor_meta_path(out.path).read_text())
    assert meta["backend"]["base_url"] == stub_server.base_url
    # the same model name at the OpenAI API is another model: its cache keys differ
    from prolab.describe import call_key

    rec = CallCache(tmp_path / "c.jsonl").records()[0]
    assert rec["key"] != call_key("gpt-4o-mini", P.render(rec["class_name"]), rec["params"])
    _no_key_in(tmp_path)


# -- 4: misspelt or ill-typed notebook parameters in a run config -------------------------------------------------

@pytest.mark.parametrize("params, words", [
    ({"datset": "synthetic_outdoor"}, ["'datset'", "did you mean 'dataset'", "02_llm_retrieval"]),
    ({"max_attempts": 0}, ["max_attempts = 0", ">= 1"]),
    ({"concurrency": "four"}, ["concurrency = 'four'", "int"]),
])
def test_run_config_parameters_are_checked_before_anything_runs(tmp_path, params, words):
    from prolab.pipeline.runner import load_config
    from prolab.validation import ValidationError

    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"run_name": "bad", "notebooks": [
        {"notebook": "01_prompt_design"}, {"notebook": "02_llm_retrieval", "parameters": params}]}))
    with pytest.raises(ValidationError) as e:
        load_config(cfg)
    for w in words:
        assert w in str(e.value), str(e.value)
    assert str(cfg) in str(e.value)
    assert not paths.results_dir("bad").exists()


def test_prolab_run_with_a_typo_fails_with_rc_2(tmp_path):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text(yaml.safe_dump({"run_name": "typo", "notebooks": [
        {"notebook": "05_train_segmentation", "parameters": {"iter": 10}}]}))
    r = _prolab_process("run", "--config", str(cfg))
    assert r.returncode == 2 and "'iter'" in r.stderr and "did you mean 'iters'" in r.stderr, r.stderr
    assert not paths.results_dir("typo").exists()


# -- 5: huge replies ----------------------------------------------------------------------------------------------

def test_huge_replies_are_bad_replies_and_do_not_fill_the_cache(tmp_path):
    huge = "\n".join("- " + "road " * 10_000 for _ in range(8))           # 8 lines x 50 KB
    one_word = "\n".join("- " + chr(97 + i) * 250 for i in range(8))    # a short reply of 250-character "words"
    script = StubScript(replies={"road": [huge, huge, stub_reply("road")], "sky": [one_word] * 3})
    cache = tmp_path / "c.jsonl"
    with StubChatServer(script) as srv:
        backend = make_backend("openai", "stub-model", base_url=srv.base_url)
        res = retrieve(["road", "sky"], backend, P, CallCache(cache), defaults=FAST, progress=False)
    road = res.classes[0]
    assert road.ok and road.attempts == 3 and all(len(d) <= 200 for d in road.descriptions)
    assert "sky" in res.failures and res.descriptions["sky"] == []
    limit = FAST.parse.max_reply_chars
    assert cache.stat().st_size < 6 * limit + 20_000, cache.stat().st_size
    recs = [r for r in CallCache(cache).records() if r["class_name"] == "road"]
    assert sorted(r.get("reply_chars", 0) for r in recs)[-2:] == [len(huge)] * 2
    # replayed, the cut reply is still a bad reply (the class again needs its third attempt)
    again = retrieve(["road"], make_backend("replay", "stub-model", base_url=srv.base_url), P, CallCache(cache),
                     defaults=FAST, progress=False)
    assert again.classes[0].attempts == 3 and again.descriptions["road"] == road.descriptions


def test_max_tokens_is_capped():
    r = _prolab("describe", "--dataset", "cityscapes_19", "--max_tokens", "100000")
    assert r.returncode == 2 and "max_tokens = 100000" in r.stderr


# -- 6: cache lines that are JSON but not records -----------------------------------------------------------------

def test_cache_lines_without_a_string_reply_are_skipped_with_file_and_line(tmp_path):
    f = tmp_path / "calls.jsonl"
    CallCache(f).put("good", "- a reply")
    with open(f, "a") as h:
        h.write(json.dumps({"key": "noreply", "class_name": "x"}) + "\n")
        h.write(json.dumps({"key": "numreply", "reply": 42}) + "\n")
        h.write(json.dumps(["a", "list"]) + "\n")
        h.write(json.dumps({"reply": "no key"}) + "\n")
    with pytest.warns(UserWarning) as rec:
        c = CallCache(f)
    msgs = [str(w.message) for w in rec]
    assert f"{f}:2" in msgs[0] and "'reply'" in msgs[0]
    assert any(f"{f}:3" in m for m in msgs) and any(f"{f}:5" in m and "'key'" in m for m in msgs)
    assert len(c) == 1 and c.skipped_lines == 4 and c.get("good")["reply"] == "- a reply"


# -- 7: a replay that reproduces a committed file leaves it alone ----------------------------------------------

def test_replay_of_a_committed_file_touches_nothing(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    shutil.copytree(paths.repo_root() / "descriptors", root / "descriptors")
    monkeypatch.setenv("PROLAB_ROOT", str(root))
    target = paths.descriptor_path("cityscapes_19", "qwen2.5-coder-1.5b-instruct-q4_k_m", P.tag)
    meta = paths.descriptor_meta_path(target)
    before = _snapshot(target, meta)
    stamps = (target.stat().st_mtime_ns, meta.stat().st_mtime_ns)
    r = _prolab("describe", "--dataset", "cityscapes_19", env={"PROLAB_ROOT": str(root)})
    assert r.returncode == 0, r.stderr
    assert _snapshot(target, meta) == before
    assert (target.stat().st_mtime_ns, meta.stat().st_mtime_ns) == stamps
    assert not list(target.parent.glob("*.partial.json"))


def test_run_config_with_the_default_out_root_is_skipped_when_rerun(scratch_root, capsys):
    from prolab.pipeline.runner import run_pipeline

    cfg = scratch_root / "replay.yaml"
    cfg.write_text(yaml.safe_dump({"run_name": "replay", "notebooks": [
        {"notebook": "02_llm_retrieval", "parameters": {"dataset": "cityscapes_19"}}]}))
    target = scratch_root / "descriptors" / "cityscapes_19" / COMMITTED.name
    before = _snapshot(target, paths.descriptor_meta_path(target))
    run_pipeline(cfg, progress=False)
    run_pipeline(cfg, progress=False)
    assert capsys.readouterr().out.count("unchanged, skipped") == 1
    assert _snapshot(*map(Path, before)) == before


# -- 8: a property space's .json and .safetensors from different runs ------------------------------------------

def _space(seed, names=("road", "sky", "tree")):
    from prolab.properties import PropertySpace

    rng = np.random.default_rng(seed)
    descs = [f"{c} description {i}" for c in names for i in range(3)]
    return PropertySpace(bank=rng.normal(size=(4, 8)).astype(np.float32),
                         signatures=rng.integers(0, 2, size=(3, 4)).astype(np.uint8), class_names=list(names),
                         descriptions=descs, desc_class=np.repeat(np.arange(3), 3),
                         desc_property=rng.integers(0, 4, size=9), property_names=[f"p{k}" for k in range(4)])


def test_property_space_files_from_different_runs_are_refused(tmp_path):
    from prolab.properties import PropertySpace

    a, b = _space(0).save(tmp_path / "a"), _space(1).save(tmp_path / "b")
    PropertySpace.load(a)  # intact
    shutil.copy(b, a)      # seed-1 tensors beside seed-0 names
    with pytest.raises(ValueError, match="does not belong to a.json") as e:
        PropertySpace.load(a)
    assert str(a) in str(e.value)

    c = _space(2).save(tmp_path / "c")
    meta = json.loads(c.with_suffix(".json").read_text())
    meta["class_names"][0], meta["class_names"][1] = meta["class_names"][1], meta["class_names"][0]
    c.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="class names or descriptions were changed") as e:
        PropertySpace.load(c)
    assert "c.json" in str(e.value)

    d = _space(3).save(tmp_path / "d")  # property names are free to edit
    meta = json.loads(d.with_suffix(".json").read_text())
    meta["property_names"][0] = "hand-named property"
    d.with_suffix(".json").write_text(json.dumps(meta))
    assert PropertySpace.load(d).property_names[0] == "hand-named property"


def test_committed_property_spaces_carry_their_hashes():
    from prolab.properties import PropertySpace

    files = sorted((paths.repo_root() / "properties").rglob("*.safetensors"))
    assert files
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for f in files:
            PropertySpace.load(f)


# -- 9: bad label files are found before training starts ---------------------------------------------------------

def _custom(tmp_path, n=3, size=(40, 30)):
    img, ann = tmp_path / "img", tmp_path / "ann"
    img.mkdir()
    ann.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(img / f"{i}.jpg")
        Image.fromarray(rng.integers(0, 3, (size[1], size[0]), dtype=np.uint8)).save(ann / f"{i}.png")
    (tmp_path / "classes.txt").write_text("road\nsky\ntree\n")
    return img, ann, tmp_path / "classes.txt"


def test_sixteen_bit_and_truncated_labels_fail_before_training(tmp_path, monkeypatch):
    from prolab.datasets.layouts import LayoutError, custom_dataset
    from prolab.train.config import TrainConfig
    from prolab.train.loop import train

    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "cache"))
    img, ann, classes = _custom(tmp_path)
    ds = custom_dataset(img, ann, classes)
    assert ds.check_files(progress=False) == {"samples": 3, "cached": False}
    assert ds.check_files(progress=False)["cached"]
    # 16-bit with class values only: a valid label map in a wider type
    Image.fromarray(np.full((30, 40), 2, dtype=np.uint16)).save(ann / "1.png")
    assert custom_dataset(img, ann, classes).check_files(progress=False)["samples"] == 3
    # 16-bit with a value no 8-bit map can hold
    Image.fromarray(np.full((30, 40), 300, dtype=np.uint16)).save(ann / "1.png")
    cfg = TrainConfig.demo(run_name="bad16", dataset="custom", img_dir=str(img), ann_dir=str(ann),
                           classes=str(classes), mode="category", iters=2, batch_size=1, crop_size=16,
                           scale=(40, 30), pretrained=None, channels=8)
    with pytest.raises(LayoutError, match="1.png has value 300"):
        train(cfg, progress=False)
    assert not (paths.run_dir("bad16") / "metrics.jsonl").exists()  # not a single iteration ran
    # a truncated PNG: the error names it
    Image.fromarray(np.zeros((30, 40), dtype=np.uint8)).save(ann / "1.png")
    data = (ann / "2.png").read_bytes()
    (ann / "2.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(LayoutError, match=r"2\.png cannot be decoded"):
        custom_dataset(img, ann, classes).check_files(progress=False)
    with pytest.raises(LayoutError, match=r"2\.png"):
        custom_dataset(img, ann, classes).load(2)


def test_label_value_outside_the_classes_names_the_fix(tmp_path):
    from prolab.datasets.layouts import LayoutError, custom_dataset

    img, ann, classes = _custom(tmp_path)
    Image.fromarray(np.full((30, 40), 11, dtype=np.uint8)).save(ann / "0.png")
    with pytest.raises(LayoutError, match=r"0\.png has values \[11\].*--ignore_index 11"):
        custom_dataset(img, ann, classes).load(0)


# -- 10: custom data without a property space --------------------------------------------------------------------

def test_custom_dataset_without_property_space_says_how_to_build_one(tmp_path):
    img, ann, classes = _custom(tmp_path)
    r = _prolab("train", "--dataset", "custom", "--img_dir", str(img), "--ann_dir", str(ann),
                "--classes", str(classes), "--run_name", "nospace")
    assert r.returncode == 2
    assert "needs a property space" in r.stderr and "prolab properties --dataset" in r.stderr, r.stderr
    assert "error: 'custom'" not in r.stderr


# -- 11, 12: damaged checkpoints, leftovers of a kill -------------------------------------------------------------

@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    """A 2-iteration category run on a 3-image custom dataset (seconds), checkpoint at every iteration."""
    from prolab.train.config import TrainConfig

    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "cache"))
    img, ann, classes = _custom(tmp_path)
    return TrainConfig.demo(run_name="tiny", dataset="custom", img_dir=str(img), ann_dir=str(ann),
                            classes=str(classes), mode="category", iters=2, batch_size=2, crop_size=32,
                            scale=(40, 30), pretrained=None, channels=8, checkpoint_interval=1)


def test_damaged_checkpoint_names_the_file_and_the_ways_on(tiny_run):
    from prolab.train.loop import train

    from dataclasses import replace

    tiny_run = replace(tiny_run, iters=3)
    train(tiny_run, progress=False, stop_after=2)  # unfinished: the next call resumes from the checkpoint
    ck = paths.checkpoint_path("tiny")
    prev = ck.with_name("checkpoint.prev.pt")
    assert ck.exists() and prev.exists()  # the last two are kept
    data = ck.read_bytes()
    ck.write_bytes(data[: len(data) // 3])  # truncated
    for damaged in (data[: len(data) // 3], pickle.dumps({"model": Path("/x")})):  # truncated, foreign object
        ck.write_bytes(damaged)
        with pytest.raises(RuntimeError) as e:
            train(tiny_run, progress=False)
        msg = str(e.value)
        assert str(ck) in msg and "--resume false" in msg and f"mv {prev} {ck}" in msg, msg
        assert "weights_only=False" not in msg and "weights_only" not in msg
    # the suggested way on works
    shutil.move(prev, ck)
    res = train(tiny_run, progress=False)
    assert res.resumed_from == 1 and res.weights.exists()


def test_killed_checkpoint_write_leaves_nothing_behind(tiny_run):
    from prolab.train.loop import train

    run = paths.run_dir("tiny")
    run.mkdir(parents=True)
    stale = run / ".checkpoint.pt.999999999-abcd.tmp"  # what a kill -9 mid-write leaves (its pid is gone)
    stale.write_bytes(b"half a checkpoint")
    old_style = run / ".checkpoint.pt.abcd.tmp"
    old_style.write_bytes(b"x")
    mine = run / f".checkpoint.pt.{os.getpid()}-live.tmp"  # a live writer's temp is not touched
    mine.write_bytes(b"y")
    train(tiny_run, progress=False)
    assert not stale.exists() and not old_style.exists() and mine.exists()


def test_kill_between_keeping_and_writing_a_checkpoint_resumes_from_the_previous(tiny_run):
    from dataclasses import replace

    from prolab.train.loop import train

    train(replace(tiny_run, iters=3), progress=False, stop_after=2)
    ck = paths.checkpoint_path("tiny")
    os.replace(ck, ck.with_name("checkpoint.prev.pt"))  # the state right after the rename
    res = train(replace(tiny_run, iters=3), progress=False)
    assert res.resumed_from == 2 and res.weights.exists()


# -- 13, 15: a notebook that fails inside `prolab run`; a server that echoes the key ---------------------------

@pytest.fixture
def scratch_root(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    for name in ("notebooks", "descriptors"):
        shutil.copytree(paths.repo_root() / name, root / name)
    (root / "prolab").symlink_to(paths.repo_root() / "prolab")
    monkeypatch.setenv("PROLAB_ROOT", str(root))
    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "cache"))
    return root


def test_failed_notebook_is_one_clear_line_and_no_key_lands_anywhere(scratch_root, monkeypatch):
    from prolab.pipeline.runner import PipelineError, run_pipeline

    (scratch_root / "classes.txt").write_text("road\nsky\n")
    with StubChatServer(StubScript(faults=deque(["401-echo"] * 10))) as srv:
        monkeypatch.setenv("PROLAB_TEST_KEY", KEY)
        cfg = scratch_root / "leak.yaml"
        cfg.write_text(yaml.safe_dump({"run_name": "leak", "notebooks": [{"notebook": "02_llm_retrieval", "parameters": {
            "dataset": "classes.txt", "backend": "openai", "llm": "stub-model", "base_url": srv.base_url,
            "api_key_env": "PROLAB_TEST_KEY", "out_root": "results/leak/d", "cache_path": "results/leak/c.jsonl"}}]}))
        with pytest.raises(PipelineError) as e:
            run_pipeline(cfg, progress=False)
        assert any(KEY in h for h in srv.stats.auth_headers)  # the key was sent (to the server it was named for)...
    msg = str(e.value)
    assert msg.startswith("notebook 02_llm_retrieval failed at cell ") and "BackendError" in msg, msg
    assert "refused the request (401)" in msg and "[REDACTED]" in msg and KEY not in msg
    failed = scratch_root / "results" / "leak" / "notebooks" / "02_llm_retrieval.failed.ipynb"
    assert f"executed copy at {failed.relative_to(scratch_root)}" in msg and failed.exists()
    assert not list(failed.parent.glob(".*running*"))
    _no_key_in(scratch_root)                          # ...and never written anywhere
    assert KEY[8:20] not in failed.read_text()


def test_cli_errors_are_redacted(stub_server, classes_file, tmp_path):
    stub_server.script.faults.extend(["401-echo"] * 5)
    r = _prolab("describe", "--dataset", str(classes_file), "--backend", "openai", "--llm", "m", "--base_url",
                stub_server.base_url, "--api_key_env", "PROLAB_TEST_KEY", "--out_root", str(tmp_path / "o"),
                "--cache_path", str(tmp_path / "c.jsonl"), env={"PROLAB_TEST_KEY": KEY})
    assert r.returncode == 2 and "(401)" in r.stderr and KEY not in r.stderr + r.stdout, r.stderr
    _no_key_in(tmp_path)


def test_stale_running_copies_are_cleaned_and_ignored_by_git(scratch_root):
    from prolab.pipeline.runner import run_pipeline

    nbdir = scratch_root / "results" / "stale" / "notebooks"
    nbdir.mkdir(parents=True)
    leftovers = [nbdir / ".07_ablation_tables.running.ipynb", nbdir.parent / ".timings.json.999999999-zz.tmp"]
    for f in leftovers:
        f.write_text("{}")
    shutil.copytree(REPO / "results" / "demo_grid", scratch_root / "results" / "demo_grid")
    cfg = scratch_root / "stale.yaml"
    cfg.write_text(yaml.safe_dump({"run_name": "stale", "notebooks": [
        {"notebook": "07_ablation_tables", "parameters": {"write": False}}]}))
    run_pipeline(cfg, progress=False)
    assert not any(f.exists() for f in leftovers)
    assert (nbdir / "07_ablation_tables.ipynb").exists()
    for name in ("results/demo/notebooks/.05_train_segmentation.running.ipynb",
                 "results/demo/notebooks/05_train_segmentation.failed.ipynb"):
        r = subprocess.run(["git", "check-ignore", "-q", name], cwd=REPO)
        assert r.returncode == 0, name


# -- 14: every flag and grid value is checked up front -----------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["properties", "--dataset", "synthetic_outdoor", "--n_properties", "0"], ["n_properties = 0", ">= 1"]),
    (["properties", "--dataset", "synthetic_outdoor", "--n_properties", "1000"],
     ["n_properties = 1000", "at most the number of descriptions to cluster (192)"]),
    (["train", "--scale", "0", "0"], ["scale = [0, 0]"]),
    (["train", "--warmup_iters", "-10"], ["warmup_iters = -10", ">= 0"]),
    (["train", "--loss", "cos_sigmoud"], ["loss = 'cos_sigmoud'", "did you mean 'cos_sigmoid'"]),
    (["evaluate", "--run_name", "x", "--limit", "0"], ["limit = 0"]),
])
def test_bad_flags_are_refused_before_work_starts(args, words, tmp_path):
    r = _prolab(*args, env={"PROLAB_CACHE": str(tmp_path)})
    assert r.returncode == 2, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "embeddings").exists()


def test_grid_check_refuses_a_k_larger_than_the_descriptions(tmp_path):
    g = yaml.safe_load((paths.repo_root() / "configs" / "grid_demo.yaml").read_text())
    g["vary"] = {"n_properties": [12, 1000]}
    f = tmp_path / "g.yaml"
    f.write_text(yaml.safe_dump(g))
    r = _prolab("grid", "--config", str(f), "--check")
    assert r.returncode == 2 and "n_properties = 1000" in r.stderr and "(192)" in r.stderr, r.stderr
    g["vary"] = {"temperature": [0.0]}
    f.write_text(yaml.safe_dump(g))
    r = _prolab("grid", "--config", str(f), "--check")
    assert r.returncode == 2 and "temperature = 0.0" in r.stderr, r.stderr


# -- review findings: redaction keeps notebooks valid and outputs intact; echoed keys in replies; odd values ---

def test_saved_notebooks_stay_valid_json_and_published_outputs_are_not_redacted(tmp_path):
    from prolab.pipeline.outputs import MIME
    from prolab.pipeline.runner import _relative_paths

    nb = {"cells": [{"cell_type": "code", "source": ['base_url = "http://h/v1?api_key=abc123xyz\\"more"'],
                     "outputs": [{"output_type": "display_data", "data": {
                         MIME: {"run_names": ["hf_ablation_property_run_long_name", "Basic statistics"]},
                         "text/plain": "Authorization: Bearer sk-proj-" + "Q" * 30}}]}],
          "metadata": {"papermill": {}}, "nbformat": 4, "nbformat_minor": 5}
    tmp = tmp_path / "t.ipynb"
    tmp.write_text(json.dumps(nb))
    _relative_paths(tmp, tmp_path / "final.ipynb")
    out = json.loads((tmp_path / "final.ipynb").read_text())  # valid JSON
    src = out["cells"][0]["source"][0]
    assert "abc123xyz" not in src and "[REDACTED]" in src
    data = out["cells"][0]["outputs"][0]["data"]
    assert data[MIME]["run_names"] == ["hf_ablation_property_run_long_name", "Basic statistics"]
    assert "QQQQ" not in data["text/plain"]
    from prolab.redact import redact

    assert redact("Basic statistics of the property space") == "Basic statistics of the property space"


def test_a_key_echoed_inside_a_reply_reaches_no_file(classes_file, tmp_path):
    script = StubScript(replies={"road": [stub_reply("road") + f"\n- authorised with Bearer {KEY}"]})
    with StubChatServer(script) as srv:
        os.environ["PROLAB_TEST_KEY"] = KEY
        try:
            backend = make_backend("openai", "stub-model", base_url=srv.base_url, api_key_env="PROLAB_TEST_KEY")
            describe_dataset(str(classes_file), backend, out_root=tmp_path / "out", cache_path=tmp_path / "c.jsonl",
                             defaults=FAST, progress=False)
        finally:
            os.environ.pop("PROLAB_TEST_KEY")
    _no_key_in(tmp_path)


def test_duplicate_steps_null_and_nan_are_refused(tmp_path):
    from prolab.pipeline.runner import load_config
    from prolab.train.config import TrainConfig

    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"run_name": "dup", "notebooks": ["06_evaluate", "06_evaluate"]}))
    with pytest.raises(ValueError, match="already a step"):
        load_config(f)
    f.write_text(yaml.safe_dump({"run_name": "n", "notebooks": [{"notebook": "02_llm_retrieval",
                                                                 "parameters": {"seed": None}}]}))
    with pytest.raises(ValueError, match="seed = None"):
        load_config(f)
    for bad in (dict(aux_weight=float("nan")), dict(weight_decay=float("inf"))):
        with pytest.raises(ValueError, match="finite"):
            TrainConfig.preset("demo", **bad)


def test_resume_when_the_same_space_is_named_by_another_path(tmp_path, monkeypatch):
    from dataclasses import replace

    from prolab.properties import default_space_path
    from prolab.train.config import TrainConfig
    from prolab.train.loop import train

    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "cache"))
    cfg = TrainConfig.preset("demo", run_name="rs", iters=3, batch_size=2, crop_size=32, scale=(64, 32),
                             channels=8, pretrained=None, checkpoint_interval=1)
    train(cfg, progress=False, stop_after=2)
    res = train(replace(cfg, property_space=str(default_space_path("synthetic_outdoor").resolve())), progress=False)
    assert res.resumed_from == 2 and res.weights.exists()
