"""Notebook 06's confusion views (where a class's pixels went) and where 07 and 08's grid numbers come from."""
import numpy as np

from prolab.evaluate.metrics import EvalResult, metrics_from_confusion
from prolab.reports.figures import confusion_matrices, top_confusions


def _result():
    names = ["road", "sidewalk", "sky"]
    cm = np.array([[80, 20, 0], [40, 60, 0], [0, 0, 100]])
    return EvalResult(metrics_from_confusion(cm, names), cm, names, 1)


def test_top_confusions_are_shares_of_the_true_class():
    t = top_confusions(_result(), top=3)
    assert t.iloc[0].tolist() == ["sidewalk", "road", 40.0]
    assert t.iloc[1].tolist() == ["road", "sidewalk", 20.0]
    assert len(t) == 2            # nothing else is confused: zero shares are not listed


def test_top_confusions_name_how_close_the_two_signatures_are():
    """04 -> 06: each confusion with the cosine of the two classes' signatures and its rank among all pairs."""
    signatures = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1]])       # road and sidewalk share two of three
    t = top_confusions(_result(), top=3, signatures=signatures)
    want = 2 / np.sqrt(2 * 3)
    assert t["signature cosine"].tolist() == [round(want, 2)] * 2
    assert t["similarity rank"].tolist() == [1, 1] and t.attrs["pairs"] == 3   # the most similar of three pairs
    apart = top_confusions(_result(), signatures=np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1]]))
    assert apart["signature cosine"].tolist() == [0.0, 0.0] and apart["similarity rank"].tolist() == [2, 2]


def test_the_figure_has_one_panel_per_run_with_rows_normalised():
    fig = confusion_matrices({"a": _result(), "b": _result()})
    panels = [ax for ax in fig.axes if ax.get_title() in ("a", "b")]
    assert len(panels) == 2
    shown = panels[0].images[0].get_array()
    assert np.allclose(np.asarray(shown).sum(1), 1.0)


def test_a_grid_says_where_it_came_from_and_what_it_cost():
    from prolab.reports.tables import grid_provenance

    line = grid_provenance("results/budget_grid")
    assert line.startswith("read from results/budget_grid (made by `prolab grid --config configs/grid_budget.yaml`")
    assert "hours of training" in line and "runs" in line


def test_the_lr_init_views_count_signs_per_start_and_say_how_the_start_moves_each_head():
    import pandas as pd

    from prolab.reports.protocols import init_effect, lr_init_verdict, plot_lr_init

    rows = []
    for seed in (0, 1, 2):
        for lr in (0.001, 0.01):
            rows += [{"seed": seed, "lr": lr, "head_init": "pytorch", "mode": "property", "mIoU": 30.0 + seed},
                     {"seed": seed, "lr": lr, "head_init": "pytorch", "mode": "category", "mIoU": 40.0 + seed},
                     {"seed": seed, "lr": lr, "head_init": "release", "mode": "property", "mIoU": 45.0 + seed},
                     {"seed": seed, "lr": lr, "head_init": "release", "mode": "category", "mIoU": 35.0 + seed * lr}]
    runs = pd.DataFrame(rows)
    verdict = lr_init_verdict(runs)
    assert "with the pytorch initialisation property is ahead at 0 of 2 learning rates, behind at 2" in verdict
    assert "with the release initialisation property is ahead at 2 of 2" in verdict
    effect = init_effect(runs)
    assert "property +15.00 at lr 0.001, +15.00 at lr 0.01" in effect and "category -6.00 at lr 0.001" in effect
    fig = plot_lr_init(runs)
    assert [ax.get_title() for ax in fig.axes] == ["pytorch initialisation", "release initialisation"]


def test_the_largest_confusion_is_told_with_its_place_in_the_space():
    from prolab.reports.figures import confusion_link

    table = top_confusions(_result(), signatures=np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1]]))
    assert confusion_link("r", table) == ("r: the largest confusion, sidewalk -> road (40.0% of its pixels), is "
                                          "between signatures with cosine 0.82, the pair ranked 1 of 3 by "
                                          "similarity in notebook 04's space.")
    assert confusion_link("r", top_confusions(_result())) is None            # no signatures given
