"""One property space across two label sets, measured: the embedded default (18 classes) and its coarse
variant (12 classes, other names; ``datasets.variants``) on the same images.

For each seed: a property model trained on the fine labels, read on the coarse labels through the coarse
classes' signatures of one joint space (no retraining); the same model's fine prediction mapped to coarse
classes by the known class map (what a person who knows the correspondence would do); and a model trained on
the coarse labels directly. Coarse mIoU is over the coarse classes seen in training (bus and boat are the
embedded default's unseen classes, never labelled in training images). ``python -m prolab.analysis.label_sets``
writes ``results/label_sets/{runs.csv,tables.md,space.json}``.
"""
from __future__ import annotations

import argparse

import pandas as pd

from .. import paths
from ..files import atomic_write_json, atomic_write_text, environment_info, utc_now
from ..progress import tqdm
from ..fmt import mean_std

FINE = "synthetic_outdoor"
UNSEEN = ("bus", "boat")


def run_label_sets(seeds=(0, 1, 2), iters: int = 100, out_dir=None, progress: bool = True) -> pd.DataFrame:
    from ..datasets import load_class_names
    from ..datasets.variants import fine_to_coarse, write_coarse_variant
    from ..describe import RetrievalDefaults, describe_dataset
    from ..properties import PropertySpace
    from ..properties.build import default_descriptor_file
    from ..properties.joint import build_joint_space, save_subset, subset
    from ..train import TrainConfig, load_trained, train
    from ..evaluate import evaluate
    from ..train.data import eval_split
    from .transfer import MappedScores, with_signatures

    out = paths.resolve(out_dir) if out_dir else paths.results_dir("label_sets")
    coarse_yaml = str(write_coarse_variant(paths.cache_root() / "variants", progress=False))
    coarse = describe_dataset(coarse_yaml, backend="replay", prompt="structured", progress=False,
                              out_root=paths.cache_root() / "descriptors", embedder="all-MiniLM-L6-v2",
                              defaults=RetrievalDefaults(min_pooled=8, max_samples=4))
    joint = build_joint_space({FINE: default_descriptor_file(FINE), coarse_yaml: coarse.path}, progress=False)
    views = {name: save_subset(subset(joint.space, ds), joint.path) for name, ds in (("fine", FINE),
                                                                                      ("coarse", coarse_yaml))}
    fine_names, coarse_names = load_class_names(FINE), load_class_names(coarse_yaml)
    coarse_seen = [c for c in coarse_names if c not in UNSEEN]
    fine_seen = [c for c in fine_names if c not in UNSEEN]
    coarse_val = eval_split(TrainConfig.demo(dataset=coarse_yaml), "val")
    coarse_view = PropertySpace.load(views["coarse"])     # read once, swapped into every seed's fine model
    rows = []
    for seed in tqdm(list(seeds), desc="label sets", disable=not progress):
        runs = {}
        for name, ds in (("fine", FINE), ("coarse", coarse_yaml)):
            runs[name] = f"label_sets-{name}-s{seed}"
            train(TrainConfig.demo(run_name=runs[name], dataset=ds, property_space=str(views[name]), iters=iters,
                                   warmup_iters=10, seed=seed), progress=False)
        fine_model, fine_cfg, _ = load_trained(runs["fine"])
        coarse_model, _, _ = load_trained(runs["coarse"])
        measured = [
            ("fine", "fine", "its own signatures", evaluate(fine_model, eval_split(fine_cfg, "val"),
                                                            classes=fine_seen, progress=False)),
            ("fine", "coarse", "joint space: coarse signatures, no retraining",
             evaluate(with_signatures(fine_model, coarse_view), coarse_val, classes=coarse_seen, progress=False)),
            ("fine", "coarse", "fine prediction mapped by the known class map",
             evaluate(MappedScores(fine_model, fine_names, coarse_names, fine_to_coarse()), coarse_val,
                      classes=coarse_seen, progress=False)),
            ("coarse", "coarse", "trained on the coarse labels", evaluate(coarse_model, coarse_val,
                                                                          classes=coarse_seen, progress=False)),
        ]
        for trained_on, scored_on, how, res in measured:
            rows.append({"seed": seed, "trained_on": trained_on, "scored_on": scored_on, "how": how,
                         **res.summary(), "iters": iters})
    runs_df = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "runs.csv", runs_df.to_csv(index=False))
    atomic_write_json(out / "space.json", {"joint_space": paths.portable(joint.path), "classes": joint.space.class_names,
                                           "n_properties": joint.space.n_properties, "views": {
                                               k: paths.portable(v) for k, v in views.items()},
                                           "coarse_map": fine_to_coarse(), "iters": iters, "seeds": list(seeds),
                                           "created": utc_now(), "environment": environment_info()})
    atomic_write_text(out / "tables.md", label_set_table(runs_df).to_markdown(index=False) + "\n")
    return runs_df


def label_set_table(runs: pd.DataFrame) -> pd.DataFrame:
    """mIoU mean ± std over seeds for each (trained on, scored on, how)."""
    g = runs.groupby(["trained_on", "scored_on", "how"], sort=False)
    return pd.DataFrame([{"trained on": k[0], "scored on": k[1], "how": k[2], "mIoU": mean_std(v["mIoU"]),
                          "runs": len(v)} for k, v in g])


def label_set_verdict(runs: pd.DataFrame, joint: str = "joint space: coarse signatures, no retraining") -> str:
    """The joint space against each baseline of the experiment scored on the same label set, paired by seed
    (``prolab.pairing``: mean difference of mIoU ± its standard error; "level" within two standard errors)."""
    from ..pairing import paired

    scored = runs.loc[runs["how"] == joint, "scored_on"]
    if scored.empty:
        return f"no '{joint}' rows to compare"
    same = runs[runs["scored_on"] == scored.iloc[0]]          # the baselines scored on the same label set
    parts = []
    for other in same["how"].unique():
        if other == joint:
            continue
        p = paired(same, same["how"] == joint, same["how"] == other, joint, other)
        word = {1: "ahead", -1: "behind", 0: "level"}[p.sign]
        parts.append(f"{p.mean:+.2f} ± {p.se:.2f} against '{other}' ({word}, {p.n} seeds)")
    if not parts:
        return "no baseline rows to compare"
    return f"The joint space on the {scored.iloc[0]} labels, paired by seed: " + "; ".join(parts) + "."


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m prolab.analysis.label_sets", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    p.add_argument("--iters", type=int, default=100, help="training iterations per run (default 100)")
    p.add_argument("--out_dir", default=None, help="results folder (default results/label_sets)")
    a = p.parse_args(argv)
    if a.iters < 1 or any(s < 0 for s in a.seeds):
        p.error("iters must be >= 1 and seeds >= 0")
    print(label_set_table(run_label_sets(a.seeds, a.iters, a.out_dir)).to_string(index=False))
    return 0


def load_label_sets(folder: str = "results/label_sets") -> pd.DataFrame:
    """The runs.csv the experiment wrote (notebook 13)."""
    f = paths.resolve(folder) / "runs.csv"
    if not f.exists():
        raise FileNotFoundError(f"{f} not found: run `python -m prolab.analysis.label_sets` first")
    return pd.read_csv(f)


if __name__ == "__main__":
    from prolab.entry import entry_point

    raise SystemExit(entry_point(main, "python -m prolab.analysis.label_sets"))
