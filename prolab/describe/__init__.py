"""Stage 1: category descriptions from LLMs (prompts, backends, call cache, retrieval, descriptor files)."""
from .backends import (BACKENDS, Backend, BackendError, GenerationParams, ReplayMissError, TransientError,
                       make_backend)
from .cache import CallCache, call_key
from .descriptors import (descriptor_stats, export_release, import_release, load_descriptors, load_meta,
                          save_descriptors)
from .parsing import ParseDefaults, parse_reply
from . import quality
from .prompts import Prompt, available_prompts, load_prompt, prompt_comparison, prompts_overview
from .retrieval import RetrievalDefaults, RetrievalResult, Retriever, retrieve
from .run import DescribeOutput, committed_match, compare_prompts, describe_dataset, replay_settings
from .senses import prompt_name, prompt_names

__all__ = [
    "BACKENDS", "Backend", "BackendError", "GenerationParams", "ReplayMissError", "TransientError", "make_backend",
    "CallCache", "call_key", "descriptor_stats", "export_release", "import_release", "load_descriptors",
    "load_meta", "save_descriptors", "ParseDefaults", "parse_reply", "Prompt", "available_prompts", "load_prompt",
    "RetrievalDefaults", "RetrievalResult", "Retriever", "retrieve", "DescribeOutput", "describe_dataset",
    "committed_match", "compare_prompts", "prompt_comparison", "prompts_overview", "quality", "replay_settings", "prompt_name",
    "prompt_names", "descriptions_table", "format_descriptions_tables",
]


def __getattr__(name):
    # report is imported lazily so that `python -m prolab.describe.report` does not find itself half-imported
    if name in ("descriptions_table", "format_descriptions_tables"):
        from . import report
        return getattr(report, name)
    raise AttributeError(f"module 'prolab.describe' has no attribute {name!r}")
