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


def test_collisions_come_with_the_command_that_fixes_them():
    from prolab.cli import collision_advice

    report = {"collisions": [["Pole", "Fence"]], "near": [{"a": "Road", "b": "Sidewalk"}]}
    lines = collision_advice(report, "street.yaml", repaired=False, separated=False)
    assert "`prolab properties --dataset street.yaml --repair`" in lines[0] and "cannot be told apart" in lines[0]
    assert "`prolab properties --dataset street.yaml --separate`" in lines[1]
    assert collision_advice(report, "street.yaml", repaired=True, separated=True) == []


def test_train_says_when_classes_collide_and_when_images_are_smaller_than_the_crop(tmp_path, monkeypatch):
    from pathlib import Path

    from prolab.cli import space_warnings
    from prolab.properties import PropertySpace
    from prolab.train.config import TrainConfig

    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "cache"))
    src = next((Path(__file__).resolve().parents[2] / "properties" / "synthetic_outdoor").glob("*k24.safetensors"))
    space = PropertySpace.load(src)
    space.signatures = space.signatures.copy()
    space.signatures[1] = space.signatures[0]
    bad = space.save(tmp_path / "colliding.safetensors")
    cfg = TrainConfig.demo(property_space=str(bad), crop_size=192)
    lines = space_warnings(cfg)
    assert any(f"gives {space.class_names[0]} and {space.class_names[1]} one signature" in x for x in lines)
    assert any("--repair" in x for x in lines)
    assert any("smaller than the 192-pixel crop" in x for x in lines)
    assert not space_warnings(TrainConfig.demo())            # the demo: no collision, images fit the crop


def _describe_args(**kw):
    import argparse

    base = dict(out_root=None, prompt="structured", min_pooled=None, max_samples=None, dedup_threshold=None,
                pool_temperature=None, prompt_names=None, pool_embedder=None, concurrency=4, max_attempts=3)
    return argparse.Namespace(**{**base, **kw})


def test_a_first_description_gets_the_recipe_the_committed_files_were_made_with(tmp_path, monkeypatch, capsys):
    from prolab import defaults, offline
    from prolab.cli.describe import describe_settings
    from prolab.describe.prompts import load_prompt
    from prolab.describe.retrieval import KIT_RECIPE

    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "cache"))
    llm, tag = offline.canonical_model_id(defaults.LLM), load_prompt("structured").tag
    classes = tmp_path / "my_things.txt"
    classes.write_text("lamp post\nbollard\n")
    d, names, emb = describe_settings(_describe_args(), str(classes), llm, tag)
    assert (d.min_pooled, d.max_samples, names, emb) == (KIT_RECIPE["min_pooled"], KIT_RECIPE["max_samples"],
                                                         KIT_RECIPE["prompt_names"], KIT_RECIPE["pool_embedder"])
    assert "the kit's recipe for a first description" in capsys.readouterr().out
    # the committed structured file of a registered dataset: replayed as it was made (the same recipe)
    d, names, emb = describe_settings(_describe_args(), "cityscapes_19", llm, tag)
    assert d.min_pooled == 8 and emb == "all-MiniLM-L6-v2"
    # the naive prompt (one reply, sentences) is not pooled; flags always win
    d, names, emb = describe_settings(_describe_args(prompt="naive"), str(classes), llm, load_prompt("naive").tag)
    assert d.min_pooled == 0 and not names
    d, names, emb = describe_settings(_describe_args(min_pooled=0, prompt_names=False), str(classes), llm, tag)
    assert d.min_pooled == 0 and names is False
