"""Two settings compared seed by seed (notebook 07): the per-seed pairs and the per-class IoU gap."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from prolab.reports.paired import class_gap, paired_seeds, plot_class_gap, plot_paired_seeds  # noqa: E402


def _runs():
    rows = [{"axis": "base", "mode": "property", "seed": s, "mIoU": m} for s, m in ((0, 40.0), (1, 44.0), (2, 50.0))]
    rows += [{"axis": "mode", "mode": "category", "seed": s, "mIoU": m} for s, m in ((1, 41.0), (0, 45.0))]
    return pd.DataFrame(rows)


def test_pairs_are_matched_by_seed_not_by_row_order():
    p = paired_seeds(_runs())
    assert p["seed"].tolist() == [0, 1]                   # seed 2 has no category run: left out
    assert p["base - mode=category"].tolist() == [-5.0, 3.0]
    fig = plot_paired_seeds(p, ("property", "category"))
    colours = [line.get_color() for line in fig.axes[0].lines]
    assert colours == ["#d62728", "#1f77b4"]              # behind on seed 0, ahead on seed 1
    with pytest.raises(KeyError, match="'mode=propery'.*base, mode=category"):
        paired_seeds(_runs(), b="mode=propery")


def test_class_gap_is_the_mean_per_seed_difference_with_its_standard_error():
    pc = pd.DataFrame([{"setting": st, "seed": s, "cell": f"{st}{s}", "road": r, "tree": t}
                       for st, s, r, t in (("base", 0, 90, 10), ("base", 1, 92, 60), ("mode=category", 0, 91, 70),
                                           ("mode=category", 1, 91, 62))])
    g = class_gap(pc)
    assert g["class"].tolist() == ["road", "tree"]        # sorted, largest difference first
    road, tree = g.iloc[0], g.iloc[1]
    assert road["difference"] == 0.0 and road["n"] == 2
    assert tree["difference"] == pytest.approx(-31.0)     # (-60 + -2) / 2
    assert tree["se"] == pytest.approx(np.std([-60, -2], ddof=1) / np.sqrt(2))
    fig = plot_class_gap(g)
    assert len(fig.axes[0].patches) == 2
