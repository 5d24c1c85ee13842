"""The identity of a run covers exactly the code that computes its numbers (prolab.identity)."""
import shutil
from pathlib import Path

import pytest

from prolab import identity

PKG = Path(identity.__file__).parent


def test_every_file_of_segment_and_datasets_is_classified():
    """A new file under segment/ or datasets/ must be put in or out of the identity on purpose."""
    listed = set()
    for part in identity.CLASSIFIED:
        p = PKG / part
        listed |= {p} if p.is_file() else {f for f in p.rglob("*") if f.is_file()}
    for folder in ("segment", "train", "evaluate", "datasets"):
        for f in (PKG / folder).rglob("*"):
            if f.is_file() and f.suffix in identity.SUFFIXES and "__pycache__" not in f.parts:
                assert f in listed, f"{f.relative_to(PKG)} is neither in TRAINING_CODE nor in NOT_TRAINING"


def test_kernels_are_in_the_identity_and_analysis_is_not():
    files = {str(f.relative_to(PKG)) for f in identity._files(identity.TRAINING_CODE)}
    for must in ("segment/fused.cpp", "segment/fused_triton.py", "segment/model.py", "segment/losses.py",
                 "train/loop.py", "datasets/transforms.py", "defaults.py"):
        assert must in files
    for never in ("analysis/explain.py", "analysis/learnability.py", "evaluate/score.py", "analysis/transfer.py",
                  "evaluate/unseen.py", "datasets/example.py", "presets.py", "files.py", "paths.py", "cli/__init__.py",
                  "reports/tables.py", "interop/release/checkpoint.py"):
        assert never not in files
    grid = {str(f.relative_to(PKG)) for f in identity._files(identity.GRID_CODE)}
    assert {"evaluate/metrics.py", "evaluate/unseen.py", "pipeline/grid.py"} <= grid


def _copy(tmp_path, monkeypatch) -> Path:
    pkg = tmp_path / "prolab"
    shutil.copytree(PKG, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(identity, "_PACKAGE", pkg)
    return pkg


@pytest.mark.parametrize("path,changes", [("segment/fused.cpp", True), ("segment/model.py", True),
                                          ("analysis/explain.py", False), ("presets.py", False),
                                          ("datasets/example.py", False),
                                          ("datasets/classlists/synthetic_outdoor.json", True),
                                          ("datasets/classlists/synthetic_outdoor.palette.json", False)])
def test_editing_a_file_changes_the_training_hash_only_if_it_computes(tmp_path, monkeypatch, path, changes):
    pkg = _copy(tmp_path, monkeypatch)
    before = identity.code_hash(*identity.TRAINING_CODE)
    f = pkg / path
    if f.suffix == ".json":
        f.write_text(f.read_text().replace("[", "[[0, 0, 0], ", 1))   # one more (valid) entry
    else:
        f.write_text(f.read_text() + ("\nstatic int edited = 1;\n" if f.suffix == ".cpp" else "\nEDITED = 1\n"))
    assert (identity.code_hash(*identity.TRAINING_CODE) != before) is changes


def test_a_listed_file_that_is_missing_is_an_error(tmp_path, monkeypatch):
    pkg = _copy(tmp_path, monkeypatch)
    (pkg / "segment" / "fused_triton.py").unlink()
    with pytest.raises(FileNotFoundError, match="fused_triton.py"):
        identity.code_hash(*identity.TRAINING_CODE)


def test_prose_does_not_change_the_hash_and_code_does(tmp_path, monkeypatch):
    pkg = _copy(tmp_path, monkeypatch)
    before = identity.code_hash(*identity.TRAINING_CODE)
    f = pkg / "segment" / "losses.py"
    src = f.read_text()
    f.write_text(src.replace('"""Losses for', '"""Losses (reworded) for', 1).replace("# sparse", "# SPARSE") +
                 "\n\n# a new comment\n")
    cpp = pkg / "segment" / "fused.cpp"
    cpp.write_text("// a new first line of prose\n" + cpp.read_text().replace("// Portable arithmetic.", "// Reworded."))
    assert identity.code_hash(*identity.TRAINING_CODE) == before
    f.write_text(src.replace("clamp_min(1e-16)", "clamp_min(1e-15)", 1))
    assert identity.code_hash(*identity.TRAINING_CODE) != before


def test_code_text_keeps_strings_that_are_not_docstrings(tmp_path):
    f = tmp_path / "m.py"
    f.write_text('"""module doc"""\nx = "# not a comment"  # a comment\n\n\ndef g():\n    """doc\n    more"""\n'
                 '    return "s"\n')
    assert identity.code_text(f) == 'x = "# not a comment"\ndef g():\n    return "s"'


def test_code_hash_from_several_threads_at_once(monkeypatch):
    """Two grid shards in one process hash the code at the same time (ast.parse is not thread-safe in 3.11)."""
    import threading

    monkeypatch.setattr(identity, "_texts", {})
    out, errors = [], []

    def work():
        try:
            out.append(identity.code_hash(*identity.GRID_CODE))
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(set(out)) == 1 and len(out) == 4
