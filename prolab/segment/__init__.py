"""Stage 3, the network: backbones (a registry), the UPerNet head with its property / category /
class-name-embedding projections, and the losses with their fused kernels. Training lives in ``prolab.train``,
scoring in ``prolab.evaluate``."""
from .backbones import create_backbone, mobilenetv2_torchvision_to_timm
from .losses import category_loss, property_loss
from .supervision import SUPERVISIONS, Supervision, segmentation_loss, supervision_for
from .model import ModelDefaults, SegModel, property_class_scores

__all__ = ["create_backbone", "mobilenetv2_torchvision_to_timm", "category_loss", "property_loss",
           "segmentation_loss", "SUPERVISIONS", "Supervision", "supervision_for", "ModelDefaults", "SegModel", "property_class_scores"]
