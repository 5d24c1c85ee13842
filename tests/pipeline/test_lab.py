"""A student's JupyterLab session in a real browser (marker ``lab``; ``make test-lab`` installs what it needs).

JupyterLab is started on 127.0.0.1 with a token and the kit's save hook, Debian's Chromium is driven through
Playwright (the system browser, no browser download), and every notebook is opened in order, run with Run All,
waited for and saved as a student would. Checked: a notebook opens unmodified; no error output; no cell left busy
or unrun; every figure is a decoded image; notebook 06 opened before 05 names the notebook to run first; and
after the session ``git status`` is what it was. Screenshots go to the test's temporary folder.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")
                   # PROLAB_LAB_NOTEBOOKS=00,01 runs a subset (debugging the test itself)
                   if not os.environ.get("PROLAB_LAB_NOTEBOOKS")
                   or p.name[:2] in os.environ["PROLAB_LAB_NOTEBOOKS"].split(","))
RUN_TIMEOUT_S = 900          # one notebook's Run All (05 trains two models; 08 retrains one)


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("no system Chromium: `make test-lab` installs Debian's chromium package")
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout


def _api(base: str, token: str, path: str, method: str = "GET"):
    req = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(base URL, token, temporary folder) of a JupyterLab server on 127.0.0.1 with its own settings, workspace
    and kit cache, so the session starts as a fresh student's would and touches nothing of this user's."""
    pytest.importorskip("playwright", reason="`make test-lab` installs playwright")
    tmp = tmp_path_factory.mktemp("lab")
    settings = tmp / "settings"
    # every cell in the DOM (JupyterLab 4 virtualises long notebooks by default); no news fetched from the web
    for plugin, values in {"@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
                           "@jupyterlab/apputils-extension/notification": {"fetchNews": "false"}}.items():
        f = settings / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "PROLAB_CACHE": str(tmp / "cache"), "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={REPO}",
           "--ContentsManager.pre_save_hook=prolab.lab.strip_outputs_on_save"]
    if os.getuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            _api(base, token, "/api/status")
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited: {(tmp / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not answer within 60 s")
    try:
        yield base, token, tmp
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _open(page, base, token, name):
    page.goto(f"{base}/lab/tree/notebooks/{name}?token={token}")
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook", timeout=60_000)
    _wait_idle(page, 120)
    page.wait_for_timeout(2000)     # JupyterLab updates the notebook's metadata once the kernel is ready


def _panel(page):
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")


def _wait_idle(page, timeout_s):
    """Until the open notebook's kernel is idle and no cell is queued or running ([*])."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        status = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator")
        idle = status.count() > 0 and status.first.get_attribute("data-status") == "idle"
        busy = _panel(page).locator(".jp-InputPrompt", has_text="[*]").count()
        if idle and not busy:
            return
        time.sleep(1)
    raise AssertionError(f"kernel still busy after {timeout_s} s")


def _menu(page, menu, item):
    """Click ``menu`` in the menu bar, then the item whose label starts with ``item`` (labels may end in '…')."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}")).first.click()


def _run_all(page, timeout_s):
    """Run > Run All Cells, then wait until execution has started and ended."""
    _menu(page, "Run", "Run All Cells")
    prompts = _panel(page).locator(".jp-InputPrompt")
    deadline = time.time() + 60
    while time.time() < deadline and not any(re.search(r"\[(\*|\d+)\]", t) for t in prompts.all_inner_texts()):
        time.sleep(0.5)
    _wait_idle(page, timeout_s)


def _dirty(page) -> bool:
    return page.locator(".lm-TabBar-tab.lm-mod-current.jp-mod-dirty").count() > 0


def _errors(page) -> list[str]:
    """Texts of error outputs: IPython tracebacks are rendered as stderr text holding 'Traceback'."""
    texts = _panel(page).locator('[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
    return [t for t in texts if "Traceback" in t]


def _close(page):
    """File > Close and Shut Down Notebook, accepting what JupyterLab asks (shut down; save if modified)."""
    _menu(page, "File", "Close and Shut Down")
    for _ in range(3):
        dialog = page.locator(".jp-Dialog")
        try:
            dialog.first.wait_for(timeout=3000)
        except Exception:       # no (further) question asked
            break
        page.locator(".jp-Dialog .jp-mod-accept").first.click()
        page.wait_for_timeout(500)
    page.locator(".jp-NotebookPanel").first.wait_for(state="detached", timeout=30_000)


def test_a_students_session_runs_every_notebook_and_leaves_git_clean(lab):
    from playwright.sync_api import sync_playwright

    base, token, tmp = lab
    before = _git_status()
    shots = tmp / "screenshots"
    shots.mkdir()
    timings = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(),
                                     args=["--no-sandbox"] if os.getuid() == 0 else [])
        page = browser.new_page(viewport={"width": 1500, "height": 1000})

        # notebook 06 before 05: a clear pointer to the notebook that makes its input, nothing else broken
        _open(page, base, token, "06_evaluate.ipynb")
        _run_all(page, 300)
        page.screenshot(path=str(shots / "06_before_05.png"))
        errors = _errors(page)
        assert errors and all("05_train_segmentation" in e for e in errors), errors
        _close(page)

        for name in NOTEBOOKS:
            t0 = time.time()
            _open(page, base, token, name)
            for _ in range(20):     # JupyterLab flags the model while it loads; what counts is where it settles
                if not _dirty(page):
                    break
                page.wait_for_timeout(500)
            assert not _dirty(page), f"{name} is marked modified as soon as it opens"
            nb = json.loads((REPO / "notebooks" / name).read_text())
            code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
            n_figures = sum("fig = " in "".join(c["source"]) for c in code)
            _run_all(page, RUN_TIMEOUT_S)
            page.screenshot(path=str(shots / f"{Path(name).stem}.png"))
            assert not _errors(page), f"{name}: {_errors(page)}"
            prompts = _panel(page).locator(".jp-Cell.jp-CodeCell .jp-InputPrompt").all_inner_texts()
            assert len(prompts) == len(code) and all(re.search(r"\[\d+\]", p) for p in prompts), (name, prompts)
            images = _panel(page).locator(".jp-RenderedImage img")
            assert images.count() >= n_figures, f"{name}: {images.count()} images for {n_figures} figures"
            assert all(images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")
                       for i in range(images.count())), f"{name}: an image did not decode"
            page.keyboard.press("Control+s")        # a student saves (JupyterLab also autosaves)
            page.wait_for_timeout(1500)
            assert not _dirty(page), f"{name} still modified after saving"
            _close(page)
            timings[name] = round(time.time() - t0, 1)
        browser.close()
    assert _api(base, token, "/api/sessions") == [], "a kernel is still running after every notebook was closed"
    (tmp / "timings.json").write_text(json.dumps(timings, indent=1))
    print("seconds per notebook:", timings, "screenshots:", shots)
    assert _git_status() == before, f"the session changed the checkout:\n{_git_status()}"
