"""The plug-in's registrations (needs ``make mmseg``): import through mmengine's ``custom_imports``,

    custom_imports = dict(imports=["prolab.interop.mmseg.plugin"], allow_failed_imports=False)

and the registries gain ``ProLabBackbone`` (the kit's timm backbones and ViT-Adapter-B), ``ProLabUPerHead`` /
``ProLabFCNHead`` (property or category output, the kit's losses and class recovery),
``ProLabOneHotWarmupHook`` and ``ProLabSyntheticDataset`` (the embedded default). Configs: ``configs/mmseg/``.
With mmcv-lite, a stand-in for mmcv's compiled ops is installed first (``standins``).
"""
from .standins import install as _install_standins

STANDIN = _install_standins()

from .checkpoint import allow_mmengine_checkpoints  # noqa: E402
from .datasets import ProLabSyntheticDataset  # noqa: E402
from .hooks import ProLabClassCheckHook, ProLabOneHotWarmupHook  # noqa: E402
from .models import ProLabBackbone, ProLabFCNHead, ProLabUPerHead  # noqa: E402
from .optim import ProLabOptimWrapperConstructor  # noqa: E402

allow_mmengine_checkpoints()

__all__ = ["ProLabBackbone", "ProLabUPerHead", "ProLabFCNHead", "ProLabOneHotWarmupHook", "ProLabClassCheckHook", "ProLabSyntheticDataset",
           "ProLabOptimWrapperConstructor", "STANDIN", "allow_mmengine_checkpoints", "build_model"]


def build_model(cfg):
    """The model of an mmseg config (a Config or its path), with mmseg's modules registered and its scope set,
    as the Runner would build it."""
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    from ... import paths

    cfg = cfg if isinstance(cfg, Config) else Config.fromfile(str(paths.resolve(cfg)))
    register_all_modules(init_default_scope=True)
    return MODELS.build(cfg.model)
