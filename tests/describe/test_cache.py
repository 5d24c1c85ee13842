import json

import pytest

from prolab.describe import CallCache, call_key

MSGS = [{"role": "user", "content": "describe road"}]
PARAMS = {"temperature": 0.0, "max_tokens": 10}


def test_key_depends_on_model_messages_and_params():
    k = call_key("m", MSGS, PARAMS)
    assert k == call_key("m", [dict(m) for m in MSGS], dict(PARAMS))
    assert k != call_key("m2", MSGS, PARAMS)
    assert k != call_key("m", [{"role": "user", "content": "describe roads"}], PARAMS)
    assert k != call_key("m", MSGS, {**PARAMS, "temperature": 0.1})


def test_hit_miss_and_reload(tmp_path):
    f = tmp_path / "calls.jsonl"
    c = CallCache(f)
    k = call_key("m", MSGS, PARAMS)
    assert c.get(k) is None and k not in c
    c.put(k, "- reply", class_name="road")
    assert c.get(k)["reply"] == "- reply"
    again = CallCache(f)
    assert len(again) == 1 and again.get(k)["class_name"] == "road"
    # a second put of the same key appends nothing
    again.put(k, "- other")
    assert len(f.read_text().splitlines()) == 1


def test_truncated_last_line_is_skipped_and_file_stays_usable(tmp_path):
    f = tmp_path / "calls.jsonl"
    c = CallCache(f)
    c.put("a", "first")
    with open(f, "a") as h:
        h.write('{"key": "b", "reply": "cut sho')  # a kill in the middle of a write
    with pytest.warns(UserWarning, match="unreadable cache line"):
        c2 = CallCache(f)
    assert len(c2) == 1 and c2.skipped_lines == 1
    c2.put("c", "third")
    with pytest.warns(UserWarning):
        c3 = CallCache(f)
    assert c3.get("c")["reply"] == "third" and c3.get("a")["reply"] == "first"
    assert json.loads(f.read_text().splitlines()[-1])["key"] == "c"


def test_readonly(tmp_path):
    c = CallCache(tmp_path / "x.jsonl", readonly=True)
    with pytest.raises(PermissionError):
        c.put("k", "v")


def test_portable_paths_name_the_cache_and_the_checkout_not_this_machine(tmp_path, monkeypatch):
    from prolab import paths

    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "cache"))
    assert paths.portable(tmp_path / "cache" / "datasets" / "synthetic" / "val") == \
        "$PROLAB_CACHE/datasets/synthetic/val"
    assert paths.portable(paths.repo_root() / "results" / "demo") == "results/demo"
    assert paths.portable(tmp_path / "elsewhere") == str((tmp_path / "elsewhere").resolve())
