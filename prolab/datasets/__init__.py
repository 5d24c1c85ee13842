"""Class lists of the paper's datasets and of the embedded default, plus user lists."""
from .classes import (DATASETS, DatasetInfo, dataset_info, load_class_names, normalize_class_name, palette,
                      registered_datasets, seen_class_names, unseen_class_names)

__all__ = ["DATASETS", "DatasetInfo", "dataset_info", "load_class_names", "normalize_class_name", "palette",
           "registered_datasets", "seen_class_names", "unseen_class_names"]
