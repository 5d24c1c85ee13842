"""Every backbone the kit names anywhere (configs, README, notebooks) builds and gives four maps at strides
4/8/16/32: the first round's paper configs crashed at their first iteration on a backbone no test had built."""
import re
from pathlib import Path

import pytest
import torch

from prolab.segment.backbones import create_backbone

REPO = Path(__file__).resolve().parents[2]


def named_backbones() -> set[str]:
    """Backbone names written in configs (values and the alternatives in comments), the README and notebooks."""
    names = set()
    for f in (REPO / "configs").glob("*.yaml"):
        for line in f.read_text().splitlines():
            m = re.match(r"\s*backbone:\s*([\w.\-]+)(?:\s*#.*alternatives?:\s*(.*))?", line)
            if m:
                names.add(m.group(1))
                names.update(n.strip() for n in (m.group(2) or "").split(",") if n.strip())
    from prolab.reports.summary import documents

    for doc in documents():
        names.update(re.findall(r"--backbone[ =]([\w.\-]+)", doc.read_text()))
    for nb in (REPO / "notebooks").glob("*.ipynb"):
        names.update(re.findall(r'backbone\s*=\s*\\?"([\w.\-]+)\\?"', nb.read_text()))
    from prolab import defaults

    names.add(defaults.BACKBONE)
    return {n for n in names if n not in ("None", "none")}


def test_the_names_are_found():
    names = named_backbones()
    assert {"mobilenetv2_100", "vit_adapter_base", "convnext_base.fb_in22k"} <= names, names


@pytest.mark.parametrize("name", sorted(named_backbones()))
def test_every_named_backbone_builds_and_gives_a_stride_4_to_32_pyramid(name):
    torch.manual_seed(0)
    model = create_backbone(name, pretrained=None).eval()
    with torch.no_grad():
        maps = model(torch.randn(1, 3, 64, 64))
    assert len(maps) == 4
    assert [m.shape[-1] for m in maps] == [16, 8, 4, 2], name            # strides 4, 8, 16, 32
    assert [m.shape[1] for m in maps] == model.feature_info.channels(), name
    assert all(torch.isfinite(m).all() for m in maps)


@pytest.mark.parametrize("name, reductions", [("convnext_tiny", 4), ("resnet18", 5), ("vit_tiny_patch16_224", 3)])
def test_levels_come_from_the_models_feature_info(name, reductions):
    """ConvNeXt has four levels (0-3; a fixed (1, 2, 3, 4) was out of range), ResNet five (the first at stride
    2), a plain ViT only stride-16 maps (made a pyramid)."""
    import timm

    probe = timm.create_model(name, pretrained=False, features_only=True,
                              **({"dynamic_img_size": True} if name.startswith("vit") else {}))
    assert len(probe.feature_info.reduction()) == reductions
    model = create_backbone(name, pretrained=None)
    assert model.feature_info.reduction() == [4, 8, 16, 32]


def test_an_unknown_backbone_names_itself():
    with pytest.raises(ValueError, match="unknown backbone 'convnext_bse'.*convnext"):
        create_backbone("convnext_bse", pretrained=None)


def test_vit_adapter_layer_decay_spares_the_adapter():
    """Only the ViT layers are decayed (as the paper's configs): the adapter modules are new and get the
    head's learning rate, the patch embedding the smallest."""
    from prolab.train.config import TrainConfig
    from prolab.train.build import build_model
    from prolab.train.optim import param_groups

    cfg = TrainConfig.preset("paper", backbone="vit_adapter_base", pretrained="none", mode="category",
                             layer_decay=0.95, channels=16)
    model, _ = build_model(cfg, ["a", "b", "c"])
    groups = param_groups(model, cfg.lr, cfg.weight_decay, cfg.layer_decay)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    head = [n for n in named if not n.startswith("backbone.")]
    assert head and all(lr_of[id(named[n])] == pytest.approx(cfg.lr) for n in head)
    assert lr_of[id(named["backbone.patch_embed.proj.weight"])] == pytest.approx(cfg.lr * 0.95 ** 13)
    assert lr_of[id(named["backbone.blocks.11.attn.qkv.weight"])] == pytest.approx(cfg.lr * 0.95 ** 1)
    adapter = [n for n in named if n.startswith(("backbone.spm", "backbone.interactions", "backbone.level_embed"))]
    assert adapter and all(lr_of[id(named[n])] == pytest.approx(cfg.lr) for n in adapter)
