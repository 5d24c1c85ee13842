"""The LLM call cache: one append-only JSONL file, one line per call, keyed by what determines the reply.

The key hashes the model id, the rendered chat messages and the generation parameters; the raw reply is
stored so parsing can change later without asking again. Each line is flushed and fsynced as soon as the call
returns, so a killed run loses at most the calls in flight and a re-run repeats none of the finished ones.
A line cut short by a kill is skipped on load (and reported), never fatal.
"""
from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any

from ..files import stable_hash, utc_now


def call_key(model_id: str, messages: list[dict[str, str]], params: dict[str, Any],
             scope: dict[str, Any] | None = None) -> str:
    """``scope`` is what else decides the reply (an OpenAI-compatible server's URL); empty for local models,
    so their keys are the same as ever."""
    obj = {"model": model_id, "messages": messages, "params": params}
    if scope:
        obj["scope"] = scope
    return stable_hash(obj, length=32)


class CallCache:
    """Dictionary view over the JSONL file; ``put`` appends. Thread-safe for the engine's worker threads."""

    def __init__(self, path: str | os.PathLike, readonly: bool = False, also_read: tuple = ()):
        """``also_read``: other cache files whose calls count as done (read-only; the kit's committed cache
        under the user's), ``path`` wins where both hold a key; ``put`` appends to ``path`` only."""
        self.path = Path(path)
        self.readonly = readonly
        self.also_read = tuple(Path(p) for p in also_read if Path(p).resolve() != self.path.resolve())
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Any]] = {}
        self.skipped_lines = 0
        for other in self.also_read:
            self._load(other)
        self._load(self.path)

    def _load(self, path: Path) -> None:
        if not path.exists():
            return
        # bytes, decoded per line: one line of bad bytes must not make the whole file unreadable
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                problem = None
                try:
                    rec = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    problem = "not a JSON line (probably cut short by a killed run)"
                else:
                    if not isinstance(rec, dict) or not isinstance(rec.get("key"), str):
                        problem = "no string 'key'"
                    elif not isinstance(rec.get("reply"), str):
                        problem = "no string 'reply'"
                if problem:
                    self.skipped_lines += 1
                    warnings.warn(f"{path}:{lineno}: skipping an unreadable cache line ({problem})", stacklevel=2)
                    continue
                self._records[rec["key"]] = rec

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def put(self, key: str, reply: str, **info: Any) -> dict[str, Any]:
        """Append one call. ``info`` holds readable context (class, prompt id, attempt); never secrets."""
        rec = {"key": key, **info, "reply": reply, "created": utc_now()}
        if self.readonly:
            raise PermissionError(f"call cache {self.path} is read-only")
        # "replace": a lone surrogate anywhere must not make the line unwritable (replies are sanitised before)
        line = (json.dumps(rec, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8", errors="replace")
        with self._lock:
            if key in self._records:
                return self._records[key]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # If a killed run left a partial last line, start on a fresh line so the new record stays readable.
            needs_newline = False
            if self.path.exists() and self.path.stat().st_size:
                with open(self.path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    needs_newline = f.read(1) != b"\n"
            with open(self.path, "ab") as f:
                f.write((b"\n" if needs_newline else b"") + line)
                f.flush()
                os.fsync(f.fileno())
            self._records[key] = rec
        return rec

    def records(self) -> list[dict[str, Any]]:
        return list(self._records.values())
