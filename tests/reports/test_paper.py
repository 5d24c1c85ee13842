"""The paper's numbers live in prolab.paper, with their citation, and the tables take them from there."""
import re

import pandas as pd
import pytest

from prolab import paper, paths
from prolab.reports import tables


def test_main_results_property_beats_category_as_reported():
    df = paper.main_results()
    assert list(df["dataset"]) == ["ADE20K", "COCO-Stuff-164k", "Pascal Context-59", "Cityscapes", "BDD"]
    assert (df["ProLab (property-level)"] > df["category-level"]).all()
    assert (df["gain"] > 0).all()
    assert paper.main_result("ADE20K").prolab == 49.0 and paper.main_result("ADE20K").category == 48.4
    assert paper.main_result("BDD").gain == 5.0
    assert "2312.13764" in df.attrs["source"] and "160k" in df.attrs["setting"]


def test_every_source_cites_the_arxiv_id():
    sources = [paper.MAIN_RESULTS_SOURCE, paper.FRAMEWORKS_SOURCE, paper.DESCRIPTOR_COUNTS_SOURCE,
               paper.TRAINING.source, paper.LARGE_MODEL.source] + [a.source for a in paper.ABLATIONS.values()]
    assert all("2312.13764" in s for s in sources)
    assert "2312.13764" in paper.CITATION and "ECCV 2024" in paper.CITATION
    # no invented table numbers: the facts file does not record them
    assert not any(re.search(r"\bTable\s*\d", s) for s in sources)


def test_ablation_numbers_and_orderings():
    k = paper.ablation("n_properties")
    assert k.values == {64: 47.8, 128: 48.0, 256: 48.3, 512: 47.6} and k.order()[0] == 256
    assert paper.ablation("loss").summary().startswith("cosine similarity with sigmoid 47.7 > BCE 47.4")
    assert paper.ablation("prompt").summary() == "structured > naive by about 0.2"
    assert paper.ablation("llm").summary() == "GPT-3.5 > LLaMA2-7B by about 0.5"
    assert paper.ablation("embedder").order()[0] == "bge-base"
    space = paper.ablation("embedding_space").values
    assert space["bge_property"] > space["clip_category"] > space["bge_category"]
    assert [(f.framework, f.category, f.prolab) for f in paper.FRAMEWORKS] == [("DeepLabv3+", 42.7, 43.6),
                                                                               ("SegFormer", 41.5, 42.3)]
    with pytest.raises(KeyError, match="no ablation"):
        paper.ablation("colour")


def test_descriptor_counts_of_the_release():
    counts = {d.dataset: (d.classes, d.descriptions) for d in paper.DESCRIPTOR_COUNTS}
    assert counts == {"ADE20K": (150, 1478), "COCO-Stuff-164k": (171, 1671), "Pascal Context-59": (59, 584),
                      "Cityscapes / BDD": (19, 186)}
    assert paper.descriptor_count("BDD") is paper.descriptor_count("Cityscapes")
    # 8-15 descriptions per class in every release file
    assert all(8 <= d.per_class <= 15 for d in paper.DESCRIPTOR_COUNTS)


def _runs():
    rows = []
    for seed in (0, 1):
        for axis, loss in (("base", "cos_sigmoid"), ("loss", "bce"), ("loss", "cos")):
            rows.append({"axis": axis, "cell": f"{loss}{seed}", "mode": "property", "n_properties": 24,
                         "loss": loss, "prompt": "structured", "seed": seed, "mIoU": 40.0 + seed, "mAcc": 50.0})
    rows.append({"axis": "prompt", "cell": "naive", "mode": "property", "n_properties": 24, "loss": "cos_sigmoid",
                 "prompt": "naive", "seed": 0, "mIoU": 45.0, "mAcc": 50.0})
    return pd.DataFrame(rows)


def test_loss_table_carries_the_papers_numbers():
    t = tables.ablation_table(_runs(), "loss").set_index("Loss")
    got = t[tables.PAPER_COLUMN].to_dict()
    want = {k: f"{v:.1f}" for k, v in paper.ablation("loss").values.items()}
    assert got == want == {"cos_sigmoid": "47.7", "bce": "47.4", "cos": "47.3"}


def test_written_tables_cite_the_paper(tmp_path):
    out = tables.write_tables(_runs(), tmp_path, 139)
    md = (out / "tables.md").read_text()
    assert "arXiv 2312.13764" in md and "ablation of the loss" in md
    assert "shared/reference" not in md and "method.md" not in md


def test_findings_are_computed_from_the_runs():
    lines = tables.findings(_runs(), {"name": "g", "dataset": "d", "seeds": [0, 1], "train": {"iters": 7}})
    assert "each trained for 7 iterations" in lines[0]
    prompt = next(s for s in lines if s.startswith("Prompt"))
    assert "naive ahead" in prompt and "DIFFERS" in prompt            # 45.0 against 40.50 ± 0.71
    loss = next(s for s in lines if s.startswith("Loss"))
    assert "47.7" in loss and "40.50 ± 0.71" in loss


def test_no_module_cites_files_outside_the_repository():
    offenders = [str(f.relative_to(paths.repo_root())) for f in sorted((paths.repo_root() / "prolab").rglob("*.py"))
                 if "shared/reference" in f.read_text(encoding="utf-8")]
    assert offenders == []
