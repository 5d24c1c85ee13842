"""``prolab properties``: stage 2, the property space, and what to do about its collisions."""
from __future__ import annotations

import argparse

from .. import defaults, paths
from .common import DATASET_HELP, K_HELP, help_text, here, say_dataset, subparser


def add_properties(sub: argparse._SubParsersAction) -> None:
    p = subparser(sub, "properties", "stage 2: embed descriptions, cluster them into properties, save the space")
    p.add_argument("--dataset", nargs="+", required=True, help=DATASET_HELP + "; several are allowed")
    p.add_argument("--descriptor_file", default=None,
                   help=help_text("descriptor file", "what `prolab describe --dataset` wrote: "
                                              "descriptors/<dataset>/<llm>__structured-<id>.json"))
    p.add_argument("--descriptor_root", default=None,
                   help=help_text("folder `prolab describe --out_root` wrote into", "descriptors/"))
    p.add_argument("--embedder", default=defaults.EMBEDDER,
                   help=help_text("sentence embedder: offline alias, local path or hub name", defaults.EMBEDDER))
    p.add_argument("--embedder_kind", default=defaults.EMBEDDER_KIND, choices=defaults.EMBEDDER_KINDS,
                   help=help_text("how to load the embedder", defaults.EMBEDDER_KIND))
    p.add_argument("--n_properties", type=int, default=None, help=K_HELP)
    p.add_argument("--method", default=defaults.METHOD, choices=defaults.METHODS,
                   help=help_text("clustering method", defaults.METHOD))
    p.add_argument("--seed", type=int, default=0, help=help_text("clustering seed", 0))
    p.add_argument("--repair", action=argparse.BooleanOptionalAction, default=True,
                   help=help_text("make identical signatures unique (each colliding class gains its nearest property; the "
                           "file is then named -repaired, where the repair changed the space); --no-repair keeps them (two classes that property "
                           "supervision can never tell apart)", "on"))
    p.add_argument("--separate", action="store_true",
                   help=help_text("also pull near-collisions apart (subset signatures, cosine >= 0.8, Hamming 1) and split "
                           "properties shared by half the classes or more", "off"))
    p.add_argument("--unseen", default=None, metavar="CLASSES",
                   help=help_text("comma-separated classes held out of the clustering (the unseen-class protocol): the "
                           "bank is built from the other classes' descriptions and theirs are assigned to it; "
                           "written to <PROLAB_CACHE>/spaces/, where `prolab train --unseen` looks", "none"))
    p.add_argument("--out_root", default=None, help=help_text("folder for property spaces", "properties/ for the kit's "
                                                                "datasets, $PROLAB_CACHE/workspace/properties/ for yours"))
    p.add_argument("--release_export", default=None, help=help_text("also write the release's torch layout to this file",
                                                             "not written"))
    p.add_argument("--release_partition", default=None, metavar="FILE",
                   help=help_text("build the space from the authors' property partition (property_<dataset>.json: "
                           "{property: [\"class: description\", ...]}) instead of clustering; the bank is the mean "
                           "of each property's member embeddings under --embedder; prints its statistics and its "
                           "agreement with the kit's default space when that exists", "none: cluster the descriptions"))
    p.add_argument("--aliases", action="append", default=None, metavar="RELEASE=CLASS",
                   help=help_text("with --release_partition: read the partition file's class spelling RELEASE as the "
                           "dataset's class CLASS, where no rule matches (the release's known spellings, e.g. "
                           "ADE20K 'storage tank', are matched already); repeatable", "none"))
    p.set_defaults(func=run_properties)


def parse_aliases(items: list[str] | None) -> dict[str, str]:
    """``--aliases RELEASE=CLASS`` items as a mapping; an item without '=' is an error that names it."""
    out = {}
    for item in items or []:
        name, sep, ours = item.partition("=")
        if not sep or not name.strip() or not ours.strip():
            raise ValueError(f"--aliases {item!r}: expected RELEASE=CLASS, e.g. --aliases 'storage tank=tank'")
        out[name.strip()] = ours.strip()
    return out


def run_properties(a: argparse.Namespace) -> int:
    from ..properties import build_property_space
    from ..properties.analysis import property_stats
    from ..properties.collisions import report_lines, signature_report

    from ..validation import validate

    validate("properties", vars(a))
    aliases = parse_aliases(a.aliases)
    if aliases and not a.release_partition:
        raise ValueError("--aliases applies to --release_partition (the partition file's class spellings)")
    if a.release_partition:  # the space the authors' partition file defines, instead of clustering
        from ..interop.release.partition import partition_command

        given = [f for f, on in (("--descriptor_file", a.descriptor_file), ("--descriptor_root", a.descriptor_root),
                                 ("--n_properties", a.n_properties is not None), ("--no-repair", not a.repair),
                                 ("--method", a.method != defaults.METHOD), ("--seed", a.seed != 0),
                                 ("--separate", a.separate), ("--unseen", a.unseen)) if on]
        if given or len(a.dataset) > 1:
            raise ValueError("--release_partition takes the properties from the file, for one --dataset: drop "
                             + ", ".join(given or ["the other datasets"]))
        say_dataset(a.dataset[0])
        for line in partition_command(here(a.release_partition), a.dataset[0], a.embedder, a.embedder_kind,
                                      out_root=a.out_root, release_export=a.release_export,
                                      aliases=aliases or None):
            print(line, flush=True)
        return 0
    if a.descriptor_file and len(a.dataset) > 1:
        raise ValueError("--descriptor_file applies to one dataset; pass a single --dataset")
    from ..datasets import dataset_key

    for ds in a.dataset:   # every destination first: a refused one must not come after spaces were built
        paths.guard_kit_folder(ds, dataset_key(ds), a.out_root or (a.unseen or None), "properties")
    for ds in a.dataset:
        say_dataset(ds)
        out_root = a.out_root or (str(paths.cache_root() / "spaces") if a.unseen else None)
        out = build_property_space(ds, descriptor_file=a.descriptor_file, embedder=a.embedder,
                                   embedder_kind=a.embedder_kind, n_properties=a.n_properties, method=a.method,
                                   seed=a.seed, repair=a.repair, separate=a.separate, out_root=out_root,
                                   descriptor_root=a.descriptor_root, unseen=a.unseen)
        s = property_stats(out.space)
        print(f"{out.space}\n  -> {out.path}\n  properties per class {s['properties per class (mean)']}, "
              f"colliding groups before/after: {len(out.space.notes['collisions_before'])}/"
              f"{len(out.space.notes['collisions_after'])}, near-collisions before/after: "
              f"{out.space.notes['near_before']}/{out.space.notes['near_after']}", flush=True)
        report = signature_report(out.space)
        for line in report_lines(report):
            print(f"  {line}")
        for line in collision_advice(report, ds, a.repair, a.separate):
            print(f"  {line}", flush=True)
        if a.release_export:
            print(f"  release layout -> {out.space.to_release(a.release_export)}")
    return 0


def collision_advice(report: dict, dataset: str, repaired: bool, separated: bool) -> list[str]:
    """What to do about a space's collisions, as commands: classes with identical signatures cannot be told apart
    by property supervision at all (each scores 0 IoU or takes the other's pixels); near-collisions are hard."""
    out = []
    if report["collisions"] and not repaired:
        out.append(f"-> {len(report['collisions'])} group(s) of classes share one signature and cannot be told apart: "
                   f"build the space again with `prolab properties --dataset {dataset} --repair` (the default; each "
                   "colliding class gains its nearest property) and train on the space it prints "
                   "(--property_space); the grid's `repair` axis measures what that buys")
    if report["near"] and not separated:
        out.append(f"-> {len(report['near'])} near-collision(s): `prolab properties --dataset {dataset} --separate` "
                   "pulls them apart (the grid's `separate` axis measures what that buys)")
    return out


