"""Two settings compared seed by seed: the per-seed difference d_s = a_s - b_s, its mean and standard error
sd(d) / sqrt(n), and the kit's verdict rule (ahead or behind beyond two standard errors, else level). One home
for the rule: the claims, the protocols, the per-class gap and the label-set verdict all use it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

METRIC = "mIoU"


@dataclass
class Paired:
    """a - b over the seeds both have: mean, standard error, the seeds, and each side's mean."""
    a: str
    b: str
    diffs: dict[int, float]
    a_mean: float
    b_mean: float

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.diffs.values()))) if self.diffs else float("nan")

    @property
    def se(self) -> float:
        v = list(self.diffs.values())
        return float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")

    @property
    def sign(self) -> int:
        """+1 (a ahead by more than two standard errors), -1 (behind), 0 (level, or fewer than two seeds)."""
        if self.n < 2 or not np.isfinite(self.se) or abs(self.mean) <= 2 * self.se:
            return 0
        return 1 if self.mean > 0 else -1

    def text(self, metric: str = METRIC) -> str:
        word = {1: "ahead", -1: "behind", 0: "level"}[self.sign]
        se = f" ± {self.se:.2f}" if np.isfinite(self.se) else ""
        return (f"{self.a} - {self.b}: {self.mean:+.2f}{se} {metric} (paired over {self.n} seeds: "
                f"{self.a_mean:.2f} vs {self.b_mean:.2f}; {word})")


def paired(runs: pd.DataFrame, a: pd.Series, b: pd.Series, a_name: str, b_name: str,
           metric: str = METRIC) -> Paired:
    """Pair the rows selected by masks ``a`` and ``b`` by seed (one row per seed on each side)."""
    sa = runs[a].groupby("seed")[metric].mean()
    sb = runs[b].groupby("seed")[metric].mean()
    seeds = sorted(set(sa.index) & set(sb.index))
    return Paired(a_name, b_name, {int(s): float(sa[s] - sb[s]) for s in seeds},
                  float(sa[seeds].mean()) if seeds else float("nan"),
                  float(sb[seeds].mean()) if seeds else float("nan"))


