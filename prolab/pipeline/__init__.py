"""Running the notebooks as a pipeline (papermill), from a YAML config; notebooks hand artefacts on with
``publish``."""
from .outputs import publish, read_outputs
from .runner import PipelineConfig, load_config, parse_overrides, run_pipeline

__all__ = ["PipelineConfig", "load_config", "parse_overrides", "publish", "read_outputs", "run_pipeline"]
