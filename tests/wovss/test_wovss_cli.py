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
    from prolab.wovss.train import load_run

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
