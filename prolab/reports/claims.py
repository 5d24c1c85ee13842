"""The paper's claims, each checked against the committed grids: a verdict computed from the CSVs.

Every comparison is paired by seed: two settings trained with the same seed share the data order, the
augmentation and the initialisation, so the per-seed difference d_s = a_s - b_s removes what the seed alone
does. A claim's evidence is the mean of d_s with its standard error sd(d) / sqrt(n); a difference within two
standard errors of zero is "level" (not resolved at this number of seeds).

    python -m prolab.reports.claims            # the verdicts, as the READMEs and notebooks 05, 07, 08 show them

Claims (paper, arXiv 2312.13764): property supervision >= category supervision; longer training keeps helping
properties while category supervision saturates; K near descriptions / 6 is best; cosine-with-sigmoid > BCE >
cosine; structured > naive prompt; unseen classes are segmented from their descriptions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import paths
from ..pairing import Paired, paired  # noqa: F401 - re-exported: reports import them from here

METRIC = "mIoU"


@dataclass
class Claim:
    name: str
    paper: str
    verdict: str = "no evidence: the grid is not in results/"
    evidence: list[str] = field(default_factory=list)


def _runs(grid: str | pd.DataFrame) -> pd.DataFrame | None:
    """A committed grid's rows by its name (``results/<grid>/runs.csv``; None when absent), or rows given."""
    if isinstance(grid, pd.DataFrame):
        return grid
    f = paths.results_dir(grid) / "runs.csv"
    return pd.read_csv(f) if f.is_file() else None


def _is(runs: pd.DataFrame, **values) -> pd.Series:
    mask = pd.Series(True, index=runs.index)
    for k, v in values.items():
        col = runs[k]
        mask &= (col.astype(str) == str(v)) if isinstance(v, str) else np.isclose(col.astype(float), float(v))
    return mask


def _tally(pairs: list[Paired], holds_if: int = 1) -> str:
    ahead = sum(p.sign == holds_if for p in pairs)
    against = sum(p.sign == -holds_if for p in pairs)
    level = len(pairs) - ahead - against
    return f"{ahead} for, {against} against, {level} level (of {len(pairs)} paired comparisons)"


def _overall(pairs: list[Paired]) -> str:
    """One word for several paired comparisons that each should come out ahead."""
    ahead, behind = any(p.sign > 0 for p in pairs), any(p.sign < 0 for p in pairs)
    if ahead and not behind:
        return "holds" if all(p.sign > 0 for p in pairs) else "holds where resolved"
    return "mixed" if ahead else "does not hold" if behind else "not resolved"


def property_vs_category() -> Claim:
    c = Claim("property >= category", "property-level supervision beats category-level on five benchmarks "
                                      "(e.g. ADE20K 49.0 vs 48.4)")
    pairs = []
    seen: dict[tuple, str] = {}

    def add(where: str, p: Paired) -> None:
        # grids share cells (the demo setting at 100 iterations is in four of them): identical runs give
        # identical numbers, and count once
        key = (round(p.a_mean, 6), round(p.b_mean, 6), tuple(sorted((k, round(v, 6)) for k, v in p.diffs.items())))
        if key in seen:
            c.evidence.append(f"{where}: the same runs as {seen[key]} (identical numbers; counted once)")
            return
        seen[key] = where
        pairs.append(p)
        c.evidence.append(f"{where}: {p.text()}")

    for grid in ("demo_grid", "settings_grid", "custom_grid_street", "budget_grid", "lr_init_grid"):
        runs = _runs(grid)
        if runs is None:
            continue
        prop = _is(runs, axis="base", mode="property")
        cat = _is(runs, mode="category")
        if grid == "budget_grid":
            for it in sorted(runs["iters"].dropna().unique()):
                add(f"{grid}, {int(it)} iterations",
                    paired(runs, prop & _is(runs, iters=it), cat & _is(runs, iters=it), "property", "category"))
        elif grid == "lr_init_grid":
            for (lr, init), _ in runs.groupby(["lr", "head_init"], sort=False):
                sel = _is(runs, lr=lr, head_init=init)
                add(f"{grid}, lr {lr:g}, {init} init",
                    paired(runs, sel & _is(runs, mode="property"), sel & cat, "property", "category"))
        else:
            add(f"{grid} (base setting)", paired(runs, prop, cat, "property", "category"))
    if pairs:
        c.verdict = f"{_overall(pairs)} at CPU scale: {_tally(pairs)}"
    return c


def gap_with_length() -> Claim:
    c = Claim("longer training helps properties more", "longer training keeps helping ProLab while "
                                                        "category-level supervision saturates")
    runs = _runs("budget_grid")
    if runs is None:
        return c
    lengths = sorted(runs["iters"].dropna().unique())
    if len(lengths) < 2:
        c.verdict = "not resolved: the budget grid holds one length"
        return c
    short, long = lengths[0], lengths[-1]
    gains = {}
    for mode in ("property", "category"):
        m = _is(runs, mode=mode) & _is(runs, axis="base" if mode == "property" else "mode")
        gains[mode] = paired(runs, m & _is(runs, iters=long), m & _is(runs, iters=short),
                             f"{mode} at {int(long)}", f"{mode} at {int(short)}")
        c.evidence.append(gains[mode].text())
    # the gap's change, per seed: (P - C) at the longest length minus (P - C) at the shortest
    gap = {}
    for it in (short, long):
        gap[it] = paired(runs, _is(runs, axis="base", mode="property") & _is(runs, iters=it),
                         _is(runs, mode="category") & _is(runs, iters=it), "property", "category")
    seeds = sorted(set(gap[short].diffs) & set(gap[long].diffs))
    change = Paired(f"gap at {int(long)}", f"gap at {int(short)}",
                    {s: gap[long].diffs[s] - gap[short].diffs[s] for s in seeds}, gap[long].mean, gap[short].mean)
    c.evidence.append(change.text())
    saturates = gains["category"].sign <= 0
    helps = gains["property"].sign > 0
    if change.sign > 0:
        c.verdict = "holds: the property - category gap grows in properties' favour with length"
    elif change.sign < 0:
        c.verdict = "does not hold: the gap moves in category supervision's favour with length"
    else:
        c.verdict = "not resolved: the gap's change with length is within two standard errors"
    c.verdict += (f"; property {'keeps improving' if helps else 'does not improve significantly'}, category "
                  f"{'saturates' if saturates else 'keeps improving'} ({int(short)} -> {int(long)} iterations)")
    return c


def best_k() -> Claim:
    c = Claim("K near descriptions/6 is best", "K = 256 for ADE20K's 1478 descriptions (about n/6) beats 64, 128 "
                                               "and 512")
    runs = _runs("demo_grid")
    if runs is None:
        return c
    from ..files import read_json

    meta = read_json(paths.results_dir("demo_grid") / "grid.json")
    n = meta.get("n_descriptions")
    ks = runs[_is(runs, mode="property") & runs["axis"].isin(["base", "n_properties"])]
    base_k = meta["base"].get("n_properties")
    k_of = ks["n_properties"].fillna(base_k).astype(float)
    means = ks.groupby(k_of)[METRIC].mean().sort_index()
    best = float(means.idxmax())
    for k in means.index:
        if k != best:
            sel = lambda kk: pd.Series(runs.index.isin(ks.index[k_of == kk]), index=runs.index)  # noqa: E731
            p = paired(runs, sel(best), sel(k), f"K={best:g}", f"K={k:g}")
            c.evidence.append(p.text())
    if n:
        target = n / 6
        nearest = float(min(means.index, key=lambda k: abs(k - target)))
        c.evidence.insert(0, f"{n} descriptions: n/6 = {target:.0f}; tested K {', '.join(f'{k:g}' for k in means.index)}"
                             f" (means {', '.join(f'{v:.2f}' for v in means)})")
        level = [e.split(":")[0] for e in c.evidence[1:] if e.endswith("level)")]
        head = f"best K = {best:g}; the tested K nearest n/6 is {nearest:g}: "
        if best == nearest and not level:
            c.verdict = head + "holds (ahead of every other K by more than two standard errors)"
        elif best == nearest:
            c.verdict = head + f"not contradicted, not resolved (level with {', '.join(level)})"
        elif any(e.startswith(f"K={best:g} - K={nearest:g}") and e.endswith("level)") for e in c.evidence):
            c.verdict = head + f"not resolved (K={nearest:g} is level with the best)"
        else:
            c.verdict = head + "does not hold (the best K is ahead of it by more than two standard errors)"
    return c


def _axis_claim(name: str, paper: str, axis: str, order: list, labels: dict) -> Claim:
    c = Claim(name, paper)
    runs = _runs("demo_grid")
    if runs is None:
        return c
    meta_base = runs[runs["axis"] == "base"].iloc[0]
    masks = {}
    for v in order:
        masks[v] = _is(runs, axis="base") if str(meta_base[axis]) == str(v) else _is(runs, axis=axis) & (
            runs[axis].astype(str) == str(v))
    pairs = []
    for a, b in zip(order, order[1:]):
        p = paired(runs, masks[a], masks[b], labels[a], labels[b])
        pairs.append(p)
        c.evidence.append(p.text())
    c.verdict = f"{_overall(pairs)}: {_tally(pairs)}"
    return c


def loss_order() -> Claim:
    return _axis_claim("cos-sigmoid > BCE > cos", "cosine with sigmoid 47.7 > BCE 47.4 > cosine without sigmoid "
                       "47.3", "loss", ["cos_sigmoid", "bce", "cos"],
                       {"cos_sigmoid": "cos-sigmoid", "bce": "BCE", "cos": "cos"})


def prompt_order() -> Claim:
    return _axis_claim("structured > naive prompt", "structured prompt ahead of the naive one by about 0.2",
                       "prompt", ["structured", "naive"], {"structured": "structured", "naive": "naive"})


def unseen_classes() -> Claim:
    c = Claim("unseen classes from their descriptions", "categories absent from training are segmented by "
                                                        "describing them and matching their signatures")
    runs = _runs("unseen_grid")
    if runs is None or "cal_HM" not in runs:
        return c
    prop = _is(runs, mode="property")
    pairs = []
    for other in ("category", "name_embedding"):
        for col in ("cal_unseen_mIoU", "cal_HM"):
            p = paired(runs, prop, _is(runs, mode=other), "property", other, metric=col)
            pairs.append(p)
            c.evidence.append(p.text(metric=col))
    unseen = runs.loc[prop, "cal_unseen_mIoU"]
    c.verdict = (f"property runs segment unseen classes at {unseen.mean():.2f} mIoU after calibration "
                 f"({'above' if unseen.mean() > 0 else 'at'} zero); against the baselines: {_tally(pairs)}")
    return c


def lr_init_table(grid: str | pd.DataFrame = "lr_init_grid") -> pd.DataFrame:
    """The learning rate x initialisation x mode grid: per (lr, init) each mode's mIoU (mean ± std over seeds),
    the paired property - category difference with its standard error, and the worse of the two modes' means
    (the criterion of the demo preset, ``fair_setting``, which the last column marks)."""
    from ..fmt import mean_std

    runs = _runs(grid)
    if runs is None:
        return pd.DataFrame()
    chosen = fair_setting(grid)
    rows = []
    for (lr, init), r in runs.groupby(["lr", "head_init"], sort=True):
        p = paired(r, r["mode"] == "property", r["mode"] == "category", "property", "category")
        rows.append({"lr": f"{lr:g}", "init": init, "property": mean_std(r.loc[r["mode"] == "property", METRIC]),
                     "category": mean_std(r.loc[r["mode"] == "category", METRIC]),
                     "property - category (paired)": f"{p.mean:+.2f} ± {p.se:.2f}",
                     "worse mode": round(float(r.groupby("mode")[METRIC].mean().min()), 2),
                     "demo preset": "yes" if (np.isclose(lr, chosen["lr"]) and init == chosen["head_init"]) else ""})
    return pd.DataFrame(rows)


def fair_setting(grid: str | pd.DataFrame = "lr_init_grid") -> dict:
    """The demo preset's rule: one (lr, init) for both modes, the one whose worse mode does best (maximin: the
    setting handicaps neither supervision more than it must); with each mode's own best setting beside it."""
    runs = _runs(grid)
    means = runs.groupby(["lr", "head_init", "mode"])[METRIC].mean().unstack("mode")
    worse = means.min(axis=1)
    lr, init = worse.idxmax()
    out = {"lr": float(lr), "head_init": init, "worse mode": round(float(worse.max()), 2)}
    for mode in means.columns:
        blr, binit = means[mode].idxmax()
        out[f"best for {mode}"] = {"lr": float(blr), "head_init": binit, METRIC: round(float(means[mode].max()), 2)}
    return out


def lr_init_summary(grid: str | pd.DataFrame = "lr_init_grid") -> str:
    """The chosen setting and each mode at its own best, in words."""
    f = fair_setting(grid)
    best = {m: f[f"best for {m}"] for m in ("property", "category")}
    return (f"Demo preset (maximin over the table: the best worse mode): lr {f['lr']:g}, {f['head_init']} init "
            f"(worse mode {f['worse mode']:.2f} {METRIC}). Each mode at its own best: property "
            f"{best['property'][METRIC]:.2f} (lr {best['property']['lr']:g}, {best['property']['head_init']} init), "
            f"category {best['category'][METRIC]:.2f} (lr {best['category']['lr']:g}, "
            f"{best['category']['head_init']} init): property - category "
            f"{best['property'][METRIC] - best['category'][METRIC]:+.2f} {METRIC} (difference of means, unpaired: "
            "different settings).")


CLAIMS = (property_vs_category, gap_with_length, best_k, loss_order, prompt_order, unseen_classes)


def verdicts() -> list[Claim]:
    return [f() for f in CLAIMS]


def table() -> pd.DataFrame:
    """One row per claim: the claim, what the paper reports, the verdict at CPU scale."""
    return pd.DataFrame([{"claim": c.name, "paper": c.paper, "verdict": c.verdict} for c in verdicts()])


def markdown() -> str:
    """The verdicts with their evidence, as the READMEs quote them (``summary`` figures block ``claims``)."""
    lines = []
    for c in verdicts():
        lines.append(f"- **{c.name}** (paper: {c.paper}): {c.verdict}.")
        lines += [f"  - {e}" for e in c.evidence]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from prolab.entry import entry_point

    raise SystemExit(entry_point(lambda: print(markdown()), "python -m prolab.reports.claims"))
