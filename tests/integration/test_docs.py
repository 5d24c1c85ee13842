"""The documentation site: its generated pages come from the code and the committed results, and it builds
strictly (broken links, missing pages and bad notebooks fail) with the pinned mkdocs of `.venv-docs`."""
import shutil
import subprocess
from pathlib import Path

import pytest

from prolab.cli import docs

REPO = Path(__file__).resolve().parents[2]


def test_generated_reference_pages_follow_the_code(tmp_path):
    from dataclasses import fields

    from prolab.cli import build_parser
    from prolab.train.config import TrainConfig

    cli = docs.cli_reference()
    commands = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices).choices
    assert all(f"## prolab {name}" in cli for name in commands) and "--splits" in cli
    conf = docs.configuration_reference()
    assert all(f"| `{f.name}` |" in conf for f in fields(TrainConfig))
    assert "| `lr` | float | `6e-05` | `0.001` |" in conf          # default, then the demo preset's value
    assert docs.source_pages() and not any(p.name == "cli.md" for p in docs.source_pages())


@pytest.mark.docs
def test_the_site_builds_strictly(tmp_path):
    mkdocs = REPO / ".venv-docs" / "bin" / "mkdocs"
    if not mkdocs.exists():
        pytest.fail("no .venv-docs: run `make docs` once (it installs docs/requirements.txt)")
    site = tmp_path / "repo"
    shutil.copytree(REPO / "docs", site / "docs")
    shutil.copy2(REPO / "mkdocs.yml", site / "mkdocs.yml")
    docs.write(site / "docs")
    r = subprocess.run([str(mkdocs), "build", "--strict", "-d", str(tmp_path / "site")], cwd=site,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    built = tmp_path / "site"
    assert (built / "index.html").is_file() and (built / "reference" / "cli" / "index.html").is_file()
    nb = built / "course" / "notebooks" / "05_train_segmentation" / "index.html"
    assert nb.is_file() and "What you just saw" in nb.read_text()
