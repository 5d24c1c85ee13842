"""Class lists of the paper's datasets and of the embedded default, plus user lists."""
from .classes import (DATASETS, DatasetInfo, dataset_info, load_class_names, normalize_class_name,
                      registered_datasets)

__all__ = ["DATASETS", "DatasetInfo", "dataset_info", "load_class_names", "normalize_class_name",
           "registered_datasets"]
