"""JupyterLab for the kit: a save hook that keeps the committed notebooks as committed.

A student steps through ``notebooks/`` in JupyterLab; JupyterLab saves (and autosaves) the outputs, the kernel's
language_info and widget state into the files, and git then lists every notebook as modified. With this hook a
save of one of the kit's own notebooks (``KIT_NOTEBOOKS`` in ``notebooks/``) keeps what the student wrote
(sources, cell tags, parameters) and drops what a run adds, so the file is byte-identical to the committed one
until its sources are edited. Any other notebook, in ``notebooks/`` too (``Untitled.ipynb``,
``05_train_segmentation-Copy1.ipynb``), is the student's own and is saved as it is, outputs included. The
committed files carry the kernel's own kernelspec and language_info (JupyterLab marks a notebook modified on open
when they differ from what the kernel reports). Executed copies with outputs are what ``prolab run`` writes under
``results/<run_name>/``.

``make lab`` starts JupyterLab with it:
``jupyter lab --ContentsManager.pre_save_hook=prolab.lab.strip_outputs_on_save``.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import paths

# what running a notebook adds to a cell's metadata (timings, scroll state) and to the notebook's
RUN_CELL_METADATA = ("execution", "scrolled", "collapsed", "trusted")
RUN_NOTEBOOK_METADATA = ("widgets",)


# The kit's own notebooks, the pipeline's steps in order (configs/demo.yaml runs them all; a test checks that the
# config, the committed notebooks/ and this list agree). Only these are stripped: a user's notebook beside them
# (a JupyterLab copy, Untitled.ipynb) holds their work and outputs.
KIT_NOTEBOOKS = ("00_prolab_in_60_lines.ipynb", "01_prompt_design.ipynb", "02_llm_retrieval.ipynb",
                 "03_embedding_clustering.ipynb", "04_property_space.ipynb", "05_train_segmentation.ipynb",
                 "06_evaluate.ipynb", "07_ablation_tables.ipynb", "08_explanations.ipynb", "09_unseen_classes.ipynb",
                 "10_new_classes.ipynb", "11_training_length_and_settings.ipynb", "12_learnability.ipynb",
                 "13_label_sets.ipynb", "14_pgseg_from_captions.ipynb")


def is_kit_notebook(path: str | Path, root_dir: str | Path) -> bool:
    """True for one of the kit's own notebooks (``KIT_NOTEBOOKS``) in its notebooks/ folder (``path`` relative
    to the server's root); False for any other file, a user's notebook in notebooks/ included."""
    full = (Path(root_dir) / path).resolve()
    return full.name in KIT_NOTEBOOKS and full.parent == paths.notebooks_dir().resolve()


def strip_run_state(nb: dict, language_info: dict | None = None) -> dict:
    """Outputs, execution counts and run-time metadata removed, in place; ``language_info`` (the committed
    file's) put back, as the kernel writes its own, Python version included, on every start."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        meta = cell.get("metadata", {})
        for key in RUN_CELL_METADATA:
            meta.pop(key, None)
    meta = nb.setdefault("metadata", {})
    for key in RUN_NOTEBOOK_METADATA:
        meta.pop(key, None)
    if language_info is not None:
        meta["language_info"] = language_info
    return nb


def strip_outputs_on_save(model: dict, path: str, contents_manager, **kwargs) -> None:
    """jupyter_server pre-save hook (``ContentsManager.pre_save_hook``): strips run state from the kit's own
    notebooks (``KIT_NOTEBOOKS``); any other file (a copy, ``Untitled.ipynb``, your own notebooks in notebooks/ or
    elsewhere) is saved as it is."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    root = getattr(contents_manager, "root_dir", ".")
    if is_kit_notebook(path, root):
        on_disk = Path(root) / path
        committed = json.loads(on_disk.read_text(encoding="utf-8")).get("metadata", {}) if on_disk.exists() else {}
        strip_run_state(model["content"], committed.get("language_info"))
