"""Notebooks 09 and 11's grid tables: the unseen-class protocol and the training budget, from runs.csv rows."""
import json

import matplotlib
import pandas as pd
import pytest

from prolab.reports.protocols import (budget_gaps, budget_table, budget_verdict, plot_budget, settings_table,
                                      unseen_table, write_protocol_tables)

matplotlib.use("Agg")


def _runs():
    rows = []
    for mode, base in (("property", 40.0), ("category", 44.0), ("name_embedding", 38.0)):
        for it, gain in ((100, 0.0), (300, 5.0)):
            for seed in (0, 1, 2):
                rows.append({"mode": mode, "iters": it, "seed": seed, "mIoU": base + gain + seed,
                             "seen_mIoU": base + seed, "unseen_mIoU": 1.0 * seed, "HM": 0.5 * seed,
                             "cal_seen_mIoU": base - 2, "cal_unseen_mIoU": 10.0, "cal_HM": 15.0, "gamma": 0.1})
    return pd.DataFrame(rows)


def test_unseen_table_has_one_row_per_mode_with_mean_and_std():
    t = unseen_table(_runs()).set_index("supervision")
    assert list(t.index) == ["property (ProLab)", "category (one-hot, cross-entropy)",
                             "class-name embedding (cosine to the name's MiniLM embedding)"]
    assert t.loc["property (ProLab)", "seen mIoU"] == "41.00 ± 0.89"      # 40, 41, 42 at both lengths (n=6)
    assert t.loc["property (ProLab)", "HM (cal.)"] == "15.00 ± 0.00" and t.loc["property (ProLab)", "runs"] == 6
    with pytest.raises(ValueError, match="no unseen-protocol columns"):
        unseen_table(_runs().drop(columns=["cal_HM"]))


def test_budget_table_and_gaps():
    runs = _runs()
    runs = runs[~((runs["mode"] == "category") & (runs["iters"] == 300))]      # a sweep still running
    t = budget_table(runs, {"cross": {"iters": [100, 300, 1000]}}).set_index("supervision")
    assert t.loc["property (ProLab)", "300 iters"] == "46.00 ± 1.00 (n=3)"
    assert t.loc["property (ProLab)", "1000 iters"] == "not run"              # planned by the grid, not run yet
    assert t.loc["category (one-hot, cross-entropy)", "300 iters"] == "not run"
    g = budget_gaps(runs)
    assert g["iters"].tolist() == [100] and g["property - category"].tolist() == [-4.0]
    # paired by seed: both modes gain the same +seed, so every per-seed difference is -4 and the standard error 0
    # (unpaired, the seeds' spread would give sqrt(1/3 + 1/3))
    assert g["standard error"].iloc[0] == pytest.approx(0.0) and g["seeds paired"].iloc[0] == 3
    runs.loc[(runs["mode"] == "property") & (runs["seed"] == 2), "mIoU"] += 3       # seed 2: -1 instead of -4
    g = budget_gaps(runs)
    assert g["property - category"].iloc[0] == pytest.approx(-3.0)
    assert g["standard error"].iloc[0] == pytest.approx(round(3 ** 0.5 / 3 ** 0.5, 2))   # sd(-4, -4, -1) / sqrt(3)
    assert len(plot_budget(runs).axes) == 1


def test_write_protocol_tables(tmp_path):
    _runs().to_csv(tmp_path / "runs.csv", index=False)
    (tmp_path / "grid.json").write_text(json.dumps({"name": "g"}))
    text = write_protocol_tables(tmp_path).read_text()
    assert "## Unseen-class protocol" in text and "## mIoU by training length" in text and "not the paper" in text


def test_settings_table_one_row_per_setting_with_difference_to_category(tmp_path):
    rows = []
    for axis, extra, base in (("base", {}, 40.0), ("temperature", {"temperature": 0.01}, 30.0),
                              ("normalize", {"normalize": True}, 45.0), ("mode", {"mode": "category"}, 44.0)):
        for seed in (0, 1, 2):
            rows.append({"axis": axis, "mode": "property", "temperature": 0.04, "normalize": None,
                         "onehot_warmup_iters": None, **extra, "seed": seed, "mIoU": base + seed})
    runs = pd.DataFrame(rows)
    t = settings_table(runs).set_index("setting")
    assert list(t.index) == ["base: property, T = 0.04", "T = 0.01", "L2-normalised pixel embedding",
                             "category (one-hot, cross-entropy)"]
    assert t.loc["T = 0.01", "- category"] == "-14.00" and t.loc["L2-normalised pixel embedding", "- category"] == "+1.00"
    assert t.loc["category (one-hot, cross-entropy)", "- category"] == "" and (t["runs"] == 3).all()
    runs.to_csv(tmp_path / "runs.csv", index=False)
    (tmp_path / "grid.json").write_text(json.dumps({"name": "settings"}))
    text = write_protocol_tables(tmp_path).read_text()
    assert "## Property-supervision settings" in text and "by training length" not in text


def test_budget_verdict_reads_the_grids():
    runs = _runs()                                  # property 40+gain+seed, category 44+gain+seed: -4 everywhere
    text = budget_verdict(runs)
    assert "at 100 iterations property trails category (-4.00" in text and "does not shrink" in text
    assert "Property mIoU rises at every longer length (41.0 -> 46.0)" in text
    level = runs.copy()
    level.loc[level["mode"] == "property", "mIoU"] += 4
    assert "is level with category (+0.00" in budget_verdict(level)
    settings = pd.DataFrame([{"axis": a, "mode": m, "temperature": 0.04, "normalize": n, "onehot_warmup_iters": None,
                              "seed": sd, "mIoU": v + sd}
                             for a, m, n, v in (("base", "property", None, 40.0), ("normalize", "property", True, 44.0),
                                                ("mode", "category", None, 44.0)) for sd in (0, 1, 2)])
    text = budget_verdict(runs, settings)
    assert "L2-normalised pixel embedding reaches category supervision" in text and "closest is L2" in text
    assert "no length" in budget_verdict(runs[runs["mode"] == "property"])
