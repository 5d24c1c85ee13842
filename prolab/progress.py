"""Progress bars: ``tqdm.auto`` for people (widgets in JupyterLab, text in a terminal), plain text bars when
the pipeline runner executes a notebook (``PROLAB_PROGRESS=text``), because a widget saved in an executed
notebook shows its first frame, 0%, for ever."""
from __future__ import annotations

import os


def _pick():
    if os.environ.get("PROLAB_PROGRESS") == "text":
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm


def tqdm(*args, **kwargs):
    """``tqdm.auto.tqdm``, or the text bar under the pipeline runner (decided at each call)."""
    return _pick()(*args, **kwargs)
