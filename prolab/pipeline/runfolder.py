"""A run's results folder while a run writes it: the last finished run is set aside beside it
(``results/.<run_name>.previous/``), dropped when the run finishes, and put back, byte for byte, when it does
not (the unfinished folder then goes to ``$PROLAB_CACHE/failed_runs/``)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .. import paths
from ..validation import ValidationError


def aside_path(out_dir: Path) -> Path:
    """Where the last finished run waits while a run writes ``out_dir``: ``results/.<run_name>.previous/``,
    holding ``folder/`` (a copy of it) or, when there was none, nothing."""
    return out_dir.with_name(f".{out_dir.name}.previous")


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def check_run_folder(out_dir: Path) -> None:
    """``results/<run_name>/`` must be a run folder (or new): a grid's or evaluation's folder of the same name
    would be mixed with the run's files, and put back or moved away with them."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ValidationError(f"{out_dir} is not a folder; give the run another run_name")
    if not out_dir.is_dir() or aside_path(out_dir).is_dir():
        return
    found = {p.name for p in out_dir.iterdir()}
    if found and not found & {"config.json", "state.json", "notebooks"}:
        raise ValidationError(f"{out_dir} is not a `prolab run` folder (it holds {', '.join(sorted(found)[:4])}"
                              f"{' ...' if len(found) > 4 else ''}, no config.json); give the run another run_name")


def set_aside(out_dir: Path) -> bool:
    """Before a run writes ``out_dir``: copy the last finished run beside it (``aside_path``). Returns True when a
    killed run's unfinished folder is resumed instead (its copy of the last finished run is kept)."""
    aside = aside_path(out_dir)
    partial = aside.with_name(aside.name + ".partial")
    remove(partial)                                   # a copy a killed run did not finish
    for trash in out_dir.parent.glob(f".{out_dir.name}.trash-*"):
        remove(trash)
    if aside.is_dir():
        return True
    partial.mkdir(parents=True)
    if out_dir.is_dir():
        shutil.copytree(out_dir, partial / "folder", symlinks=True)
    os.replace(partial, aside)                         # the copy counts only once it is whole
    return False


def drop_aside(out_dir: Path) -> None:
    """The run finished: its folder is the results; the copy of the previous one goes."""
    aside = aside_path(out_dir)
    if aside.exists():
        trash = out_dir.with_name(f".{out_dir.name}.trash-{os.getpid()}")
        os.replace(aside, trash)
        remove(trash)


def put_back(out_dir: Path) -> Path | None:
    """The run did not finish: the last finished run goes back to ``out_dir`` as it was, and the unfinished
    folder to ``$PROLAB_CACHE/failed_runs/<run_name>/`` (returned), to be looked at. Without a finished run
    before, the unfinished folder stays where it is (it replaces nothing; the next run resumes it): None."""
    aside = aside_path(out_dir)
    previous = aside / "folder"
    if not previous.is_dir():
        remove(aside)
        return None
    trash = out_dir.with_name(f".{out_dir.name}.trash-{os.getpid()}")
    if out_dir.exists() or out_dir.is_symlink():
        os.replace(out_dir, trash)
    os.replace(previous, out_dir)                      # the finished run is back, byte for byte
    remove(aside)
    failed = paths.cache_root() / "failed_runs" / out_dir.name
    if not trash.exists():
        return None
    try:
        remove(failed)
        failed.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(trash), str(failed))
    except OSError:
        remove(trash)
        return None
    return failed
