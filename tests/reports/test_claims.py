"""The paper's claims checked from grid CSVs (prolab.reports.claims): paired by seed, standard errors, verdicts."""
import json

import numpy as np
import pandas as pd
import pytest

from prolab.reports import claims


def _write(root, grid, rows, meta=None):
    d = root / "results" / grid
    d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(d / "runs.csv", index=False)
    if meta is not None:
        (d / "grid.json").write_text(json.dumps(meta))


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("PROLAB_ROOT", str(tmp_path))
    return tmp_path


def test_pairing_removes_the_seed_effect():
    # seed effects of 0, 10, 20: unpaired stds are large, the paired difference is exactly 1 with no spread
    runs = pd.DataFrame({"seed": [0, 1, 2, 0, 1, 2], "side": list("aaabbb"),
                         "mIoU": [41.0, 51.0, 61.0, 40.0, 50.0, 60.0]})
    p = claims.paired(runs, runs["side"] == "a", runs["side"] == "b", "a", "b")
    assert p.mean == pytest.approx(1.0) and p.se == pytest.approx(0.0) and p.n == 3
    assert p.sign == 1 and "ahead" in p.text()


def test_level_within_two_standard_errors_and_missing_seeds():
    runs = pd.DataFrame({"seed": [0, 1, 2, 0, 1, 3], "side": list("aaabbb"),
                         "mIoU": [41.0, 49.0, 0.0, 40.0, 50.0, 0.0]})
    p = claims.paired(runs, runs["side"] == "a", runs["side"] == "b", "a", "b")
    assert p.n == 2 and sorted(p.diffs) == [0, 1]            # seeds 2 and 3 have no partner
    assert p.mean == pytest.approx(0.0) and p.sign == 0 and "level" in p.text()
    one = claims.paired(runs, (runs["side"] == "a") & (runs["seed"] == 0), runs["side"] == "b", "a", "b")
    assert one.n == 1 and np.isnan(one.se) and one.sign == 0   # one seed decides nothing


def _demo_rows(prop=(40.0, 42.0, 44.0), cat=(45.0, 47.5, 49.0)):
    rows = []
    for s, (p, c) in enumerate(zip(prop, cat)):
        rows.append(dict(axis="base", n_properties=None, loss="cos_sigmoid", prompt="structured", mode="property",
                         seed=s, mIoU=p))
        rows.append(dict(axis="mode", n_properties=None, loss="cos_sigmoid", prompt="structured", mode="category",
                         seed=s, mIoU=c))
        rows.append(dict(axis="n_properties", n_properties=6, loss="cos_sigmoid", prompt="structured",
                         mode="property", seed=s, mIoU=p - 5 - s * 0.1))
        rows.append(dict(axis="loss", n_properties=None, loss="bce", prompt="structured", mode="property", seed=s,
                         mIoU=p - 1 + (s % 2) * 0.1))
        rows.append(dict(axis="loss", n_properties=None, loss="cos", prompt="structured", mode="property", seed=s,
                         mIoU=p - 30))
        rows.append(dict(axis="prompt", n_properties=None, loss="cos_sigmoid", prompt="naive", mode="property",
                         seed=s, mIoU=p + [3, -3, 0.5][s]))
    return rows


def test_verdicts_from_a_demo_grid(root):
    _write(root, "demo_grid", _demo_rows(), {"n_descriptions": 150, "base": {"n_properties": 24}})
    v = {c.name: c for c in claims.verdicts()}
    assert v["property >= category"].verdict.startswith("does not hold")
    assert "property - category: -5.17" in v["property >= category"].evidence[0]
    assert v["cos-sigmoid > BCE > cos"].verdict.startswith("holds")
    assert v["structured > naive prompt"].verdict.startswith("not resolved")
    k = v["K near descriptions/6 is best"]
    assert "best K = 24" in k.verdict and "nearest n/6 is 24" in k.verdict and "holds" in k.verdict
    # grids that are not there give no evidence, and say so
    assert v["unseen classes from their descriptions"].verdict.startswith("no evidence")
    assert "does not hold" in claims.markdown() and "| claim |" not in claims.markdown()


def test_the_gap_with_length(root):
    rows = []
    for s in range(3):
        for it, (p, c) in {100: (40 + s, 45 + s), 1000: (70 + s, 72 + s + 0.1 * s)}.items():
            rows.append(dict(axis="base", mode="property", iters=it, seed=s, mIoU=p))
            rows.append(dict(axis="mode", mode="category", iters=it, seed=s, mIoU=c))
    _write(root, "budget_grid", rows)
    c = claims.gap_with_length()
    assert c.verdict.startswith("holds") and "gap at 1000 - gap at 100: +2.9" in c.evidence[-1]
