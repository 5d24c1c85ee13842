"""Stage 3, training: the typed config and its presets, the data a run reads, what it is supervised with
(``build``), the optimiser, the loop with its callbacks, and a run's folder (checkpoints, identity, weights)."""
from .build import build_model, load_space_for, run_unseen
from .config import TrainConfig
from .data import eval_split, open_split
from .loop import TrainResult, train
from .runs import load_trained, read_log

__all__ = ["build_model", "load_space_for", "run_unseen", "TrainConfig", "eval_split", "open_split",
           "TrainResult", "train", "load_trained", "read_log"]
