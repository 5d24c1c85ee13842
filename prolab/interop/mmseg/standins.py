"""Pure-PyTorch stand-in for mmcv's compiled ops (``mmcv._ext``), so mmsegmentation 1.x imports with mmcv-lite.

mmsegmentation imports ``mmcv.ops`` at start-up (``mmseg.utils.mask_classification`` needs ``point_sample``,
itself pure PyTorch); every ``mmcv.ops`` module asks ``mmcv._ext`` for its compiled functions when it is
imported, and mmcv-lite ships none. The stand-in answers every such name with a function that raises a clear
error if it is ever called. The kit's heads, losses, backbones (ViT-Adapter-B's deformable attention is
written with ``grid_sample``) and the mmseg parts the configs use (EncoderDecoder, UPerHead-style heads,
transforms, IoUMetric) call none of them. With a full mmcv build installed, nothing is replaced.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types


class CompiledOpUnavailable(NotImplementedError):
    pass


def _missing(name: str):
    def op(*args, **kwargs):
        raise CompiledOpUnavailable(
            f"mmcv compiled op {name!r} is not available: mmcv-lite has no compiled ops. The kit's configs do "
            "not use it; a config that does needs a full mmcv build (see "
            "docs/howto/mmseg.md).")
    op.__name__ = name
    return op


def install() -> bool:
    """Register the stand-in as ``mmcv._ext`` unless a compiled one exists; True when the stand-in is in use."""
    if "mmcv._ext" in sys.modules:
        return isinstance(sys.modules["mmcv._ext"], types.ModuleType) and getattr(
            sys.modules["mmcv._ext"], "PROLAB_STANDIN", False)
    if importlib.util.find_spec("mmcv") is None:
        raise ImportError("mmcv is not installed: run `make mmseg`")
    try:
        if importlib.util.find_spec("mmcv._ext") is not None:
            return False
    except (ImportError, ValueError):
        pass
    mod = types.ModuleType("mmcv._ext", "prolab stand-in for mmcv's compiled ops (mmcv-lite)")
    mod.PROLAB_STANDIN = True
    # a spec without a loader: mmengine's mmcv_full_available() (pkgutil.find_loader) then reads "no full mmcv"
    mod.__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", loader=None)

    def __getattr__(name: str):
        if name.startswith("_"):               # module machinery (__file__, __spec__, ...): not an op
            raise AttributeError(name)
        return _missing(name)

    mod.__getattr__ = __getattr__
    sys.modules["mmcv._ext"] = mod
    return True
