"""Running the notebooks as a pipeline (papermill), from a YAML config."""
from .runner import PipelineConfig, load_config, run_pipeline

__all__ = ["PipelineConfig", "load_config", "run_pipeline"]
