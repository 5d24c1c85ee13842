"""prolab: a reproduction kit for ProLab (LLM-derived property label spaces for semantic segmentation).

Stages, one subpackage each: ``datasets`` (class lists, data) -> ``describe`` (LLM descriptions) -> ...
Every artefact path comes from ``prolab.paths``.
"""
__version__ = "0.1.0"

from . import paths  # noqa: E402
from .datasets import load_class_names  # noqa: E402

__all__ = ["paths", "load_class_names", "__version__"]
