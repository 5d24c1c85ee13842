"""Your datasets' artefacts and new LLM calls go to your workspace and cache, never into the checkout."""
from __future__ import annotations

import pytest

from prolab import paths
from prolab.describe.cache import CallCache


def test_the_kits_datasets_use_the_checkout_and_yours_the_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PROLAB_WORKSPACE", raising=False)
    for kit in ("cityscapes_19", "synthetic_outdoor", "new_classes", "prompt_design_classes"):
        assert paths.descriptor_path(kit, "m", "p-1").is_relative_to(paths.repo_root() / "descriptors")
    mine = paths.descriptor_path("street", "m", "p-1")
    assert mine == tmp_path / "cache" / "workspace" / "descriptors" / "street" / "m__p-1.json"
    assert paths.property_space_path("street", "d", "e", "kmeans", 4).is_relative_to(tmp_path / "cache" / "workspace")
    monkeypatch.setenv("PROLAB_WORKSPACE", str(tmp_path / "ws"))
    assert paths.descriptor_path("street", "m", "p-1").is_relative_to(tmp_path / "ws" / "descriptors")
    monkeypatch.setenv("PROLAB_WORKSPACE", " ")
    with pytest.raises(ValueError, match="PROLAB_WORKSPACE is set but empty"):
        paths.descriptor_path("street", "m", "p-1")


def test_new_calls_go_to_your_cache_and_the_committed_one_is_only_read(tmp_path):
    committed, mine = tmp_path / "committed.jsonl", tmp_path / "mine.jsonl"
    CallCache(committed).put("k1", "- old reply")
    before = committed.read_bytes()
    cache = CallCache(mine, also_read=(committed,))
    assert cache.get("k1")["reply"] == "- old reply"          # a replay answers from the kit's calls
    cache.put("k2", "- new reply")
    assert committed.read_bytes() == before and "k2" in CallCache(mine) and "k1" not in CallCache(mine)
    assert "k2" in CallCache(mine, also_read=(committed,)) and "k1" in CallCache(mine, also_read=(committed,))


def test_describe_reads_both_caches_and_writes_yours(tmp_path, monkeypatch):
    from prolab.describe.run import open_call_cache

    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "cache"))
    cache = open_call_cache()
    assert cache.path == tmp_path / "cache" / "llm" / "calls.jsonl"
    assert cache.also_read == (paths.call_cache_path(),) and len(cache) > 500   # the committed calls, read
    named = open_call_cache(tmp_path / "x.jsonl")
    assert named.path == tmp_path / "x.jsonl" and named.also_read == () and len(named) == 0
