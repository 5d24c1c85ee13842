"""Keep secrets out of everything the kit prints or stores.

``redact`` removes the values of secret-looking environment variables (``*_KEY``, ``*_TOKEN``, ``*_SECRET``,
``*_PASSWORD``) and anything shaped like an API key or bearer token from a text. Every error message that can
reach a terminal, a sidecar, a cache line or a notebook goes through it (the backends' exceptions redact
themselves on construction), so a server that echoes the key back does not put it in a file.
"""
from __future__ import annotations

import os
import re

_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD)$", re.I)
_SHAPES = [
    re.compile(r"\b(?:sk|pk|rk)-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_\-]{16,}"),        # OpenAI-style keys (sk-..., sk-proj-...)
    re.compile(r"\b(?:hf|gh[pousr]|xox[abpr]|glpat)[_-][A-Za-z0-9_\-]{24,}"),  # hub / forge tokens
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),                                      # AWS access key ids
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/\-]{16,}=*"),         # Authorization header values
    # key=value / "key": "value"; the value stops at quotes and backslashes so escaped JSON stays intact
    re.compile(r"(?i)\b(api[_-]?key|access[_-]?token|secret|password)(\"?\s*[:=]\s*\"?)[^\s\"'\\,;&]{6,}"),
]
MASK = "[REDACTED]"


def _secret_values(extra: tuple[str, ...] = ()) -> list[str]:
    vals = [v for k, v in os.environ.items() if _SECRET_ENV.search(k) and v and len(v) >= 6]
    return sorted(set(vals) | {e for e in extra if e and len(e) >= 6}, key=len, reverse=True)


def redact_obj(obj, *secrets: str, keep: tuple[str, ...] = ()):
    """``redact`` applied to every string inside a JSON-like object (dicts, lists); dict entries whose key
    is in ``keep`` are left as they are. The structure is never changed, so the result stays valid JSON."""
    if isinstance(obj, str):
        return redact(obj, *secrets)
    if isinstance(obj, list):
        return [redact_obj(v, *secrets, keep=keep) for v in obj]
    if isinstance(obj, dict):
        return {k: (v if k in keep else redact_obj(v, *secrets, keep=keep)) for k, v in obj.items()}
    return obj


def redact(text: object, *secrets: str) -> str:
    """``text`` as a string with secret values and key-shaped substrings replaced by ``[REDACTED]``."""
    s = str(text)
    for v in _secret_values(secrets):
        s = s.replace(v, MASK)
    for pat in _SHAPES:
        if pat.groups >= 2:
            s = pat.sub(lambda m: m.group(1) + m.group(2) + MASK, s)
        elif pat.groups == 1:
            s = pat.sub(lambda m: m.group(1) + " " + MASK, s)
        else:
            s = pat.sub(MASK, s)
    return s
