"""Stage 4, evaluation: metrics from a confusion matrix, inference (whole image or sliding window), scoring
finished runs, and the unseen-class protocol."""
from .inference import evaluate, predict_labels, predict_scores
from .metrics import EvalResult, confusion_matrix, metrics_from_confusion, save_results
from .score import evaluate_runs, require_finished
from .unseen import evaluate_unseen

__all__ = ["evaluate", "predict_labels", "predict_scores", "EvalResult", "confusion_matrix",
           "metrics_from_confusion", "save_results", "evaluate_runs", "require_finished", "evaluate_unseen"]
