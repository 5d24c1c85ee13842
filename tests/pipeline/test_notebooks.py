"""Notebooks 01 and 02 executed end to end by papermill with tiny parameters."""
import json
from pathlib import Path

import papermill as pm
import pytest

from prolab.describe.stub_server import StubChatServer

SECRET = "sk-prolab-notebook-" + "a1b2c3d4e5f6" * 3


def _run(repo, name, out, **params):
    pm.execute_notebook(str(repo / "notebooks" / name), str(out), parameters=params, cwd=str(repo / "notebooks"),
                        kernel_name="python3", progress_bar=False)
    return json.loads(out.read_text())


def _has_parameters_cell(nb):
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    return len(tagged) == 1


def test_notebooks_are_clean(repo):
    for nb_path in sorted((repo / "notebooks").glob("*.ipynb")):
        nb = json.loads(nb_path.read_text())
        assert _has_parameters_cell(nb), nb_path.name
        assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), nb_path.name


def test_notebook_metadata_is_what_jupyterlab_keeps_on_open(repo):
    """The kernelspec as the kit's ipykernel reports it (otherwise JupyterLab marks every notebook modified on
    open), language_info reduced to its name, no widget state, no execution counts."""
    from ipykernel.ipkernel import IPythonKernel
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    reported = {k: v for k, v in IPythonKernel.language_info.items() if k != "version"}
    for nb_path in sorted((repo / "notebooks").glob("*.ipynb")):
        nb = json.loads(nb_path.read_text())
        ks = nb["metadata"]["kernelspec"]
        assert (ks["name"], ks["display_name"], ks["language"]) == ("python3", spec.display_name, spec.language), nb_path.name
        info = dict(nb["metadata"]["language_info"])
        # the version is the reference machine's Python (environment.yml); the rest must be the kernel's own
        assert info.pop("version").startswith("3.") and info == reported, nb_path.name
        assert "widgets" not in nb["metadata"], nb_path.name
        assert all(c.get("execution_count") is None for c in nb["cells"] if c["cell_type"] == "code"), nb_path.name


def test_lab_save_hook_keeps_committed_notebooks_byte_identical(repo, tmp_path):
    """What a JupyterLab run adds (outputs, counts, timings, kernel version, widget state) is dropped on save for
    the kit's notebooks/; a notebook elsewhere keeps it; a source edit is kept."""
    import nbformat

    from prolab.lab import strip_outputs_on_save

    class Manager:
        root_dir = str(repo)

    for nb_path in sorted((repo / "notebooks").glob("*.ipynb")):
        committed = nb_path.read_text(encoding="utf-8")
        nb = nbformat.reads(committed, as_version=nbformat.NO_CONVERT)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                cell.outputs = [nbformat.v4.new_output("stream", text="ran\n")]
                cell.execution_count = i + 1
                cell.metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00Z"}
        nb.metadata["language_info"] = {"name": "python", "version": "3.99.0", "mimetype": "text/x-python"}
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
        model = {"type": "notebook", "content": nb}
        strip_outputs_on_save(model, f"notebooks/{nb_path.name}", Manager())
        assert nbformat.writes(model["content"]) + "\n" == committed, nb_path.name
    elsewhere = {"type": "notebook", "content": nbformat.reads(committed, as_version=nbformat.NO_CONVERT)}
    elsewhere["content"].cells[-1].source = "print('mine')"
    elsewhere["content"].metadata["widgets"] = {}
    strip_outputs_on_save(elsewhere, "results/mine.ipynb", Manager())
    assert "widgets" in elsewhere["content"].metadata and elsewhere["content"].cells[-1].source == "print('mine')"


def test_01_prompt_design_live_api_without_leaking_the_key(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with StubChatServer() as srv:
        nb = _run(repo, "01_prompt_design.ipynb", tmp_path / "01.ipynb", classes=["road", "sky"],
                  prompts=["structured", "naive"], backend="openai", llm="stub-model", base_url=srv.base_url,
                  api_key_env="OPENAI_API_KEY", cache_path=str(tmp_path / "calls.jsonl"))
        assert srv.stats.requests >= 4 and f"Bearer {SECRET}" in srv.stats.auth_headers
    text = json.dumps(nb)
    assert "asks per class" in text  # the statistics table rendered
    printed = "".join("".join(o.get("text", [])) for c in nb["cells"] for o in c.get("outputs", []))
    # "What you just saw" is printed from the run's own statistics, one sentence per prompt
    assert "structured: " in printed and "naive: " in printed and "descriptions for 2 classes" in printed
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in nb["cells"] for o in c.get("outputs", []))  # the histogram
    for f in [tmp_path / "01.ipynb", tmp_path / "calls.jsonl"]:
        assert SECRET not in f.read_text() and "a1b2c3d4e5f6" not in f.read_text()


def test_02_llm_retrieval_replays_committed_file(repo, tmp_path):
    from prolab.pipeline.outputs import MIME, declared_outputs, read_outputs

    nb = _run(repo, "02_llm_retrieval.ipynb", tmp_path / "02.ipynb", dataset="synthetic_outdoor",
              backend="replay", llm_temperature=0.0, out_root=str(tmp_path / "desc"))
    outputs = {c["id"]: c.get("outputs", []) for c in nb["cells"]}
    text = json.dumps(outputs)
    assert "18/18 classes described" in text
    # the committed_match cell printed True: replay reproduced the committed descriptor file
    match_cell = next(c for c in nb["cells"] if "".join(c["source"]).strip() == "committed_match(out)")
    assert "".join(match_cell["outputs"][0]["data"]["text/plain"]) == "True"
    written = [f for f in (tmp_path / "desc" / "synthetic_outdoor").glob("*.json") if not f.name.endswith(".meta.json")]
    assert len(written) == 1
    # the written file is published for the pipeline runner, as the notebook's metadata promises
    assert MIME in text and declared_outputs("02_llm_retrieval.ipynb") == ["descriptor_file"]
    assert read_outputs(tmp_path / "02.ipynb") == {"descriptor_file": str(written[0])}
    assert "n = 192 descriptions" in text  # "What you just saw", computed from the run (pooled: 8-15 per class)
    # the authors' file format: without one, this run's file exported and imported back gives the same descriptions
    assert "the same descriptions as this run: True" in text


def test_03_embedding_clustering(repo, tmp_path):
    nb = _run(repo, "03_embedding_clustering.ipynb", tmp_path / "03.ipynb", dataset="synthetic_outdoor",
              n_properties=12, out_root=str(tmp_path / "spaces"))
    from prolab.pipeline.outputs import MIME, declared_outputs, read_outputs

    saved = list((tmp_path / "spaces" / "synthetic_outdoor").glob("*-k12.safetensors"))
    assert len(saved) == 1
    text = json.dumps(nb)
    assert "kmeans vs vmf" in text and "image/png" in text
    # the saved space is published for the pipeline runner, as the notebook's metadata promises
    assert MIME in text and declared_outputs("03_embedding_clustering.ipynb") == ["property_space"]
    assert read_outputs(tmp_path / "03.ipynb") == {"property_space": str(saved[0])}
    assert "K = 12 properties" in text  # "What you just saw", computed from the run


def test_04_property_space(repo, tmp_path):
    nb = _run(repo, "04_property_space.ipynb", tmp_path / "04.ipynb", dataset="synthetic_outdoor", ks=[4, 8],
              compare_embedder=None, compare_descriptor_file=None)
    text = json.dumps(nb)
    assert "kmeans vs gmm" in text and "properties per class" in text
    assert "Most similar pair: " in text and "K from 4 to 8" in text  # "What you just saw", from the run
    assert "application/vnd.prolab.outputs+json" not in text  # 04 publishes nothing


def test_05_and_06_train_and_evaluate(repo, tmp_path, what_properties_buy):
    from prolab.pipeline.outputs import MIME

    env = what_properties_buy
    # 06 before 05: the error names the notebook that makes the runs, before anything is evaluated
    with pytest.raises(pm.PapermillExecutionError) as e:
        _what(repo, env, "06_evaluate", run_names=["t-property", "t-category"])
    assert "Run notebook 05_train_segmentation first" in str(e.value.evalue)
    nb5 = env["nb05"]                                  # the fixture's first run of 05 trained both runs
    text5 = json.dumps(nb5)
    assert "image/png" in text5 and "already trained" not in text5
    assert "e-property: trained iterations 0->3" in text5 and "e-category: trained iterations 0->3" in text5
    published = [o["data"][MIME] for c in nb5["cells"] for o in c.get("outputs", []) if MIME in o.get("data", {})]
    assert published == [{"run_names": env["runs"]}]
    # the same parameters again: both runs are reused, and the notebook says so
    again = _what(repo, env, "05_train_segmentation", **env["tiny"])
    assert again.count("reused a finished run with identical inputs") == 2
    text = _what(repo, env, "06_evaluate", run_names=env["runs"], limit=3, n_show=2, out_dir=str(tmp_path / "res"))
    assert "mIoU" in text and "image/png" in text and "difference e-property - e-category" in text
    assert "signature cosine" in text and "similarity rank" in text      # 04 -> 06: confusions beside the space
    metrics = json.loads((tmp_path / "res" / "e-property" / "metrics.json").read_text())
    assert {"mIoU", "mAcc", "aAcc", "config", "environment"} <= set(metrics) and metrics["n_images"] == 3
    assert (tmp_path / "res" / "e-category" / "per_class.csv").exists()


def test_07_tables_from_csv_only(repo, tmp_path):
    import pandas as pd

    g = tmp_path / "grid"
    g.mkdir()
    rows = []
    for seed in (0, 1):
        rows += [{"axis": "base", "cell": f"b{seed}", "mode": "property", "n_properties": 24, "loss": "cos_sigmoid",
                  "embedder": "all-MiniLM-L6-v2", "seed": seed, "mIoU": 40.0 + seed, "mAcc": 50.0},
                 {"axis": "mode", "cell": f"m{seed}", "mode": "category", "n_properties": 24, "loss": "cos_sigmoid",
                  "embedder": "all-MiniLM-L6-v2", "seed": seed, "mIoU": 38.0 + seed, "mAcc": 48.0},
                 {"axis": "n_properties", "cell": f"k{seed}", "mode": "property", "n_properties": 6,
                  "loss": "cos_sigmoid", "embedder": "all-MiniLM-L6-v2", "seed": seed, "mIoU": 30.0, "mAcc": 45.0}]
    pd.DataFrame(rows).to_csv(g / "runs.csv", index=False)
    pd.DataFrame([{"cell": r["cell"], "iteration": i, "loss": 1.0 / i} for r in rows for i in range(1, 8)]
                 ).to_csv(g / "curves.csv", index=False)
    (g / "grid.json").write_text(json.dumps({"name": "g", "dataset": "synthetic_outdoor", "seeds": [0, 1],
                                             "n_descriptions": 139}))
    nb = _run(repo, "07_ablation_tables.ipynb", tmp_path / "07.ipynb", grid=str(g))
    text = json.dumps(nb, ensure_ascii=False)
    assert "40.50 ± 0.71" in text and "K=256: 48.3" in text and "image/png" in text
    # paired by seed (seed 0: 40 vs 38, seed 1: 41 vs 39); no per_class.csv in this grid, and the notebook says so
    assert "base - mode=category per seed: seed 0 +2.00, seed 1 +2.00 (the same sign on every seed)" in text
    assert "has no per_class.csv" in text
    assert (g / "tables.md").exists() and (g / "tables" / "mode.csv").exists()


@pytest.fixture(scope="module")
def what_properties_buy(tmp_path_factory):
    """Notebooks 06 and 08-13's inputs, made once: notebook 05's tiny runs (in a module cache; its executed copy
    is checked by the 05/06 test) and small grid folders."""
    import pandas as pd

    tmp = tmp_path_factory.mktemp("what_properties_buy")
    mp = pytest.MonkeyPatch()
    mp.setenv("PROLAB_CACHE", str(tmp / "cache"))
    tiny = dict(iters=3, batch_size=2, crop_size=64, channels=16, run_prefix="e")
    nb05 = _run(Path(__file__).resolve().parents[2], "05_train_segmentation.ipynb", tmp / "05.ipynb", **tiny)
    grids = {}
    for name in ("unseen", "budget"):
        g = tmp / name
        g.mkdir()
        rows = [{"mode": m, "iters": it, "seed": s, "mIoU": 40.0 + s + (it == 300) * 3 - (m == "category"),
                 "seen_mIoU": 45.0 + s, "unseen_mIoU": 0.0, "HM": 0.0, "cal_seen_mIoU": 40.0,
                 "cal_unseen_mIoU": 5.0 + s, "cal_HM": 9.0, "gamma": 0.05, "train_seconds": 1.0}
                for m in ("property", "category", "name_embedding") for it in (100, 300) for s in (0, 1)]
        pd.DataFrame(rows).to_csv(g / "runs.csv", index=False)
        (g / "grid.json").write_text(json.dumps({"name": name, "source": f"grid_{name}.yaml"}))
        grids[name] = str(g)
    ls = tmp / "label_sets"
    ls.mkdir()
    pd.DataFrame([{"seed": 0, "trained_on": t, "scored_on": o, "how": h, "mIoU": m} for t, o, h, m in (
        ("fine", "fine", "its own signatures", 50.0),
        ("fine", "coarse", "joint space: coarse signatures, no retraining", 41.5),
        ("fine", "coarse", "fine prediction mapped by the known class map", 55.0),
        ("coarse", "coarse", "trained on the coarse labels", 52.0))]).to_csv(ls / "runs.csv", index=False)
    yield {"tmp": tmp, "runs": ["e-property", "e-category"], "grids": grids, "label_sets": str(ls), "nb05": nb05,
           "tiny": tiny}
    mp.undo()


def _what(repo, env, name, **params):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROLAB_CACHE", str(env["tmp"] / "cache"))
        return json.dumps(_run(repo, f"{name}.ipynb", env["tmp"] / f"{name}.ipynb", **params), ensure_ascii=False)


def test_08_explanations(repo, what_properties_buy):
    text = _what(repo, what_properties_buy, "08_explanations", run_names=what_properties_buy["runs"])
    assert text.count("image/png") >= 2                                   # activation maps, contribution bars
    assert "why not 'fence'?" in text and "the contributions sum to it exactly" in text


def test_09_unseen_classes(repo, what_properties_buy):
    text = _what(repo, what_properties_buy, "09_unseen_classes", run_names=what_properties_buy["runs"],
                 unseen_grid=what_properties_buy["grids"]["unseen"])
    assert "Calibrated stacking on that run" in text and "verdict:" in text and "image/png" in text


def test_10_new_classes(repo, what_properties_buy):
    before = {f: f.read_bytes() for f in (repo / "descriptors").rglob("*") if f.is_file()}
    text = _what(repo, what_properties_buy, "10_new_classes", run_names=what_properties_buy["runs"])
    assert "vehicle:" in text and "lorry:" in text and "the new classes score" in text
    after = {f: f.read_bytes() for f in (repo / "descriptors").rglob("*") if f.is_file()}
    assert after == before                                               # it wrote to the cache, not descriptors/


def test_11_training_length_and_settings(repo, what_properties_buy):
    text = _what(repo, what_properties_buy, "11_training_length_and_settings",
                 budget_grid=what_properties_buy["grids"]["budget"])
    assert "Budget sweep, property - category mIoU: 100 iters +1.00, 300 iters +1.00" in text
    # the committed learning-rate x initialisation grid (the default lr_init_grid), read-only
    assert "Property - category, paired by seed: with the pytorch initialisation property is" in text
    assert "Demo preset (maximin over the table" in text and "read from results/lr_init_grid" in text


def test_12_learnability(repo, what_properties_buy):
    text = _what(repo, what_properties_buy, "12_learnability", run_names=what_properties_buy["runs"], limit=3,
                 n_drop=1)
    assert "e-property-pruned: trained iterations 0->3" in text and "Dropping the 1 least learnable" in text


def test_13_label_sets(repo, what_properties_buy):
    text = _what(repo, what_properties_buy, "13_label_sets", label_sets=what_properties_buy["label_sets"])
    assert "fine model through the coarse signatures 41.50, through the known class map 55.00" in text
    assert "The joint space on the coarse labels, paired by seed: -13.50" in text        # one seed: level


def test_14_pgseg_from_captions(repo, what_properties_buy):
    """Three tiny wovss runs, their figures, the grouping table with the trivial bars, and the unseen table with
    the grid's rows and PGSeg's beside them."""
    text = _what(repo, what_properties_buy, "14_pgseg_from_captions", iters=4, batch_size=4, n_show=2,
                 unseen_grid=what_properties_buy["grids"]["unseen"])
    assert text.count("image/png") >= 6          # before, three after, the matching, the kept share
    assert "reported zero-shot mIoU, PGSeg" in text and "pairs kept, L_PG" in text
    assert "vs the 4-cell grid" in text and "one group per image 7.69" in text
    assert "PGSeg, CPU scale (released_code)" in text and "property (ProLab)" in text
    assert "unseen split, PGSeg at this scale: seen mIoU" in text
    assert "paper, guidance 1: final (oracle) - final grid" in text      # the committed runs, paired by seed
    assert "largest final group (share)" in text
    assert "'descriptions': {'named mIoU'" in text                      # the same groups named by descriptions
