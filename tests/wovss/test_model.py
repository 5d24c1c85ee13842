"""The GroupViT network of the wovss stage, on transformers' GroupViTModel with random weights (offline)."""
import pytest
import torch

from prolab.wovss import compose_assignments
from prolab.wovss.model import PRESETS, build_groupvit, group_embeddings, stage_assignments


@pytest.fixture(scope="module")
def cpu_model():
    return build_groupvit("cpu", seed=0)


def test_the_paper_preset_is_groupvit_s():
    cfg = PRESETS["paper"].config()
    v, t = cfg.vision_config, cfg.text_config
    assert (v.image_size, v.patch_size, v.hidden_size, list(v.depths), v.num_attention_heads) == (224, 16, 384, [6, 3, 3], 6)
    assert list(v.num_group_tokens) == [64, 8, 0] and list(v.num_output_groups) == [64, 8, 8]
    assert (t.hidden_size, t.num_hidden_layers, t.max_position_embeddings) == (256, 12, 77)
    assert (cfg.projection_dim, cfg.projection_intermediate_dim) == (256, 4096)
    assert torch.isclose(torch.tensor(cfg.logit_scale_init_value).exp(), torch.tensor(1 / 0.07))


def test_our_composition_of_the_stages_is_transformers_grouping(cpu_model):
    """Parity on random weights: composing the two soft assignments gives transformers' own grouping map."""
    from transformers.models.groupvit.modeling_groupvit import get_grouping_from_attentions

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        s1, s2 = stage_assignments(cpu_model, x)
        out = cpu_model.vision_model(pixel_values=x, output_attentions=True, return_dict=True)
        theirs = get_grouping_from_attentions(out.attentions, (8, 8))          # the 8 x 8 token grid, no resize
    assert s1.shape == (2, 16, 64) and s2.shape == (2, 4, 16)
    ours = compose_assignments(s1, s2)
    torch.testing.assert_close(ours.view(2, 4, 8, 8), theirs)
    assert torch.allclose(ours.sum(1), torch.ones(2, 64), atol=1e-5)      # every token fully assigned


def test_groups_live_in_the_joint_space(cpu_model):
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        g = group_embeddings(cpu_model, x)
    assert g.shape == (3, 4, PRESETS["cpu"].projection_dim) and torch.isfinite(g).all()
    with pytest.raises(ValueError, match="preset = 'tiny'"):
        build_groupvit("tiny")


def test_sliding_window_zero_shot_on_random_weights(cpu_model):
    """GroupViT's evaluation on the cpu preset (64-pixel model, patch 8): one window equals the window's own
    scores; a larger image is covered by overlapping windows (position embeddings interpolated); the
    background rule numbers classes from 1."""
    from prolab.wovss.zero_shot import sliding_zero_shot, window_scores

    g = torch.Generator().manual_seed(0)
    texts = torch.randn(6, cpu_model.config.projection_dim, generator=g)
    image = torch.randn(3, 64, 64, generator=g)
    one = sliding_zero_shot(cpu_model, image, texts, short_side=64, window=64, stride=32)
    assert torch.equal(one, window_scores(cpu_model, image[None], texts).argmax(0))
    scores = window_scores(cpu_model, image[None], texts)
    assert int((scores.sum((1, 2)) > 0).sum()) == 5                  # the top-5 rule: one class never named
    big = torch.randn(3, 96, 160, generator=g)
    labels = sliding_zero_shot(cpu_model, big, texts, short_side=96, window=64, stride=32)
    assert labels.shape == (96, 160) and int(labels.max()) < 6
    bg = sliding_zero_shot(cpu_model, big, texts, short_side=96, window=64, stride=32, background=1.01)
    assert torch.equal(bg, torch.zeros_like(bg))                     # no score reaches 1.01: all background
    fg = sliding_zero_shot(cpu_model, big, texts, short_side=96, window=64, stride=32, background=0.0)
    assert torch.equal(fg, labels + 1)
    wide = sliding_zero_shot(cpu_model, big, texts, short_side=96, window=96, stride=48)   # 96 > the model's 64:
    assert wide.shape == (96, 160)                                                       # positions interpolated
    with pytest.raises(ValueError, match="doesn't match model"):                       # what the interpolation avoids
        cpu_model.vision_model(pixel_values=big[None, :, :96, :96])
