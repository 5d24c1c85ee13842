"""The course's markdown states no measured figure (prolab.reports.prose): every number a student reads in prose
is a constant of the method or of the paper; measurements are printed by computed cells."""
from pathlib import Path

import pytest

from prolab.reports.prose import CONSTANTS, figures, notebook_figures

REPO = Path(__file__).resolve().parents[2]
COURSE = sorted((REPO / "notebooks").glob("*.ipynb")) + sorted((REPO / "results/demo/notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", COURSE, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_no_measured_figure_in_the_markdown(notebook):
    assert notebook_figures(notebook) == []


def test_the_check_finds_a_measurement_and_lets_constants_code_and_math_pass():
    found = figures("about 144 descriptions, 4.5 per property; the cosine is 0.93 for building")
    assert [f.split()[0] for f in found] == ["144", "4.5", "0.93"]
    # the paper's K and T, the ignore label, small counts, notebook numbers, a year, code and mathematics
    assert figures("K = 256 and T = 0.04 (notebook 05, Chao et al., 2016), 3 seeds, label 255") == []
    assert figures("# 11 · Training length. Notebooks 08 to 13 ask; notebook 12 drops") == []
    assert [f.split()[0] for f in figures("11 runs of notebook 12")] == ["11"]
    assert figures("set `iters=250` and read $p(1-p) < 0.018$ and $$x = 0.123$$") == []
    assert all(isinstance(v, str) and v for v in CONSTANTS.values())   # every allowed constant says why
