"""``prolab wovss train`` / ``prolab wovss evaluate``: a finished run is a folder of safetensors weights, its
configuration and log; evaluation writes results/wovss-style JSON; a finished run is not trained twice; bad
flags and missing runs are refused with what to do."""
import json

import pytest
import torch

from conftest import run_prolab


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_train_then_evaluate(cache):
    from prolab import paths
    from prolab.wovss.runs import load_run

    args = ["wovss", "train", "--iters", 3, "--batch_size", 4, "--pretrained", "none", "--released_code", "true",
            "--gumbel", "false", "--run_name", "tiny run"]
    r = run_prolab(*args)
    assert r.returncode == 0, r.stderr
    folder = paths.wovss_run_dir("tiny run")
    assert {"weights.safetensors", "config.json", "log.json"} <= {p.name for p in folder.iterdir()}
    model, cfg, log = load_run(folder)
    assert cfg.released_code and not cfg.gumbel and cfg.pretrained is None and len(log) == 3
    assert len(model.em_recon) == 2                                  # the released code's EM reconstruction
    again = run_prolab(*args)
    assert again.returncode == 0 and "is finished" in again.stdout   # not trained twice
    assert torch.equal(load_run(folder)[0].to_tokens.weight, model.to_tokens.weight)
    other = run_prolab(*args[:-2], "--seed", 1, "--run_name", "tiny run")  # one name, one configuration
    assert other.returncode == 2 and "other settings" in other.stderr and "'seed': 0" in other.stderr

    r = run_prolab("wovss", "evaluate", "--run_name", "tiny run", "--limit", 2, "--out_dir", cache / "res")
    assert r.returncode == 0, r.stderr
    res = json.loads((cache / "res" / f"{paths.slug('tiny run', 'run_name')}.json").read_text())
    assert res["run_name"] == "tiny run" and res["limit"] == 2 and res["config"]["released_code"] is True
    assert set(res["trivial grid"]) == {"1", "4", "16"} and res["unseen protocol"]["images"] == 1
    from prolab.properties import default_descriptor_file

    r = run_prolab("wovss", "evaluate", "--run_name", "tiny run", "--limit", 2, "--out_dir", cache / "res",
                   "--descriptor_file", default_descriptor_file("synthetic_outdoor"))
    assert r.returncode == 0, r.stderr
    named = json.loads((cache / "res" / f"{paths.slug('tiny run', 'run_name')}-descriptions.json").read_text())
    assert named["naming"].startswith("descriptions: ") and named["oracle final"] == res["oracle final"]


def test_an_untrained_run_and_a_bad_image_size(cache):
    r = run_prolab("wovss", "train", "--iters", 0, "--pretrained", "none", "--run_name", "zero")
    assert r.returncode == 0 and "no iteration" in r.stdout, r.stderr
    r = run_prolab("wovss", "train", "--iters", 1, "--batch_size", 2, "--pretrained", "none", "--image_size", 64)
    assert r.returncode == 2 and "image_size = 64" in r.stderr and "128x128" in r.stderr


def test_refusals(cache):
    r = run_prolab("wovss", "evaluate", "--run_name", "never trained")
    assert r.returncode == 2 and "no finished wovss run" in r.stderr and "prolab wovss train" in r.stderr
    r = run_prolab("wovss", "train", "--gumbel", "maybe")
    assert r.returncode == 2 and "expected true or false" in r.stderr
    r = run_prolab("wovss", "train", "--batch_size", 1, "--pretrained", "none")
    assert r.returncode == 2 and "batch_size = 1" in r.stderr
    r = run_prolab("wovss", "train", "--preset", "paper")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_zero_shot_on_a_benchmark_folder(cache, tmp_path):
    """A checkpoint in GroupViT's hub layout (the cpu preset, random weights), CLIP's tokenizer from a folder
    (a tiny vocabulary: offline), a VOC-layout folder: the protocol runs and writes its mIoU and per-class IoU."""
    import numpy as np
    from PIL import Image
    from safetensors.torch import save_file

    from prolab.wovss.model import build_groupvit

    root = tmp_path / "VOC2012"
    for i, stem in enumerate(("a", "b")):
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(
            root / "JPEGImages" / f"{stem}.jpg")
        (root / "SegmentationClass").mkdir(exist_ok=True)
        lab = np.zeros((40, 56), np.uint8)
        lab[10:30, 10:40] = 15                                             # a person on background
        Image.fromarray(lab).save(root / "SegmentationClass" / f"{stem}.png")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("a\nb\n")
    tok = tmp_path / "tokenizer"
    tok.mkdir()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz.":
        vocab[ch], vocab[ch + "</w>"] = len(vocab), len(vocab) + 1
    (tok / "vocab.json").write_text(json.dumps(vocab))
    (tok / "merges.txt").write_text("#version: 0.2\n")
    ckpt = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in build_groupvit("cpu", seed=1).state_dict().items()}, str(ckpt))
    r = run_prolab("wovss", "zero_shot", "--checkpoint", ckpt, "--benchmark", "voc", "--data_root", root,
                   "--tokenizer", tok, "--preset", "cpu", "--out_dir", tmp_path / "zs")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "zs" / "voc-model.json").read_text())
    assert res["images"] == 2 and res["background"] == 0.95 and res["layout"] == "hub"
    assert len(res["per_class_IoU"]) == 21 and res["mIoU"] == res["mIoU"]            # a number, not NaN
    r = run_prolab("wovss", "zero_shot", "--checkpoint", ckpt, "--benchmark", "voc", "--data_root", root,
                   "--tokenizer", tmp_path / "no-tokenizer", "--preset", "cpu")
    assert r.returncode == 2 and "--tokenizer" in r.stderr and "vocab.json" in r.stderr
