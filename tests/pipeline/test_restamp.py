"""``prolab verify --restamp``: the committed rows get the current code hash only when the re-run cells are
identical. The re-run itself is replaced by a copy of the committed rows (or a perturbed copy), so the logic is
tested in seconds; the real re-run is what `prolab verify` does and is exercised there."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from prolab.identity import GRID_CODE, code_hash
from prolab.pipeline import restamp as rs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def grid(tmp_path, monkeypatch):
    """A copy of the committed unseen grid whose rows carry an older code hash."""
    folder = tmp_path / "unseen_grid"
    shutil.copytree(REPO / "results" / "unseen_grid", folder)
    runs = pd.read_csv(folder / "runs.csv")
    runs["code"] = "0123456789abcdef"
    runs.to_csv(folder / "runs.csv", index=False)
    (folder / "restamps.json").unlink(missing_ok=True)
    return folder


def _fake_rerun(monkeypatch, committed: Path, change: float = 0.0):
    """Stand in for `prolab grid` in the scratch checkout: write the committed rows of the requested cell."""
    import yaml

    from prolab.pipeline import verify

    def execute(cmd, cwd, env):
        if "grid" not in cmd:
            return 0
        spec = yaml.safe_load(Path(cmd[cmd.index("--config") + 1]).read_text())
        from prolab.pipeline.grid import load_grid

        cell = load_grid(Path(cmd[cmd.index("--config") + 1])).cells()[0]["cell"]
        out = Path(cwd) / "results" / spec["name"]
        out.mkdir(parents=True, exist_ok=True)
        for name in ("runs", "curves"):
            df = pd.read_csv(committed / f"{name}.csv")
            df = df[df["cell"] == cell]
            if name == "runs":
                df = df.assign(mIoU=df["mIoU"] + change, code=code_hash(*GRID_CODE))
            df.to_csv(out / f"{name}.csv", index=False)   # as prolab grid: other cells' rows set aside
        return 0

    monkeypatch.setattr(verify, "execute", execute)
    monkeypatch.setattr(verify, "scratch_checkout", lambda dest, leave_out: dest)


def test_identical_cells_restamp_every_row_and_record_the_proof(grid, monkeypatch):
    _fake_rerun(monkeypatch, grid)
    assert rs.restamp(grid, n_cells=2, say=lambda s: None) == 0
    runs = pd.read_csv(grid / "runs.csv")
    assert set(runs["code"]) == {code_hash(*GRID_CODE)}
    proof = __import__("json").loads((grid / "restamps.json").read_text())[-1]
    assert proof["from"] == "0123456789abcdef" and proof["to"] == code_hash(*GRID_CODE)
    assert len(proof["cells"]) == 2 and proof["values_compared"] > 2 * 100   # metrics and every curve point
    assert rs.restamp(grid, say=lambda s: None) == 0                         # nothing left to do


def test_a_single_differing_value_restamps_nothing(grid, monkeypatch):
    before = (grid / "runs.csv").read_bytes()
    _fake_rerun(monkeypatch, grid, change=1e-9)
    assert rs.restamp(grid, say=lambda s: None) == 1
    assert (grid / "runs.csv").read_bytes() == before and not (grid / "restamps.json").exists()


def test_rows_of_several_codes_or_other_cells_are_refused(grid, monkeypatch):
    runs = pd.read_csv(grid / "runs.csv")
    runs.loc[0, "code"] = "fedcba9876543210"
    runs.to_csv(grid / "runs.csv", index=False)
    with pytest.raises(ValueError, match="several|code hashes"):
        rs.restamp(grid, say=lambda s: None)
    runs["code"] = "0123456789abcdef"
    runs.loc[0, "cell"] = "not-a-cell-of-it"
    runs.to_csv(grid / "runs.csv", index=False)
    _fake_rerun(monkeypatch, grid)
    with pytest.raises(ValueError, match="not the cells its grid.json makes now"):
        rs.restamp(grid, say=lambda s: None)


def test_sample_cells_spread_over_the_grid():
    cells = [{"cell": str(i)} for i in range(10)]
    assert [c["cell"] for c in rs.sample_cells(cells, 1)] == ["0"]
    assert [c["cell"] for c in rs.sample_cells(cells, 3)] == ["0", "4", "9"] or \
        [c["cell"] for c in rs.sample_cells(cells, 3)] == ["0", "5", "9"]
    with pytest.raises(ValueError):
        rs.sample_cells(cells, 0)


def test_a_grid_scored_on_several_splits_is_re_run_on_them():
    """Found in review: the one-cell grid and the grid rebuilt from grid.json fell back to val only, so a grid
    scored on val and test could never be re-stamped or verified (its test columns "missing in the re-run")."""
    from prolab.pipeline.grid import GridConfig
    from prolab.pipeline.restamp import cell_grid
    from prolab.pipeline.verify import grid_config

    cfg = GridConfig("g", "synthetic_outdoor", {"mode": "property", "seed": 0}, {}, [0], splits=["val", "test"])
    assert cell_grid(cfg, {"mode": "property", "seed": 0})["splits"] == ["val", "test"]
    assert "splits" not in cell_grid(GridConfig("g", "synthetic_outdoor", {}, {}, [0]), {"seed": 0})
    recorded = {"name": "g", "dataset": "synthetic_outdoor", "base": {}, "vary": {}, "seeds": [0],
                "splits": ["val", "test"]}
    assert grid_config(recorded)["splits"] == ["val", "test"]
