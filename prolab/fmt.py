"""How the kit writes a measured value in a table: the mean ± sample std over seeds (one value as is, none as
a dash), two decimals. A leaf, so analysis, reports and pipeline tables all write numbers the same way."""
from __future__ import annotations

import pandas as pd


def mean_std(values: pd.Series) -> str:
    v = values.dropna()
    if len(v) == 0:
        return "—"
    if len(v) == 1:
        return f"{v.iloc[0]:.2f}"
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}"
