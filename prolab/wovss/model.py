"""The GroupViT network PGSeg trains, on transformers' building blocks (``GroupViTModel``, Apache-2.0; random
initialisation works offline), with the two presets of the kit.

``paper``: GroupViT-S as PGSeg and GroupViT train it: 224 px, patch 16, width 384, 12 layers in stages [6, 3, 3],
6 heads; 64 group tokens join the patch tokens in stage 1, stage 2 makes 8 groups of the 64; text encoder width
256, 12 layers, context 77; projections 384/256 -> 4096 -> 256; the contrastive temperature starts at 0.07
(``logit_scale`` = log(1 / 0.07)). transformers' GroupViT has no drop-path, so the paper's 0.1 is not applied.

``cpu``: the same architecture shrunk so that a step takes a fraction of a second on 2 cores: 64 px, patch 8
(64 patch tokens), width 96, stages [2, 1, 1], 16 then 4 groups, text width 64 over 2 layers. It teaches the
mechanics; it reproduces nothing.

``stage_assignments`` reads the model's soft token -> group assignment of each stage (transformers returns them
as the vision encoder's attentions at evaluation) and ``group_embeddings`` the final groups in the joint
image-text space: together they are what the zero-shot protocol (``prolab.wovss.zero_shot``) needs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

TEMPERATURE_INIT = 0.07


@dataclass(frozen=True)
class GroupViTPreset:
    image_size: int
    patch_size: int
    hidden_size: int
    depths: tuple[int, ...]
    num_group_tokens: tuple[int, ...]
    num_output_groups: tuple[int, ...]
    num_attention_heads: int
    text_hidden_size: int
    text_layers: int
    text_heads: int
    projection_dim: int
    projection_intermediate_dim: int
    context_length: int = 77
    vision_extra: dict = field(default_factory=dict)

    def config(self):
        from transformers import GroupViTConfig

        vision = dict(image_size=self.image_size, patch_size=self.patch_size, hidden_size=self.hidden_size,
                      intermediate_size=4 * self.hidden_size, depths=list(self.depths),
                      num_hidden_layers=sum(self.depths), num_group_tokens=list(self.num_group_tokens),
                      num_output_groups=list(self.num_output_groups), num_attention_heads=self.num_attention_heads,
                      **self.vision_extra)
        text = dict(hidden_size=self.text_hidden_size, intermediate_size=4 * self.text_hidden_size,
                    num_hidden_layers=self.text_layers, num_attention_heads=self.text_heads,
                    max_position_embeddings=self.context_length)
        return GroupViTConfig(text_config=text, vision_config=vision, projection_dim=self.projection_dim,
                              projection_intermediate_dim=self.projection_intermediate_dim,
                              logit_scale_init_value=math.log(1 / TEMPERATURE_INIT))


PRESETS: dict[str, GroupViTPreset] = {
    "paper": GroupViTPreset(image_size=224, patch_size=16, hidden_size=384, depths=(6, 3, 3),
                            num_group_tokens=(64, 8, 0), num_output_groups=(64, 8, 8), num_attention_heads=6,
                            text_hidden_size=256, text_layers=12, text_heads=4, projection_dim=256,
                            projection_intermediate_dim=4096),
    "cpu": GroupViTPreset(image_size=64, patch_size=8, hidden_size=96, depths=(2, 1, 1),
                          num_group_tokens=(16, 4, 0), num_output_groups=(16, 4, 4), num_attention_heads=2,
                          text_hidden_size=64, text_layers=2, text_heads=2, projection_dim=64,
                          projection_intermediate_dim=256),
}


def build_groupvit(preset: str = "cpu", seed: int = 0):
    """A randomly initialised ``transformers.GroupViTModel`` of a preset (seeded), in eval mode."""
    from transformers import GroupViTModel

    if preset not in PRESETS:
        raise ValueError(f"preset = {preset!r}: one of {sorted(PRESETS)}")
    torch.manual_seed(seed)
    return GroupViTModel(PRESETS[preset].config()).eval()


def stage_assignments(model, pixel_values: torch.Tensor) -> list[torch.Tensor]:
    """The soft assignment of each grouping stage: stage 1 (B, G1, N patch tokens), stage 2 (B, G2, G1)."""
    out = model.vision_model(pixel_values=pixel_values, output_attentions=True, return_dict=True)
    return [a for a in out.attentions if a is not None]


def group_embeddings(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """The final groups (B, G, projection_dim) in the joint space: each group token through the visual
    projection (the image embedding is the projection of their mean)."""
    tokens = model.vision_model(pixel_values=pixel_values, return_dict=True).last_hidden_state
    b, g, d = tokens.shape
    return model.visual_projection(tokens.reshape(b * g, d)).view(b, g, -1)   # its BatchNorm1d wants (N, C)


__all__ = ["TEMPERATURE_INIT", "GroupViTPreset", "PRESETS", "build_groupvit", "stage_assignments",
           "group_embeddings"]
