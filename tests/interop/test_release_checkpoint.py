"""The release's mmseg 0.x checkpoint layout <-> our SegModel (prolab.interop.release.checkpoint)."""
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from prolab.interop.release.checkpoint import load_release_checkpoint, release_to_run, save_release_state
from prolab.interop.release.keys import (RELEASE_TO_OURS, RULES, ConversionReport, convert_release_state,
                                         ours_to_release, release_key_names, release_to_ours_key)

REPO = Path(__file__).resolve().parents[2]
ADE_SPACE = next((REPO / "properties" / "ade20k_150").glob("*.safetensors"))
OURS_ONLY = {"bank", "signatures", "warmup_classifier.weight", "warmup_classifier.bias"}


def _build(seed):
    from prolab.datasets import load_class_names
    from prolab.train.config import TrainConfig
    from prolab.train.build import build_model

    torch.manual_seed(seed)
    cfg = TrainConfig.preset("paper", dataset="ade20k_150", backbone="vit_adapter_base", pretrained="none",
                             channels=512, property_space=str(ADE_SPACE))
    return build_model(cfg, load_class_names("ade20k_150"))[0].eval()


@pytest.fixture(scope="module")
def model():
    """Our ViT-Adapter-B + UperNet + FCN property model on the committed ADE20K space (~5 s to build)."""
    m = _build(0)
    with torch.no_grad():   # BN statistics away from their init, so a mix-up of BN buffers shows
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return m


@pytest.fixture(scope="module")
def fresh():
    """A second model, other initialisation: what a checkpoint is loaded into."""
    return _build(1)


def _ours_only(state):
    return {k: v for k, v in state.items() if k in OURS_ONLY}


def test_rules_map_the_release_layout_one_to_one():
    keys = release_key_names()
    assert len(keys) == len(set(keys)) == 468
    for key in keys:   # every release key matches exactly one rule, and so does its image
        assert sum(bool(r.fullmatch(key)) for r, _, _, _ in RULES) == 1, key
        ours = release_to_ours_key(key)
        assert ours is not None and sum(bool(o.fullmatch(ours)) for _, _, o, _ in RULES) == 1, (key, ours)
    assert len({release_to_ours_key(k) for k in keys}) == len(keys)
    assert len(RELEASE_TO_OURS) == len(RULES)
    # spot checks of the renamings that are not identities
    assert release_to_ours_key("backbone.spm.stem.4.running_var") == "backbone.spm.stem.1.1.running_var"
    assert release_to_ours_key("backbone.norm3.weight") == "backbone.norms.2.weight"
    assert release_to_ours_key("backbone.interactions.3.extra_extractors.1.ffn.dwconv.dwconv.bias") == \
        "backbone.interactions.3.extra_extractors.1.ffn.dwconv.bias"
    assert release_to_ours_key("decode_head.psp_modules.2.1.bn.num_batches_tracked") == \
        "decode.ppm.2.1.1.num_batches_tracked"
    assert release_to_ours_key("decode_head.fpn_bottleneck.conv.weight") == "decode.fuse.0.weight"
    assert release_to_ours_key("auxiliary_head.convs.0.bn.bias") == "aux.block.1.bias"
    assert release_to_ours_key("decode_head.conv_seg.weight") == "classifier.weight"
    assert release_to_ours_key("backbone.blocks.3.attn.relative_position_bias_table") is None   # BEiT: not ours


def test_our_state_in_the_release_layout(model):
    sd = model.state_dict()
    report = ConversionReport()
    rel = ours_to_release(sd, report)
    assert set(rel) == set(release_key_names())          # exactly the release's keys, nothing more or less
    assert set(report.dropped) == OURS_ONLY
    for key in ("decode_head.psp_modules.0.1.conv.weight", "decode_head.psp_modules.3.1.bn.running_var",
                "decode_head.bottleneck.conv.weight", "decode_head.lateral_convs.2.bn.weight",
                "decode_head.fpn_convs.0.conv.weight", "decode_head.fpn_bottleneck.bn.bias",
                "auxiliary_head.convs.0.bn.running_mean", "backbone.norm1.weight", "backbone.norm4.running_var",
                "backbone.spm.stem.0.weight", "backbone.spm.stem.7.num_batches_tracked", "backbone.level_embed",
                "backbone.spm.conv4.1.weight", "backbone.interactions.0.injector.gamma",
                "backbone.interactions.3.extra_extractors.1.ffn.dwconv.dwconv.weight",
                "backbone.blocks.11.mlp.fc2.weight"):
        assert key in rel, key
    assert "backbone.cls_token" not in rel and not any(k.startswith("backbone.norms.") for k in rel)
    # shapes as the release's config makes them: d = the space's width (384 here; 768 for BGE-base)
    assert rel["backbone.pos_embed"].shape == (1, 197, 768)
    assert torch.equal(rel["backbone.pos_embed"][:, 0], torch.zeros(1, 768))
    assert rel["decode_head.conv_seg.weight"].shape == (384, 512, 1, 1)
    assert rel["auxiliary_head.conv_seg.weight"].shape == (384, 256, 1, 1)
    assert rel["auxiliary_head.convs.0.conv.weight"].shape == (256, 768, 3, 3)
    assert rel["decode_head.bottleneck.conv.weight"].shape == (512, 768 + 4 * 512, 3, 3)
    assert rel["backbone.interactions.0.injector.attn.value_proj.weight"].shape == (384, 768)   # deform_ratio 0.5


def test_round_trip_loads_strictly_and_gives_identical_outputs(model, fresh):
    sd = model.state_dict()
    report = ConversionReport()
    back = convert_release_state(ours_to_release(sd), report)
    assert report.reshaped and not report.unexpected and not report.dropped
    assert set(back) == set(sd) - OURS_ONLY
    for k, v in back.items():
        assert torch.equal(v, sd[k]), k
    fresh.load_state_dict({**back, **_ours_only(sd)}, strict=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model(x)["logits"], fresh(x)["logits"]
        assert a.shape == (1, 256, 16, 16) and torch.equal(a, b)
        assert torch.equal(model.predict_scores(x), fresh.predict_scores(x))


def test_a_random_release_state_loads_and_runs(model, fresh):
    rel_shapes = ours_to_release(model.state_dict())
    g = torch.Generator().manual_seed(3)
    rel = {}
    for k, v in rel_shapes.items():
        if not v.is_floating_point():
            rel[k] = torch.tensor(7, dtype=v.dtype)
        elif k.endswith("running_var"):
            rel[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            rel[k] = (torch.randn(v.shape, generator=g) * 0.02).half()   # the release trained in fp16
    ck = {"meta": {"iter": 320000}, "state_dict": {"module." + k: v for k, v in rel.items()}}
    ours = convert_release_state(ck)
    assert all(v.dtype == torch.float32 for v in ours.values() if v.is_floating_point())
    fresh.load_state_dict({**ours, **_ours_only(model.state_dict())}, strict=True)
    # values land where the table says
    bb = fresh.backbone
    assert torch.equal(bb.spm.stem[1][1].running_var, rel["backbone.spm.stem.4.running_var"])
    assert torch.equal(bb.norms[2].running_mean, rel["backbone.norm3.running_mean"])
    assert torch.equal(bb.pos_embed, rel["backbone.pos_embed"][:, 1:].float())
    assert torch.equal(bb.interactions[3].extra_extractors[1].ffn.dwconv.weight,
                       rel["backbone.interactions.3.extra_extractors.1.ffn.dwconv.dwconv.weight"].float())
    assert torch.equal(fresh.decode.ppm[1][1][0].weight, rel["decode_head.psp_modules.1.1.conv.weight"].float())
    assert torch.equal(fresh.classifier.weight, rel["decode_head.conv_seg.weight"].float())
    assert torch.equal(fresh.aux_classifier.bias, rel["auxiliary_head.conv_seg.bias"].float())
    with torch.no_grad():
        out = fresh(torch.randn(1, 3, 64, 64, generator=g))["logits"]
    assert out.shape == (1, 256, 16, 16) and torch.isfinite(out).all()


def _tiny_release_state(aux=True):
    """Every release key as a small tensor (the conversion checks names; pos_embed keeps its layout)."""
    st = {k: torch.zeros(2) for k in release_key_names(aux=aux)}
    st["backbone.pos_embed"] = torch.arange(197 * 4, dtype=torch.float32).view(1, 197, 4)
    return st


def test_conversion_says_what_it_dropped_and_refuses_an_incomplete_state():
    st = _tiny_release_state()
    st["backbone.cls_token"] = torch.zeros(1, 1, 4)
    st["backbone.blocks.0.attn.q_bias"] = torch.zeros(4)
    report = ConversionReport()
    with pytest.warns(UserWarning, match="q_bias"):
        out = convert_release_state(st, report)
    assert "backbone.cls_token" in report.dropped and "class token" in report.dropped["backbone.cls_token"]
    assert report.unexpected == ["backbone.blocks.0.attn.q_bias"]
    assert out["backbone.pos_embed"].shape == (1, 196, 4)
    assert torch.equal(out["backbone.pos_embed"], st["backbone.pos_embed"][:, 1:])
    assert report.renamed == 468 and len(out) == 468
    # no auxiliary head at all: a model without one
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = convert_release_state(_tiny_release_state(aux=False))
    assert not any(k.startswith("aux") for k in out)
    # a missing tensor is named
    st = _tiny_release_state()
    del st["decode_head.fpn_convs.1.bn.running_var"], st["backbone.norm2.weight"]
    with pytest.raises(ValueError, match=r"lacks 2 .*fpn_convs\.1\.bn\.running_var"):
        convert_release_state(st)
    with pytest.raises(ValueError, match="pos_embed"):
        convert_release_state({**_tiny_release_state(), "backbone.pos_embed": torch.zeros(1, 200, 4)})
    # our keys without a place in the release are an error in the other direction
    with pytest.raises(ValueError, match="extra_head"):
        ours_to_release({"extra_head.weight": torch.zeros(1)})


def test_load_release_checkpoint_reads_mmcv_files_without_running_code(tmp_path):
    import datetime

    st = _tiny_release_state()
    f = tmp_path / "iter_320000.pth"
    torch.save({"meta": {"mmseg_version": "0.27.0", "iter": 320000, "CLASSES": ("wall", "building"),
                         "hook_msgs": {"best_score": np.float64(0.49), "last_ckpt": "x.pth"}},
                "state_dict": st, "optimizer": {"state": {}, "param_groups": [{"lr": 0.0}]}}, f)
    ck = load_release_checkpoint(f)
    assert set(ck) == {"state_dict", "meta", "source", "sha256"} and len(ck["sha256"]) == 64
    assert set(ck["state_dict"]) == set(st) and float(ck["meta"]["hook_msgs"]["best_score"]) == 0.49
    assert len(convert_release_state(ck)) == 468
    bare = tmp_path / "bare.pth"
    torch.save(st, bare)
    assert load_release_checkpoint(bare)["meta"] == {}
    bad = tmp_path / "objects.pth"
    torch.save({"meta": {"when": datetime.datetime(2024, 1, 1)}, "state_dict": st}, bad)
    with pytest.raises(ValueError, match="re-save only its state_dict"):
        load_release_checkpoint(bad)
    with pytest.raises(FileNotFoundError):
        load_release_checkpoint(tmp_path / "none.pth")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    c = tmp_path / "cache"
    monkeypatch.setenv("PROLAB_CACHE", str(c))
    yield c
    shutil.rmtree(c, ignore_errors=True)   # ~0.5 GB of weights


def test_release_to_run_is_scored_by_evaluate(model, tmp_path, cache):
    from prolab import paths
    from prolab.datasets.sample import write_sample
    from prolab.properties import PropertySpace
    from prolab.evaluate.score import evaluate_runs
    from prolab.train.runs import load_trained

    data_root = write_sample("ade20k_150", tmp_path / "data")
    sd = model.state_dict()
    rel = ours_to_release(sd)
    ckpt = save_release_state(rel, tmp_path / "release.pth",
                              meta={"iter": 320000, "hook_msgs": {"best_score": np.float64(0.49)}})
    # the property head's width must be the space's
    wide = {**rel, "decode_head.conv_seg.weight": torch.zeros(768, 512, 1, 1),
            "decode_head.conv_seg.bias": torch.zeros(768)}
    with pytest.raises(ValueError, match="d = 768 .* d = 384"):
        release_to_run(wide, ADE_SPACE, "released", data_root=data_root)

    res = release_to_run(ckpt, ADE_SPACE, "released", data_root=data_root, crop_size=64, scale=(96, 64))
    run = paths.run_dir("released")
    assert res.run_dir == run
    for name in ("model.safetensors", "config.json", "identity.json", "release.json", "property_space.safetensors",
                 "property_space.json"):
        assert (run / name).is_file(), name
    assert res.report["meta"]["best_score"] == 0.49 and len(res.report["sha256"]) == 64
    assert res.report["paper_miou"] == 49.0

    loaded, cfg, classes = load_trained("released")
    assert cfg.backbone == "vit_adapter_base" and cfg.channels == 512 and cfg.temperature == 0.04
    assert cfg.mode == "property" and not cfg.normalize and len(classes) == 150
    space = PropertySpace.load(ADE_SPACE)
    unit = torch.from_numpy(space.bank / np.linalg.norm(space.bank, axis=1, keepdims=True)).float()
    assert torch.allclose(loaded.bank, unit, atol=1e-6)            # as the release normalises its bank rows
    assert torch.equal(loaded.signatures, sd["signatures"])
    for k, v in loaded.state_dict().items():
        if k not in OURS_ONLY:
            assert torch.equal(v, sd[k]), k

    summary, per_class, _ = evaluate_runs(["released"], split="val", inference="slide", limit=1, progress=False)
    miou = float(summary.loc["released", "mIoU"])
    assert math.isfinite(miou) and 0.0 <= miou <= 100.0 and len(per_class) == 150

    with pytest.raises(FileExistsError, match="force"):
        release_to_run(ckpt, ADE_SPACE, "released", data_root=data_root)


def test_the_documented_command_writes_a_run(model, tmp_path, cache, capsys):
    """`python -m prolab.interop.release.checkpoint CHECKPOINT BANK --run_name NAME` (README, 'The authors' files')."""
    from prolab import paths
    from prolab.datasets.sample import write_sample
    from prolab.interop.release.checkpoint import main

    data_root = write_sample("ade20k_150", tmp_path / "data")
    ckpt = save_release_state(ours_to_release(model.state_dict()), tmp_path / "release.pth", meta={"iter": 1})
    assert main([str(ckpt), str(ADE_SPACE), "--run_name", "from-cli", "--data_root", str(data_root)]) == 0
    assert (paths.run_dir("from-cli") / "model.safetensors").is_file()
    assert "prolab evaluate --run_name from-cli --split val --inference slide" in capsys.readouterr().out
    with pytest.raises(FileExistsError):
        main([str(ckpt), str(ADE_SPACE), "--run_name", "from-cli", "--data_root", str(data_root)])  # kept unless --force
