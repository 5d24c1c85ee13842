"""Notebook 14's figures and tables over PGSeg's stage (``prolab.wovss``): group maps beside the image and its
labels, the training losses, the matching matrix with its rejected pairs, the kept share against phi; the
oracle-named scores beside the trivial groupings, and PGSeg beside the kit's unseen-class grid."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def group_map_figure(images, labels, maps: dict[str, np.ndarray], palette, class_names: list[str]):
    """Rows = images; columns = image, labels, then one panel per grouping (each group its own colour, tab20;
    group colours mean nothing across panels)."""
    from .figures import display_image

    pal = np.zeros((256, 3), np.uint8)
    pal[: len(palette)] = np.asarray(palette, np.uint8)
    cols = 2 + len(maps)
    fig, axes = plt.subplots(len(images), cols, figsize=(2.1 * cols, 2.1 * len(images)), squeeze=False)
    groups = plt.get_cmap("tab20")
    for r, (img, lab) in enumerate(zip(images, labels)):
        panels = [("image", display_image(img)), ("labels", pal[lab])]
        panels += [(name, groups(m[r] % 20)) for name, m in maps.items()]
        for c, (name, arr) in enumerate(panels):
            axes[r, c].imshow(arr, interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(name, fontsize=9)
    fig.tight_layout()
    return fig


def loss_figure(logs: dict[str, list[dict]], smooth: int = 10):
    """Each loss term against iteration, one panel per term, one line per run (moving average)."""
    terms = [t for t in ("contrastive", "pg_stage1", "pg_stage2", "guidance_stage1", "guidance_stage2")
             if any(t in rows[0] for rows in logs.values())]
    fig, axes = plt.subplots(1, len(terms), figsize=(3.3 * len(terms), 3.0), squeeze=False)
    for ax, term in zip(axes[0], terms):
        for name, rows in logs.items():
            if term not in rows[0]:
                continue
            y = np.array([r[term] for r in rows])
            x = np.arange(1, len(y) + 1)
            if len(y) >= smooth > 1:
                y, x = np.convolve(y, np.ones(smooth) / smooth, mode="valid"), x[smooth - 1:]
            ax.plot(x, y, label=name)
        ax.set_title(term.replace("_", " "), fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylim(bottom=0)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def matching_figure(m: dict, phi: float):
    """The group x prototype cosine matrix; the paper's match (o) and the released code's (x); a pair the
    rule rejects (its cosine under phi; the released code reads column 0) is drawn in red."""
    sim = m["similarity"]
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    im = ax.imshow(sim, cmap="viridis", vmin=-1, vmax=1)
    for rule, marker in (("paper", "o"), ("released_code", "x")):
        match, kept = m[rule]["match"], m[rule]["kept"]
        for g, (p, k) in enumerate(zip(match, kept)):
            colour, label = ("white", "kept") if k else ("red", "rejected")
            style = {"facecolors": "none", "edgecolors": colour} if marker == "o" else {"c": colour}
            ax.scatter(p, g, marker=marker, s=70, linewidths=1.5, label=f"{rule} ({label})", **style)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2,
              facecolor="0.55", framealpha=1.0)             # a grey box: the white (kept) markers stay visible
    ax.set_xlabel("EM prototype")
    ax.set_ylabel("group")
    ax.set_title(f"cosine of group centres and prototypes (phi = {phi})", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def kept_share_figure(table: pd.DataFrame, phi: float):
    fig, ax = plt.subplots(figsize=(4.6, 3.0))
    for rule, r in table.groupby("rule"):
        ax.plot(r["phi"], r["kept share"], marker="o", label=rule)
    ax.axvline(phi, color="0.5", linestyle="--", linewidth=1)
    ax.set_xlabel("phi (rejection threshold)")
    ax.set_ylabel("share of matched pairs kept")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def grid_bars(result: dict) -> tuple[dict[int, float], int, int]:
    """An ``evaluate_wovss`` result's trivial grids (cells -> oracle-named mIoU; JSON turns the keys into
    strings) and the cell counts that match its final stage and its stage 1."""
    grid = {int(k): v for k, v in result["trivial grid"].items()}
    counts = sorted(k for k in grid if k > 1)
    return grid, counts[0], counts[-1]


def naming_summary(results: dict[str, dict]) -> dict[str, dict]:
    """Per result: the named (zero-shot) mIoU, each unseen class's IoU and the unseen split's harmonic mean."""
    return {label: {"named mIoU": r["named"]["mIoU"], **{f"{u} IoU": v for u, v in r["named"]["unseen IoU"].items()},
                    "unseen-split HM": r["unseen protocol"]["HM"]} for label, r in results.items()}


def grouping_table(results: dict[str, dict]) -> pd.DataFrame:
    """Oracle-named mIoU of each run's groups beside the trivial groupings with as many groups (the bar a
    grouping has to clear), and the named (zero-shot) mIoU. ``results``: run label -> ``evaluate_wovss`` result."""
    rows = []
    for label, r in results.items():
        grid, g2, g1 = grid_bars(r)
        rows.append({"run": label, "final groups (oracle)": r["oracle final"]["mIoU"], f"{g2}-cell grid": grid.get(g2),
                     "stage-1 groups (oracle)": r["oracle stage 1"]["mIoU"], f"{g1}-cell grid": grid.get(g1),
                     "one group per image": grid.get(1), "largest final group (share)": r["final groups"]["largest share"],
                     "named (zero-shot)": r["named"]["mIoU"]})
    return pd.DataFrame(rows).set_index("run")


def unseen_split_table(unseen_runs: pd.DataFrame, wovss: dict[str, dict]) -> pd.DataFrame:
    """One table on the kit's unseen-class split (bus, boat; the unseen protocol's test images): the kit's grid
    (property = ProLab, category, class-name embedding; mean +- std over seeds, uncalibrated, then calibrated)
    and each wovss run (PGSeg at the CPU scale: its zero-shot named prediction; no calibration)."""
    from .protocols import unseen_table

    grid = unseen_table(unseen_runs)
    rows = [{"method": r["supervision"], "seen mIoU": r["seen mIoU"], "unseen mIoU": r["unseen mIoU"], "HM": r["HM"],
             "unseen mIoU (cal.)": r["unseen mIoU (cal.)"], "HM (cal.)": r["HM (cal.)"], "runs": r["runs"]}
            for _, r in grid.iterrows()]
    for label, r in wovss.items():
        p = r["unseen protocol"]
        rows.append({"method": f"PGSeg, CPU scale ({label})", "seen mIoU": f"{p['seen mIoU']:.2f}",
                     "unseen mIoU": f"{p['unseen mIoU']:.2f}", "HM": f"{p['HM']:.2f}", "unseen mIoU (cal.)": "",
                     "HM (cal.)": "", "runs": 1})
    return pd.DataFrame(rows).set_index("method")


def grouping_verdict(results: dict[str, dict], run: str) -> str:
    """Does ``run``'s grouping clear the trivial grid with as many groups, at both stages?"""
    r = results[run]
    grid, g2, g1 = grid_bars(r)
    parts = []
    for key, n in (("oracle final", g2), ("oracle stage 1", g1)):
        ours, bar = r[key]["mIoU"], grid[n]
        parts.append(f"{key.replace('oracle ', '')} groups {ours:.2f} vs the {n}-cell grid {bar:.2f} "
                     f"({'above' if ours > bar else 'not above'})")
    return f"{run}: oracle-named mIoU, " + "; ".join(parts) + f"; one group per image {grid.get(1)}"


def setting_label(config: dict) -> str:
    """A run's setting in words, from its resolved configuration: the L_PG rule, the kit's guidance, and every
    other field that differs from ``WovssConfig``'s default (the seed aside)."""
    from dataclasses import asdict

    from ..wovss.train import WovssConfig

    rule = "released_code" if config.get("released_code") else "paper"
    g = config.get("guidance", 0)
    words = [rule, f"guidance {g:g}" if g else "PGSeg's losses only"]
    default = asdict(WovssConfig())
    words += [f"{k} {v}" for k, v in config.items()
              if k not in ("seed", "released_code", "guidance") and k in default and default[k] != v]
    return ", ".join(words)


def load_wovss_runs(folder) -> pd.DataFrame:
    """One row per ``prolab wovss evaluate`` result in ``folder`` (results/wovss; relative to the repository
    root unless absolute): setting (``setting_label``), seed, the oracle-named, named and unseen-protocol scores,
    the trivial grids and how many final groups hold pixels. Results of a partial evaluation (``--limit``) and
    of naming by descriptions are left out; two results of one setting and seed are refused (they would be paired twice)."""
    import json

    from .. import paths

    rows = []
    for f in sorted(paths.resolve(folder).glob("*.json")):
        r = json.loads(f.read_text(encoding="utf-8"))
        if "oracle final" not in r or r.get("limit") is not None or r.get("naming", "class names") != "class names":
            continue
        grid, g2, g1 = grid_bars(r)
        rows.append({"file": f.name, "setting": setting_label(r["config"]), "seed": r["config"]["seed"],
                     "final (oracle)": r["oracle final"]["mIoU"], "final grid": grid[g2],
                     "stage 1 (oracle)": r["oracle stage 1"]["mIoU"], "stage 1 grid": grid[g1],
                     "largest final group": r["final groups"]["largest share"], "named": r["named"]["mIoU"],
                     "unseen mIoU": r["unseen protocol"]["unseen mIoU"], "HM": r["unseen protocol"]["HM"]})
    if not rows:
        raise FileNotFoundError(f"{folder}: no wovss results (write them with `prolab wovss evaluate`)")
    runs = pd.DataFrame(rows)
    twice = runs[runs.duplicated(["setting", "seed"], keep=False)]
    if len(twice):
        raise ValueError(f"{folder}: one setting and seed in several files ({', '.join(twice['file'])}): "
                         "keep one of each")
    return runs


def seed_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per setting: each score as mean ± std over its seeds, the grids beside them."""
    from ..fmt import mean_std

    cols = ["final (oracle)", "final grid", "stage 1 (oracle)", "stage 1 grid", "largest final group", "named",
            "unseen mIoU", "HM"]
    out = runs.groupby("setting").agg({c: mean_std for c in cols})
    out["seeds"] = runs.groupby("setting")["seed"].apply(lambda s: ", ".join(map(str, sorted(s))))
    return out


def seed_verdicts(runs: pd.DataFrame) -> list[str]:
    """Each setting's groups against the grid with as many groups, seed by seed (``pairing.Paired``)."""
    from ..pairing import Paired

    lines = []
    for setting, r in runs.groupby("setting"):
        for ours, bar in (("final (oracle)", "final grid"), ("stage 1 (oracle)", "stage 1 grid")):
            d = Paired(f"{setting}: {ours}", bar, {int(s): float(a - b) for s, a, b in zip(r["seed"], r[ours], r[bar])},
                       float(r[ours].mean()), float(r[bar].mean()))
            lines.append(d.text())
    return lines


__all__ = ["grid_bars", "naming_summary", "setting_label", "load_wovss_runs", "seed_table", "seed_verdicts", "group_map_figure", "loss_figure", "matching_figure", "kept_share_figure", "grouping_table",
           "unseen_split_table", "grouping_verdict"]
