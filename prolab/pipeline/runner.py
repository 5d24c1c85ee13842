"""The pipeline runner: execute the notebooks in order with papermill, parameters from a YAML config.

Each executed notebook, the resolved config and the environment go to ``results/<run_name>/``. Every parameter
of every step is checked before anything runs (``prolab.pipeline.parameters.NOTEBOOK_RULES``). The folder is replaced
only by a finished run: the run works in ``results/<run_name>/`` (the notebooks are given, record and publish
paths inside it, and training runs in the cache keep the property space's path), while the last finished run
waits beside it, copied to ``results/.<run_name>.previous/``; a run that ends in an error puts that copy back,
byte for byte, and a finished one drops it. A killed run leaves both: the next run resumes the unfinished
folder and keeps the copy until it finishes. One writer per folder (``results/<run_name>.lock``).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import paths
from ..files import (atomic_write_json, clean_stale_temps, environment_info, read_json, read_yaml_mapping,
                     stable_hash, utc_now)
from ..redact import redact, redact_obj
from ..validation import ValidationError, check, fail, unknown_names
from .parameters import notebook_rules
from .runfolder import aside_path, check_run_folder, drop_aside, put_back, set_aside

STEP_KEYS = ("notebook", "parameters")   # what a step of a run config may say


class PipelineError(RuntimeError):
    """A notebook of the pipeline failed; the message names it, the cell, the error and the executed copy."""


@dataclass
class NotebookStep:
    notebook: str                                    # file name in notebooks/, e.g. 01_prompt_design.ipynb
    parameters: dict[str, Any] = field(default_factory=dict)   # may hold ${NN_notebook.output} references


@dataclass
class PipelineConfig:
    run_name: str
    steps: list[NotebookStep]
    source: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)   # shared by every step that declares them


def parse_overrides(pairs: list[str] | None = None, files: list[str] | None = None) -> dict[str, Any]:
    """``-p name=value`` (value read as YAML: 3, 0.5, [1, 2], null, text) and ``-f params.yaml`` (a mapping),
    later ones winning, as papermill's own flags."""
    import yaml

    out: dict[str, Any] = {}
    for f in files or []:
        try:
            out.update(read_yaml_mapping(paths.resolve(f), "parameters file"))
        except ValueError as e:   # a YAML parser's message spans lines: the error is one
            raise ValueError(f"-f {f}: " + " ".join(str(e).split())) from None
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"-p {pair!r}: write -p name=value")
        try:
            out[name.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as e:
            raise ValueError(f"-p {pair!r}: the value is not valid YAML ({' '.join(str(e).split())})") from None
    # a dataset YAML named relative to where the command runs: the notebooks run in notebooks/, so pass it on
    # as an absolute path
    from ..datasets.spec import is_spec_path

    ds = out.get("dataset")
    if is_spec_path(ds) and not Path(ds).is_absolute() and Path(ds).is_file():
        out["dataset"] = str(Path(ds).resolve())
    return out


def _shown(value: Any, limit: int = 80) -> str:
    """A config value in an error message: its repr, one line, cut at ``limit`` characters."""
    r = repr(value)
    return r if len(r) <= limit else r[:limit - 4] + " ..."


def _notebook_name(value: Any, where: str) -> str:
    """A step's notebook: a file name in notebooks/ (``02_llm_retrieval`` or ``02_llm_retrieval.ipynb``)."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{where}.notebook = {_shown(value)}: must be a notebook name (a string such as "
                              "'02_llm_retrieval')")
    if Path(value).name != value or value.startswith("."):
        raise ValidationError(f"{where}.notebook = {_shown(value)}: must be the name of a notebook in notebooks/, "
                              "not a path")
    return value if value.endswith(".ipynb") else value + ".ipynb"


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read and check a run config before anything runs; errors name the file and the entry.

    A step's parameters are, in increasing precedence: the notebook's own defaults, the config's top-level
    ``parameters`` that the notebook declares, the step's ``parameters``, then ``overrides`` (``-p``/``-f``)
    for every step that declares them. ``${NN_notebook.output}`` references must name an earlier step and an
    output that notebook declares. Every value is checked against its notebook parameter's rule
    (``prolab.pipeline.parameters.NOTEBOOK_RULES``): types, ranges, names (datasets, backbones, prompts), files."""
    from .outputs import REFERENCE, declared_outputs

    path = paths.resolve(path)
    raw = read_yaml_mapping(path, "pipeline config", {"run_name", "notebooks", "parameters"})
    name = raw.get("run_name")
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(f"{path}: run_name = {_shown(name)}: must be a non-empty string (it names "
                              "results/<run_name>/)")
    try:
        folder = paths.results_dir(name)
    except ValueError as e:
        raise ValidationError(f"{path}: run_name = {_shown(name)}: {e}") from None
    if folder.parent != paths.repo_root() / "results" or folder.name in ("", ".", ".."):
        raise ValidationError(f"{path}: run_name = {_shown(name)}: must name a folder inside results/")
    shared = raw.get("parameters")
    shared = {} if shared is None else shared
    if not isinstance(shared, dict):
        raise ValidationError(f"{path}: parameters = {_shown(shared)}: must be a mapping of notebook parameter "
                              "names to values")
    entries = raw.get("notebooks")
    if not isinstance(entries, list):
        raise ValidationError(f"{path}: notebooks = {_shown(entries)}: must be a list of steps, each a notebook "
                              "name or {notebook: <name>, parameters: {...}}")
    overrides = dict(overrides or {})
    steps, declared_by_any, earlier = [], set(), {}
    for i, entry in enumerate(entries):
        at = f"{path}: notebooks[{i}]"
        if isinstance(entry, str):
            entry = {"notebook": entry}
        if not isinstance(entry, dict):
            raise ValidationError(f"{at} = {_shown(entry)}: must be a notebook name or {{notebook: <name>, parameters: "
                                  "{...}}")
        unknown_names(entry, STEP_KEYS, "key", at)
        if "notebook" not in entry:
            raise ValidationError(f"{at}: needs a 'notebook' name")
        nb = _notebook_name(entry["notebook"], at)
        if not (paths.notebooks_dir() / nb).is_file():
            raise FileNotFoundError(f"{at}: no notebook {nb} in {paths.notebooks_dir()}")
        if nb in earlier:  # executed copies, state and outputs are per notebook
            raise ValueError(f"{at}: {nb} is already a step of this config; a notebook runs "
                             "once per run config (use a second config for a second run of it)")
        own = entry.get("parameters")
        own = {} if own is None else own
        if not isinstance(own, dict):
            raise ValidationError(f"{at}.parameters = {_shown(own)}: must be a mapping of parameter names to values")
        where = f"{at} ({nb})"
        known = notebook_parameters(nb)
        declared_by_any |= set(known)
        params = {**{k: v for k, v in shared.items() if k in known}, **own,
                  **{k: v for k, v in overrides.items() if k in known}}
        for pname, value in params.items():
            m = REFERENCE.match(value) if isinstance(value, str) else None
            if m is None:
                continue
            ref_nb = m["step"] + ".ipynb"
            if ref_nb not in earlier:
                raise ValueError(f"{where}: {pname} = {value!r} refers to {m['step']}, which is not an earlier step")
            if m["name"] not in earlier[ref_nb]:
                raise ValueError(f"{where}: {pname} = {value!r}: {m['step']} publishes "
                                 f"{', '.join(earlier[ref_nb]) or 'nothing'}")
        from_flags = {k for k in params if k in overrides}
        check_parameters(nb, {k: v for k, v in params.items() if not (isinstance(v, str) and REFERENCE.match(v))},
                         where=where, from_flags=from_flags)
        steps.append(NotebookStep(nb, params))
        earlier[nb] = declared_outputs(nb)
    if not steps:
        raise ValueError(f"{path}: no notebooks to run")
    unknown_names(shared, declared_by_any, "shared parameter (declared by no notebook of the config)", str(path))
    unknown_names(overrides, declared_by_any, "parameter in -p/-f (declared by no notebook of the config)",
                  str(path))
    return PipelineConfig(name, steps, str(path), {**shared, **overrides})


def resolve_references(step: NotebookStep, outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The step's parameters with ``${NN_notebook.output}`` replaced by what that notebook published."""
    from .outputs import REFERENCE

    out = {}
    for name, value in step.parameters.items():
        m = REFERENCE.match(value) if isinstance(value, str) else None
        if m:
            published = outputs.get(m["step"] + ".ipynb", {})
            if m["name"] not in published:
                raise PipelineError(f"notebook {m['step']} did not publish {m['name']!r} (needed by "
                                    f"{Path(step.notebook).stem}.{name}); it published {sorted(published)}")
            value = published[m["name"]]
        out[name] = value
    return out


def notebook_parameters(notebook: str) -> dict[str, Any]:
    """{name: default value} of a notebook's ``parameters`` cell (papermill reads the cell; literals only)."""
    import ast

    import papermill as pm

    found = pm.inspect_notebook(str(paths.notebooks_dir() / notebook))
    out = {}
    for name, info in found.items():
        try:
            out[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            out[name] = None  # not a literal: accept any value
    return out


def check_parameters(notebook: str, params: dict[str, Any], where: str, from_flags: set[str] | None = None) -> None:
    """Every parameter must exist in the notebook's parameters cell, fit its default's type and pass its rule
    (``prolab.pipeline.parameters.NOTEBOOK_RULES``); errors are one line naming the notebook (``where``), the parameter,
    the value, what it must be and, for a value given by ``-p``/``-f`` (``from_flags``), that it came from there."""
    defaults = notebook_parameters(notebook)
    unknown_names(params, defaults, "parameter", f"{where}")
    rules = notebook_rules(notebook)
    for name, value in params.items():
        # -p/-f reach every notebook that declares the name: say so, a per-step value is the way out
        at = (f"{where} (set by -p/-f, which reach every notebook declaring it; for one notebook: its step's "
              "parameters)") if from_flags and name in from_flags else where
        rule = rules.get(name)
        if rule is None:  # a parameter added to a notebook without a rule (a test walks the notebooks for these)
            raise ValidationError(f"{at}: {name}: the notebook's parameter has no rule in "
                                  "prolab.pipeline.parameters.NOTEBOOK_RULES; add one")
        d = defaults[name]
        if value is None and not rule.nullable:
            fail(name, value, f"a value (the notebook's default is {d!r}; None is not allowed here)", at)
        if d is not None and value is not None:
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool) if isinstance(d, float) and
                  not isinstance(d, bool) else isinstance(value, type(d)) and isinstance(value, bool) == isinstance(d, bool))
            if not ok:
                fail(name, value, f"of type {type(d).__name__}, like the notebook's default {d!r}", at)
        check(name, value, rule, at)


def _relative_paths(notebook: Path, final: Path) -> None:
    """papermill records the input and output paths as given (absolute, and the temporary name): record them
    relative to the repository, so committed executed notebooks name no machine's folders."""
    import json

    from ..files import atomic_write_text

    nb = json.loads(notebook.read_text(encoding="utf-8"))
    meta = nb.setdefault("metadata", {}).setdefault("papermill", {})
    root = paths.repo_root()
    rel = lambda p: str(p.relative_to(root)) if p.is_absolute() and p.is_relative_to(root) else str(p)  # noqa: E731
    meta["input_path"] = rel(Path(meta.get("input_path") or ""))
    meta["output_path"] = rel(final)
    # progress widgets of other libraries (model loading, encoding) are saved as their first frame, 0%, for
    # ever: a saved notebook shows nothing true with them, so they are dropped (the kit's own bars are text)
    for cell in nb.get("cells", []):
        if cell.get("outputs"):
            cell["outputs"] = [o for o in cell["outputs"]
                               if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})]
    nb.get("metadata", {}).pop("widgets", None)
    # a key echoed into an output (a server's error text) never reaches a saved notebook: every string of the
    # parsed notebook is redacted (the JSON stays valid); published outputs are what later steps read, as is
    from .outputs import MIME

    nb = redact_obj(nb, keep=(MIME,))
    atomic_write_text(final, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def inputs_hash() -> str:
    """Content hash of what every notebook depends on besides its parameters: the package's code (the same
    ``identity.code_hash`` that is part of every training run's identity) and the committed artefacts
    (prompts, call cache, descriptor files, property spaces)."""
    import hashlib

    from ..identity import code_hash

    h = hashlib.sha256(code_hash().encode())
    root = paths.repo_root()
    files = sorted([p for p in (root / "descriptors").rglob("*") if p.is_file()]
                   + [p for p in (root / "properties").rglob("*") if p.is_file()])
    for f in files:
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _path_fingerprint(value: Any) -> Any:
    """For a parameter that names an existing file or folder: what is there now (a small file's bytes; a large
    file's or a folder's names, sizes and modification times), so a step whose input changed on disk under
    the same name runs again. Other values: None."""
    import hashlib

    if not isinstance(value, str) or not value or len(value) > 4096:
        return None
    try:
        p = paths.resolve(value)
        if not p.exists():
            return None
    except (OSError, ValueError):
        return None
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(p) if f != p else f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
        if st.st_size < (50 << 20) and p.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def step_key(step: NotebookStep, parameters: dict[str, Any], previous: str, inputs: str) -> str:
    nb = (paths.notebooks_dir() / step.notebook).read_bytes()
    # inputs only: a step writes into its out_root / out_dir, so their content is its result, not its input
    on_disk = {k: fp for k, v in parameters.items()
               if k not in ("out_root", "out_dir") and (fp := _path_fingerprint(v)) is not None}
    return stable_hash({"notebook": nb.hex(), "parameters": parameters, "previous": previous, "inputs": inputs,
                        "files": on_disk})


def missing_artefacts(outputs: dict[str, Any]) -> list[str]:
    """What a step published that is no longer there: a file or folder it named (a descriptor file, a property
    space) or a training run (``run_names``) without its final weights, e.g. after the cache was cleared or
    PROLAB_CACHE points elsewhere. Such a step is not skipped: the steps after it would read nothing."""
    gone = []
    for key, value in outputs.items():
        for v in value if isinstance(value, list) else [value]:
            if not isinstance(v, str):
                continue
            if key == "run_names":
                weights = paths.run_dir(v) / "model.safetensors"
                if not weights.exists():
                    gone.append(str(weights))
            elif "/" in v and not paths.resolve(v).exists():
                gone.append(v)
    return gone


class _StepFailed(Exception):
    """A notebook raised; carries what the PipelineError message needs once the folder is settled."""

    def __init__(self, step: NotebookStep, error: Any, failed: Path):
        super().__init__(step.notebook)
        self.step, self.error, self.failed = step, error, failed


def run_pipeline(config: PipelineConfig | str | Path, progress: bool = True, force: bool = False,
                 overrides: dict[str, Any] | None = None) -> Path:
    """Execute the notebooks of the config in order; returns ``results/<run_name>/``.

    Each step's ``${NN_notebook.output}`` parameters are filled with what that earlier notebook published.
    A step whose notebook, resolved parameters, upstream steps and inputs (code, committed artefacts) are
    unchanged since its last successful execution is skipped (its published outputs are read from its
    executed copy); an interrupted step runs again (training inside it resumes from its checkpoints, and a
    finished training run is reused only when its own identity is unchanged).

    The folder changes only when the whole run finishes: a run that fails leaves the last finished run's folder
    as it was (see the module docstring), and ``config.json``, ``environment.json`` and ``timings.json`` are
    written last. A second process running the same run_name stops at once, naming the first one's pid."""
    from ..files import folder_lock

    cfg = config if isinstance(config, PipelineConfig) else load_config(config, overrides)
    out_dir = paths.results_dir(cfg.run_name)
    with folder_lock(out_dir, "results folder"):
        check_run_folder(out_dir)
        if set_aside(out_dir):
            print(f"{paths.portable(out_dir)}: resuming an unfinished run (the last finished run waits in "
                  f"{aside_path(out_dir).name} until this one finishes)", flush=True)
        try:
            _run_steps(cfg, out_dir, progress, force)
        except _StepFailed as f:
            moved = put_back(out_dir)
            e, failed = f.error, f.failed
            if moved is not None:
                failed = moved / failed.relative_to(out_dir)
            rel = failed.relative_to(paths.repo_root()) if failed.is_relative_to(paths.repo_root()) else failed
            last = (str(e.evalue).strip().splitlines() or [""])[-1]
            kept = (f"; {paths.portable(out_dir)} is unchanged (the last finished run)" if moved is not None else "")
            raise PipelineError(redact(f"notebook {Path(f.step.notebook).stem} failed at cell {e.cell_index + 1} "
                                       f"(execution count {e.exec_count}): {e.ename}: {last}; executed copy at "
                                       f"{rel}{kept}")) from None
        except BaseException:
            moved = put_back(out_dir)
            if moved is not None:
                print(f"{paths.portable(out_dir)}: the run did not finish; the last finished run is back in place "
                      f"(the unfinished folder is in {moved})", flush=True)
            raise
        drop_aside(out_dir)
    return out_dir


def _run_steps(cfg: PipelineConfig, out_dir: Path, progress: bool, force: bool) -> None:
    """The steps of ``run_pipeline``, in ``out_dir``; a notebook that raises ends them with ``_StepFailed``."""
    import papermill as pm

    from .outputs import REFERENCE, read_outputs

    out_dir.mkdir(parents=True, exist_ok=True)
    # what a killed run left behind: temporary JSON files and half-executed notebook copies
    for folder in (out_dir, out_dir / "notebooks"):
        clean_stale_temps(folder, extra=("*.running.ipynb",))
    state_file = out_dir / "state.json"
    state = read_json(state_file) if state_file.exists() else {}
    inputs = inputs_hash()
    previous = ""
    rerun = False
    outputs: dict[str, dict[str, Any]] = {}
    for i, step in enumerate(cfg.steps, 1):
        params = resolve_references(step, outputs)
        # a value filled in from an earlier step's outputs is checked like one written in the config
        filled = {k: v for k, v in params.items() if isinstance(step.parameters.get(k), str)
                  and REFERENCE.match(step.parameters[k])}
        if filled:
            check_parameters(step.notebook, filled, where=f"{cfg.source}: {step.notebook} (from an earlier step)")
        key = step_key(step, params, previous, inputs)
        previous = key
        dest = paths.executed_notebook_path(cfg.run_name, step.notebook)
        if not force and not rerun and state.get(step.notebook, {}).get("key") == key and dest.exists():
            published = read_outputs(dest)
            gone = missing_artefacts(published)
            if not gone:
                print(f"[{i}/{len(cfg.steps)}] {step.notebook}: unchanged, skipped", flush=True)
                outputs[step.notebook] = published
                continue
            print(f"[{i}/{len(cfg.steps)}] {step.notebook}: unchanged, but what it made is gone ({gone[0]}"
                  f"{f' and {len(gone) - 1} more' if len(gone) > 1 else ''}); running it again", flush=True)
        else:
            print(f"[{i}/{len(cfg.steps)}] {step.notebook}", flush=True)
        rerun = True  # every later step reads what this one makes again, so none of them is skipped
        dest.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        tmp = dest.with_name(f".{dest.stem}.running.ipynb")
        os.environ["PROLAB_PROGRESS"] = "text"  # the kernel inherits it: text bars save as their last state
        try:
            pm.execute_notebook(str(paths.notebooks_dir() / step.notebook), str(tmp), parameters=params,
                                cwd=str(paths.notebooks_dir()), kernel_name="python3", progress_bar=progress)
        except pm.PapermillExecutionError as e:
            failed = dest.with_name(f"{dest.stem}.failed.ipynb")
            if tmp.exists():
                _relative_paths(tmp, failed)
                tmp.unlink()
            state.pop(step.notebook, None)
            atomic_write_json(state_file, state)
            raise _StepFailed(step, e, failed) from None
        _relative_paths(tmp, dest)
        tmp.unlink()
        dest.with_name(f"{dest.stem}.failed.ipynb").unlink(missing_ok=True)
        outputs[step.notebook] = read_outputs(dest)
        state[step.notebook] = {"key": key, "seconds": round(time.time() - t0, 1), "finished": utc_now()}
        atomic_write_json(state_file, state)
    # the folder is this run's: executed copies of notebooks that are no step of it (an earlier config's) go
    steps = {Path(st.notebook).stem for st in cfg.steps}
    for f in sorted((out_dir / "notebooks").glob("*.ipynb")):
        if f.name.removesuffix(".ipynb").removesuffix(".failed") not in steps:
            f.unlink()
    # written last: they describe a run that finished (a failed run leaves the previous ones in place)
    atomic_write_json(out_dir / "config.json", redact_obj({"run_name": cfg.run_name, "source": Path(cfg.source).name,
                                                           "parameters": cfg.parameters,
                                                           "notebooks": [asdict(s) for s in cfg.steps]}))
    atomic_write_json(out_dir / "environment.json", environment_info())
    # seconds per notebook, kept apart from the machine-local state so they can be committed
    atomic_write_json(out_dir / "timings.json", {nb: s["seconds"] for nb, s in state.items()
                                                 if nb in {st.notebook for st in cfg.steps}})
