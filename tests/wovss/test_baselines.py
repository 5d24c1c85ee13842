"""Trivial groupings scored by oracle naming: the bar a grouping model's oracle-named mIoU must clear."""
import numpy as np
import pytest

from prolab.wovss.baselines import grid_groups, oracle_miou


def test_a_grid_has_square_patches_numbered_row_by_row():
    g = grid_groups(4, 6, 4)
    assert g.tolist() == [[0, 0, 0, 1, 1, 1]] * 2 + [[2, 2, 2, 3, 3, 3]] * 2
    assert (grid_groups(5, 5, 1) == 0).all()
    with pytest.raises(ValueError, match="n_groups = 3"):
        grid_groups(4, 4, 3)


class _Pairs:
    """Two 4 x 4 images: left half class 0, right half class 1; the second has an ignored column."""
    def __init__(self):
        a = np.array([[0, 0, 1, 1]] * 4)
        b = a.copy()
        b[:, 3] = 255
        self.labels = [a, b]

    def __len__(self):
        return 2

    def load(self, i):
        return np.zeros((4, 4, 3), np.uint8), self.labels[i]


def test_oracle_miou_is_perfect_when_groups_follow_the_classes_and_halved_with_one_group():
    ds = _Pairs()
    halves = oracle_miou(ds, lambda image, label: grid_groups(4, 4, 4), 2, ["a", "b"], progress=False)
    assert halves["mIoU"] == pytest.approx(100.0)
    one = oracle_miou(ds, lambda image, label: grid_groups(4, 4, 1), 2, ["a", "b"], progress=False)
    # image 1: 8 vs 8 pixels, ties go to class 0 (every pixel class 0); image 2: 8 of class 0 vs 4 of class 1
    assert one["per_class"].loc["a", "IoU"] == pytest.approx(100 * 16 / 28) and one["per_class"].loc["b", "IoU"] == 0
    with pytest.raises(ValueError, match="groups of shape"):
        oracle_miou(ds, lambda image, label: np.zeros((2, 2)), 2, ["a", "b"], progress=False)
