"""Where a class's pixels went: a run's confusion matrix as a row-normalised heatmap, and its largest confusions
as a table (notebook 06)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def row_shares(confusion) -> np.ndarray:
    """Each row of a confusion matrix divided by the class's pixels (a class without pixels stays 0)."""
    cm = np.asarray(confusion, dtype=np.float64)
    return cm / np.clip(cm.sum(1, keepdims=True), 1, None)


def confusion_matrices(results: dict, normalize: bool = True):
    """One heatmap per run of its confusion matrix (rows: ground truth, columns: prediction), each row divided by
    the class's pixels (``normalize``): the diagonal is the class's accuracy, the rest of its row where its pixels
    went. ``results``: {run name: EvalResult}."""
    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(5.6 * len(names), 5.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        r = results[name]
        cm = row_shares(r.confusion) if normalize else np.asarray(r.confusion, dtype=np.float64)
        im = ax.imshow(cm, vmin=0, vmax=1 if normalize else None, cmap="Blues")
        ticks = np.arange(len(r.class_names))
        ax.set_xticks(ticks, r.class_names, rotation=90, fontsize=7)
        ax.set_yticks(ticks, r.class_names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("ground truth")
        ax.set_title(name, fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the class's pixels" if normalize else "pixels")
    fig.tight_layout()
    return fig


def top_confusions(result, top: int = 5, signatures=None):
    """The largest off-diagonal entries of a run's confusion matrix as a table: which class's pixels went to
    which other class, as a share of the first class's pixels. With the property space's ``signatures``
    (C x K), two more columns link each confusion to the space (notebook 04): the cosine of the two classes'
    signatures and its rank among all pairs of classes (1: the most similar pair)."""
    import pandas as pd

    share = row_shares(result.confusion)
    np.fill_diagonal(share, 0)
    order = np.argsort(share, axis=None)[::-1][:top]
    pairs = [(i, j) for i, j in zip(*np.unravel_index(order, share.shape)) if share[i, j] > 0]
    table = pd.DataFrame([(result.class_names[i], result.class_names[j], round(100 * share[i, j], 1))
                          for i, j in pairs], columns=["ground truth", "predicted as", "% of its pixels"])
    if signatures is not None:
        from ..properties.analysis import class_similarity

        sim = class_similarity(np.asarray(signatures))
        upper = np.sort(sim[np.triu_indices_from(sim, k=1)])[::-1]       # every unordered pair once
        table["signature cosine"] = [round(float(sim[i, j]), 2) for i, j in pairs]
        table["similarity rank"] = [int(np.searchsorted(-upper, -sim[i, j], side="left")) + 1 for i, j in pairs]
        table.attrs["pairs"] = len(upper)
    return table


def confusion_link(run_name: str, table) -> str | None:
    """One sentence on a run's largest confusion and where its pair sits in the property space (a table of
    ``top_confusions`` with ``signatures``); None when the table has no confusion or no similarity columns."""
    if not len(table) or "similarity rank" not in table:
        return None
    top = table.iloc[0]
    return (f"{run_name}: the largest confusion, {top['ground truth']} -> {top['predicted as']} "
            f"({top['% of its pixels']}% of its pixels), is between signatures with cosine {top['signature cosine']}, "
            f"the pair ranked {top['similarity rank']} of {table.attrs['pairs']} by similarity in notebook 04's space.")
