"""The kit's embedded default as an mmseg dataset: rendered on first use (``prolab.datasets.synthetic``) in the
mmseg layout (``img_dir/{train,val}``, ``ann_dir/{train,val}``, PNG), with the kit's class names and palette.
The two reserved unseen classes are labelled 255 (ignore) in training images, as in the kit."""
from __future__ import annotations

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from ...datasets import load_class_names, palette

DATASET = "synthetic_outdoor"


@DATASETS.register_module()
class ProLabSyntheticDataset(BaseSegDataset):
    METAINFO = dict(classes=tuple(load_class_names(DATASET)), palette=[list(c) for c in palette(DATASET)])

    def __init__(self, data_root: str | None = None, img_suffix: str = ".png", seg_map_suffix: str = ".png",
                 **kwargs):
        if not data_root:
            from ...datasets import synthetic

            data_root = str(synthetic.generate(progress=False))
        super().__init__(data_root=data_root, img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=False, **kwargs)
