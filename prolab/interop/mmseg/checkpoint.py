"""mmengine checkpoints under torch's ``weights_only`` loading. Since torch 2.6 ``torch.load`` refuses any
object that is not a tensor or a plain container unless its class is allow-listed; mmengine 0.10 calls
``torch.load`` without ``weights_only`` and its checkpoints hold a few such objects (the message hub's
``HistoryBuffer``, numpy arrays, scalars and dtypes of logged values). They are added to torch's allow-list
here, one by one, instead of ``weights_only=False`` (which would unpickle anything a file contains).

One thing is not allow-listed: a HistoryBuffer may carry its statistics methods in its instance state, which
pickle writes as ``getattr(HistoryBuffer, "min")``; allowing the builtin ``getattr`` would open the door to
any attribute of any allowed class. Instead the buffers written while the plug-in is loaded leave those
methods out (they are class attributes, restored on load). A checkpoint written by plain mmengine with them
in is refused with torch's message; re-save it with the plug-in loaded if you trust it."""
from __future__ import annotations

import numpy as np
import torch


def safe_globals() -> list:
    from mmengine.logging import HistoryBuffer

    out = [HistoryBuffer, np.ndarray, np.dtype, np._core.multiarray._reconstruct, np._core.multiarray.scalar]
    # numpy's dtype classes (np.dtypes.Float64DType, ...) as pickled for dtype objects
    out += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return out


def _history_buffer_state(self) -> dict:
    state = dict(self.__dict__)
    state.pop("_statistics_methods", None)      # class-level registry; pickled, it needs builtins.getattr
    return state


def allow_mmengine_checkpoints() -> None:
    from mmengine.logging import HistoryBuffer

    HistoryBuffer.__getstate__ = _history_buffer_state
    torch.serialization.add_safe_globals(safe_globals())
