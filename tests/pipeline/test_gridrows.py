"""Rows of cells a grid no longer makes are moved aside, never mixed with the current ones, never deleted."""
import pandas as pd

from prolab.pipeline.gridrows import set_aside_stale_rows


def test_stale_rows_move_aside_and_accumulate(tmp_path):
    pd.DataFrame({"cell": ["a", "b", "c"], "mIoU": [1.0, 2.0, 3.0]}).to_csv(tmp_path / "runs.csv", index=False)
    pd.DataFrame({"cell": ["a", "b", "b"], "loss": [0.1, 0.2, 0.3]}).to_csv(tmp_path / "curves.csv", index=False)
    assert set_aside_stale_rows(tmp_path, {"a", "c"}) == 1
    assert pd.read_csv(tmp_path / "runs.csv")["cell"].tolist() == ["a", "c"]
    assert pd.read_csv(tmp_path / "curves.csv")["cell"].tolist() == ["a"]
    assert pd.read_csv(tmp_path / "runs.stale.csv")["mIoU"].tolist() == [2.0]
    assert pd.read_csv(tmp_path / "curves.stale.csv")["loss"].tolist() == [0.2, 0.3]
    assert set_aside_stale_rows(tmp_path, {"c"}) == 1                  # a second move appends, keeps the first
    assert pd.read_csv(tmp_path / "runs.stale.csv")["cell"].tolist() == ["b", "a"]
    assert set_aside_stale_rows(tmp_path, {"c"}) == 0 and set_aside_stale_rows(tmp_path / "nothing", {"c"}) == 0
