"""How every ``prolab`` command and ``python -m prolab.<module>`` tool ends on an expected error: one line on
stderr naming the problem (secrets redacted) and exit status 2, not a traceback. A leaf module: every stage may
use it without importing the command line."""
from __future__ import annotations

import sys

EXPECTED_ERRORS = (FileNotFoundError, ValueError, KeyError, LookupError, RuntimeError, OSError, ImportError)


def entry_point(func, prog: str, *args) -> int:
    """Run the ``main`` of a ``python -m prolab.<module>`` tool as ``prolab`` runs its commands: an expected
    error (bad input, a missing file, a busy folder) is one line on stderr and exit status 2, not a traceback."""
    from .redact import redact

    try:
        return func(*args) or 0
    except EXPECTED_ERRORS as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"{prog}: error: {redact(msg)}", file=sys.stderr)
        return 2
