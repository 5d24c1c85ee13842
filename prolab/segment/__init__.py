"""Stage 3: segmentation with property-level or category-level supervision (backbones, UPerNet head, losses,
training, evaluation)."""
from .backbones import create_backbone, mobilenetv2_torchvision_to_timm
from .evaluate import EvalResult, confusion_matrix, evaluate, metrics_from_confusion, save_results
from .losses import category_loss, property_loss, segmentation_loss
from .model import ModelDefaults, SegModel, property_class_scores
from .train import TrainConfig, load_trained, open_split, read_log, train

__all__ = ["create_backbone", "mobilenetv2_torchvision_to_timm", "EvalResult", "confusion_matrix", "evaluate",
           "metrics_from_confusion", "save_results", "category_loss", "property_loss", "segmentation_loss",
           "ModelDefaults", "SegModel", "property_class_scores", "TrainConfig", "load_trained", "open_split",
           "read_log", "train"]
