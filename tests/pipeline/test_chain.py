"""The pipeline chains its own artefacts: shared parameters, -p/-f overrides, published outputs and
${step.output} references, and skips that honour them."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_run_config

from prolab import paths
from prolab.pipeline.runner import load_config, parse_overrides, run_pipeline
from prolab.validation import ValidationError

REPO = Path(__file__).resolve().parents[2]


CHAIN = {"run_name": "chain", "parameters": {"dataset": "synthetic_outdoor", "n_properties": 8},
         "notebooks": [
             {"notebook": "02_llm_retrieval", "parameters": {"out_root": "results/chain/descriptors"}},
             {"notebook": "03_embedding_clustering",
              "parameters": {"descriptor_file": "${02_llm_retrieval.descriptor_file}",
                             "out_root": "results/chain/properties"}}]}


def test_overrides_parse_as_yaml(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("iters: 5\nks: [4, 8]\n")
    got = parse_overrides(["dataset=ade20k_150", "limit=null", "lr=0.5", "iters=7"], [str(f)])
    assert got == {"iters": 7, "ks": [4, 8], "dataset": "ade20k_150", "limit": None, "lr": 0.5}
    with pytest.raises(ValueError, match="name=value"):
        parse_overrides(["dataset"])


def test_shared_parameters_and_overrides_reach_the_steps_that_declare_them(scratch):
    cfg = load_config(write_run_config(scratch, CHAIN), overrides={"n_properties": 12})
    p02, p03 = (s.parameters for s in cfg.steps)
    assert p02["dataset"] == p03["dataset"] == "synthetic_outdoor"
    assert "n_properties" not in p02 and p03["n_properties"] == 12  # the override wins over the shared value
    assert p03["descriptor_file"] == "${02_llm_retrieval.descriptor_file}"


@pytest.mark.parametrize("change, words", [
    ({"overrides": {"n_propertes": 4}}, ["'n_propertes'", "did you mean 'n_properties'"]),
    ({"parameters": {"datset": "x"}}, ["'datset'", "did you mean 'dataset'"]),
    ({"ref": "${03_embedding_clustering.property_space}"}, ["not an earlier step"]),
    ({"ref": "${02_llm_retrieval.descriptors}"}, ["publishes descriptor_file"]),
    ({"overrides": {"n_properties": 0}}, ["n_properties = 0"]),
])
def test_bad_wiring_is_refused_before_anything_runs(scratch, change, words):
    cfg = json.loads(json.dumps(CHAIN))
    cfg["parameters"].update(change.get("parameters", {}))
    if "ref" in change:
        cfg["notebooks"][1]["parameters"]["descriptor_file"] = change["ref"]
    with pytest.raises((ValueError, ValidationError)) as e:
        run_pipeline(write_run_config(scratch, cfg), progress=False, overrides=change.get("overrides"))
    for w in words:
        assert w in str(e.value), str(e.value)
    assert not (scratch / "results" / "chain").exists()


def test_each_step_reads_what_the_step_before_wrote(scratch, capsys):
    out = run_pipeline(write_run_config(scratch, CHAIN), progress=False)
    from prolab.pipeline import read_outputs

    o2 = read_outputs(out / "notebooks" / "02_llm_retrieval.ipynb")
    o3 = read_outputs(out / "notebooks" / "03_embedding_clustering.ipynb")
    assert o2["descriptor_file"].startswith("results/chain/descriptors/synthetic_outdoor/")
    assert o3["property_space"].startswith("results/chain/properties/") and o3["property_space"].endswith(
        "-k8.safetensors")
    space = json.loads((scratch / o3["property_space"]).with_suffix(".json").read_text())
    assert space["source"]["descriptor_file"] == Path(o2["descriptor_file"]).name
    # the executed 03 received 02's file as its parameter
    nb3 = json.loads((out / "notebooks" / "03_embedding_clustering.ipynb").read_text())
    injected = next(c for c in nb3["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    assert o2["descriptor_file"] in "".join(injected["source"])
    # no progress widget frozen at 0% in a saved notebook (the kit's bars are text under the runner)
    assert "widget-view" not in json.dumps(nb3) and "Batches:   0%" not in json.dumps(nb3)
    capsys.readouterr()
    run_pipeline(write_run_config(scratch, CHAIN), progress=False)  # unchanged: both skipped, outputs read back
    assert capsys.readouterr().out.count("unchanged, skipped") == 2
    # an override that changes step 03 only re-runs 03, with 02's published file
    run_pipeline(write_run_config(scratch, CHAIN), progress=False, overrides={"n_properties": 6})
    printed = capsys.readouterr().out
    assert "02_llm_retrieval.ipynb: unchanged, skipped" in printed and "[2/2] 03_embedding_clustering" in printed
    assert read_outputs(out / "notebooks" / "03_embedding_clustering.ipynb")["property_space"].endswith(
        "-k6.safetensors")
    assert set(json.loads((out / "state.json").read_text())) == {"02_llm_retrieval.ipynb",
                                                                 "03_embedding_clustering.ipynb"}
    # what step 02 made, removed behind the runner's back: 02 runs again, and so does 03 after it. Found by running
    # `make demo` twice with two empty caches: 00-07 were "unchanged, skipped" and 08 failed, because 05's
    # training runs lived in the first cache.
    space = scratch / read_outputs(out / "notebooks" / "03_embedding_clustering.ipynb")["property_space"]
    descriptors = scratch / o2["descriptor_file"]
    descriptors.unlink()
    run_pipeline(write_run_config(scratch, CHAIN), progress=False, overrides={"n_properties": 6})
    printed = capsys.readouterr().out
    assert "02_llm_retrieval.ipynb: unchanged, but what it made is gone" in printed
    assert "[2/2] 03_embedding_clustering.ipynb\n" in printed  # re-run after 02, although its parameters held
    assert descriptors.exists() and space.exists()


def test_missing_artefacts_lists_what_a_step_published_and_is_gone():
    from prolab.pipeline.runner import missing_artefacts

    assert missing_artefacts({"run_names": ["no-such-run"]}) == [str(paths.run_dir("no-such-run") /
                                                                     "model.safetensors")]
    assert missing_artefacts({"property_space": "results/none/x.safetensors", "n": 3}) == [
        "results/none/x.safetensors"]


def test_cli_p_flag(scratch):
    f = write_run_config(scratch, CHAIN)
    r = subprocess.run([sys.executable, "-m", "prolab", "run", "--config", str(f), "-p", "n_properties=0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "n_properties = 0" in r.stderr, r.stderr


def test_committed_configs_load_and_wire():
    for f in sorted((REPO / "configs").glob("*.yaml")):
        if f.name.startswith("grid"):
            continue
        cfg = load_config(f)
        names = [s.notebook for s in cfg.steps]
        for s in cfg.steps:
            for v in s.parameters.values():
                if isinstance(v, str) and v.startswith("${"):
                    assert v[2:].split(".")[0] + ".ipynb" in names[: names.index(s.notebook)], (f.name, v)
    demo = load_config(REPO / "configs" / "demo.yaml")
    wired = {s.notebook: s.parameters for s in demo.steps}
    assert wired["03_embedding_clustering.ipynb"]["descriptor_file"] == "${02_llm_retrieval.descriptor_file}"
    assert wired["05_train_segmentation.ipynb"]["property_space"] == "${03_embedding_clustering.property_space}"
    assert wired["06_evaluate.ipynb"]["run_names"] == "${05_train_segmentation.run_names}"
    assert paths.repo_root()  # configs are found relative to the repository


def test_every_make_target_the_docs_name_exists():
    import re

    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", makefile, re.M))
    from prolab.reports.summary import documents

    docs = documents() + sorted((REPO / "notebooks").glob("*.ipynb"))
    for f in docs:
        for name in re.findall(r"`make ([a-z][\w-]*)", f.read_text()):
            assert name in targets, f"{f.name} names `make {name}`, which the Makefile does not define"


def test_quoted_figures_equal_the_result_files():
    """Every figure README.md and results/README.md quote (demo time, grid, benchmarks) is rendered from the
    file that holds it: the committed text must equal a fresh rendering (`make figures` rewrites it)."""
    from prolab.reports.summary import BLOCK, documents, fill

    quoting = 0
    for f in documents():
        text = f.read_text()
        quoting += bool(BLOCK.search(text))
        assert fill(text) == text, f"{f.name} quotes figures that differ from results/ (run `make figures`)"
    assert quoting >= 3    # the README, results/README.md and the site's pages with figures
    readme = (REPO / "README.md").read_text()
    timings = json.loads((REPO / "results" / "demo" / "timings.json").read_text())
    assert f"**{sum(timings.values()):.0f} s**" in readme


def test_a_step_runs_again_when_the_file_it_is_given_changes_on_disk(scratch, capsys):
    src = scratch / "results" / "grid_copy"
    shutil.copytree(REPO / "results" / "demo_grid", src)
    cfg = write_run_config(scratch, {"run_name": "tab", "notebooks": [
        {"notebook": "07_ablation_tables", "parameters": {"grid": "results/grid_copy", "write": False}}]})
    run_pipeline(cfg, progress=False)
    run_pipeline(cfg, progress=False)
    assert "unchanged, skipped" in capsys.readouterr().out
    (src / "runs.csv").write_text((src / "runs.csv").read_text() + "\n")  # the grid's results changed
    run_pipeline(cfg, progress=False)
    assert "unchanged, skipped" not in capsys.readouterr().out
