"""Released checkpoints into the kit's GroupViT: random state dicts written in GroupViT's (NVlabs, PGSeg) and in
transformers' hub layout, saved as files and read back with weights_only=True."""
import pytest
import torch

from prolab.wovss.checkpoints import convert, detect_layout, load_groupvit, read_state_dict
from prolab.wovss.model import PRESETS, build_groupvit


def nvlabs_name(hf: str) -> str:
    """The name GroupViT's own code gives a transformers tensor (written out here, independently of the
    converter's table, from GroupViT's module names)."""
    rules = [
        ("vision_model.embeddings.position_embeddings", "img_encoder.pos_embed"),
        ("vision_model.embeddings.patch_embeddings.projection.", "img_encoder.patch_embed.proj."),
        ("vision_model.embeddings.layernorm.", "img_encoder.patch_embed.norm."),
        ("vision_model.layernorm.", "img_encoder.norm."),
        ("vision_model.encoder.stages.", "img_encoder.layers."),
        ("text_model.embeddings.token_embedding.", "text_encoder.token_embedding."),
        ("text_model.embeddings.position_embedding.weight", "text_encoder.positional_embedding"),
        ("text_model.encoder.layers.", "text_encoder.transformer.resblocks."),
        ("text_model.final_layer_norm.", "text_encoder.ln_final."),
        ("visual_projection.3.", "img_projector.linear_out."),
        ("visual_projection.", "img_projector.linear_hidden."),
        ("text_projection.3.", "text_projector.linear_out."),
        ("text_projection.", "text_projector.linear_hidden."),
    ]
    for a, b in rules:
        if hf.startswith(a):
            hf = b + hf[len(a):]
            break
    if hf.startswith("img_encoder.layers.") and ".downsample." not in hf:
        hf = (hf.replace(".layers.", ".blocks.").replace("img_encoder.blocks.", "img_encoder.layers.", 1)
              .replace(".self_attn.out_proj.", ".attn.proj.").replace(".layer_norm1.", ".norm1.")
              .replace(".layer_norm2.", ".norm2."))
    if ".pre_assign_attn.attn.out_proj." in hf:
        hf = hf.replace(".attn.out_proj.", ".attn.proj.")
    if hf.startswith("text_encoder."):
        hf = (hf.replace(".layer_norm1.", ".ln_1.").replace(".layer_norm2.", ".ln_2.").replace(".mlp.fc1.", ".mlp.c_fc.")
              .replace(".mlp.fc2.", ".mlp.c_proj.").replace(".self_attn.out_proj.", ".attn.out_proj."))
    return hf


def nvlabs_state(model) -> dict:
    """A GroupViT-layout checkpoint of ``model``'s (random) weights: fused qkv / in_proj, 1x1-conv projectors."""
    sd = {k: v.clone() for k, v in model.state_dict().items() if k != "text_model.embeddings.position_ids"}
    out = {}
    for k in list(sd):
        for p in ("q_proj", "k_proj", "v_proj"):
            if f".self_attn.{p}." in k and k in sd:
                parts = [sd.pop(k.replace(p, q)) for q in ("q_proj", "k_proj", "v_proj")]
                fused = torch.cat(parts)
                kind = k.rsplit(".", 1)[1]
                base = nvlabs_name(k.replace(f".self_attn.{p}.{kind}", ".self_attn.out_proj.x")).rsplit(".", 2)[0]
                out[base + (f".qkv.{kind}" if base.startswith("img_") else f".in_proj_{kind}")] = fused
    for k, v in sd.items():
        name = nvlabs_name(k)
        if name.startswith(("img_projector.", "text_projector.")) and v.dim() in (1, 2) and ("linear_out" in name or
                                                                                          name.split(".")[2] == "0"):
            v = v[..., None] if v.dim() == 2 else v                # a Conv1d weight (out, in, 1)
        out[name] = v
    return out


@pytest.fixture(scope="module")
def model():
    return build_groupvit("cpu", seed=3)


def test_nvlabs_layout_converts_to_every_tensor_in_place(model, tmp_path):
    src = nvlabs_state(model)
    assert "img_encoder.layers.0.blocks.1.attn.qkv.weight" in src and "text_encoder.transformer.resblocks.0.attn.in_proj_weight" in src
    src["multi_label_logit_scale"] = torch.tensor(2.0)                     # in GroupViT's, not the network's
    src["img_encoder.layers.0.npr_mlp.weight"] = torch.zeros(3)            # stands for PGSeg's own modules
    path = tmp_path / "group_vit.pth"
    torch.save({"model": src, "epoch": 30}, path)
    assert detect_layout(read_state_dict(path)) == "nvlabs"
    loaded, conv = load_groupvit(path, preset="cpu")
    assert set(conv.extra) == {"multi_label_logit_scale", "img_encoder.layers.0.npr_mlp.weight"}
    want = model.state_dict()
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v, want[k], msg=k)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.get_image_features(pixel_values=x), model.get_image_features(pixel_values=x))


def test_hub_layout_from_safetensors(model, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded, conv = load_groupvit(path, preset="cpu")
    assert conv.layout == "hub" and not conv.extra
    torch.testing.assert_close(loaded.state_dict()["logit_scale"], model.state_dict()["logit_scale"])


def test_refusals_name_the_file(model, tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"model": {"x": object()}}, path)                            # would need pickle code to load
    with pytest.raises(ValueError, match="pickled.pt.*weights_only"):
        read_state_dict(path)
    with pytest.raises(ValueError, match="neither GroupViT"):
        convert({"backbone.conv.weight": torch.zeros(1)})
    path = tmp_path / "paper.pt"
    torch.save(nvlabs_state(build_groupvit("cpu")), path)
    with pytest.raises(ValueError, match="wrong preset"):
        load_groupvit(path, preset="paper")
    assert PRESETS["paper"].hidden_size != PRESETS["cpu"].hidden_size
