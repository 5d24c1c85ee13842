"""Small file helpers every stage shares: atomic writes, stable hashes, provenance records."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename: a kill never leaves half a file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # the writer's pid is in the name, so clean_stale_temps can tell a dead writer's leftovers from live ones
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    except OSError as e:   # an unwritable folder, a file where a folder should be: say which file
        raise OSError(e.errno, f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except OSError as e:   # ENOSPC, EDQUOT...: the message names the file (the old one is untouched)
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, f"cannot write {path}: {e.strerror} (the previous file, if any, is unchanged)") \
            from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def canonical_safetensors(blob: bytes) -> bytes:
    """The same safetensors file with its ``__metadata__`` keys in sorted order. safetensors writes metadata from
    a hash map, so two saves of identical tensors and metadata differ in bytes (and in any hash of the file)
    from one process to the next; sorted, equal inputs give equal files. The header keeps its length (padded
    with spaces, as safetensors pads it), so the data offsets stay valid."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    if not header.get("__metadata__"):
        return blob
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > n:  # not expected (same keys, same values); keep the file as written rather than break it
        return blob
    return blob[:8] + text + b" " * (n - len(text)) + blob[8 + n:]


_TEMP_PID = re.compile(r"\.(\d+)-[^.]*\.tmp$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike, extra: tuple[str, ...] = ()) -> list[Path]:
    """Remove what killed writers left in ``folder``: ``atomic_write_*`` temporaries whose process is gone
    (older ones, without a pid, always) and files matching the ``extra`` patterns. Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.glob(".*.tmp"):
        m = _TEMP_PID.search(p.name)
        if m is None or not _alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            removed.append(p)
    for pattern in extra:
        for p in folder.glob(pattern):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """The one JSON style of the kit's files: UTF-8, two-space indent, trailing newline, key order kept."""
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, dumps_json(obj))


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


def read_yaml_mapping(path: str | os.PathLike, what: str, keys: set[str] | None = None) -> dict:
    """A YAML file that must hold a mapping; errors name the file (and unknown keys, if ``keys`` is given)."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"{what} {path} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{what} {path} must hold a mapping")
    unknown = set(raw) - keys if keys is not None else set()
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)} (expected {', '.join(sorted(keys))})")
    return raw


def stable_hash(obj: Any, length: int = 16) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys), hex, truncated."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:length]


def file_sha256(path: str | os.PathLike, length: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def environment_info() -> dict[str, Any]:
    """Versions and hardware recorded beside every output."""
    from importlib import metadata

    versions = {}
    for pkg in ("prolab", "torch", "torchvision", "timm", "transformers", "sentence-transformers",
                "scikit-learn", "numpy", "openai", "llama_cpp_python", "papermill"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "versions": versions,
    }
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        # CPU results depend on both: ATen's kernels are chosen by the CPU's vector capability, and some of its
        # reductions (gradients summed over threads) by the thread count; `prolab verify` re-runs with the same
        # thread count (OMP_NUM_THREADS) and says when the capability differs
        info["torch_threads"] = torch.get_num_threads()
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return info


class FolderBusyError(RuntimeError):
    """Another process is writing the folder (its lock is held)."""


class folder_lock:
    """Hold ``<folder>.lock`` (a sibling, so a folder moved aside or swapped in keeps its lock) while writing
    ``folder``: one writer per run, grid or results folder. A second writer stops at once with the holder's pid
    (``<folder>.lock.owner``), rather than mixing its files with the first one's. The kernel releases the lock of
    a killed process; a stale owner file is overwritten by the next holder."""

    def __init__(self, folder: str | os.PathLike, what: str = "folder"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder.with_name(self.folder.name + ".lock")
        self.owner = self.folder.with_name(self.folder.name + ".lock.owner")
        self._lock = None

    def __enter__(self) -> "folder_lock":
        import socket

        from filelock import FileLock, Timeout

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            try:
                holder = self.owner.read_text(encoding="utf-8").strip()
            except OSError:
                holder = "another process"
            raise FolderBusyError(f"{self.what} {self.folder} is being written by {holder or 'another process'}; "
                                  "wait for it to finish, or use another name") from None
        self._lock = lock
        atomic_write_text(self.owner, f"pid {os.getpid()} on {socket.gethostname()} since {utc_now()}\n")
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.owner.unlink(missing_ok=True)   # before the release: never the next holder's file
        finally:
            self._lock.release()
            self._lock = None
