"""Class lists of the paper's datasets and of the embedded default, plus your own data (a dataset YAML)."""
from .classes import (DATASETS, DatasetInfo, class_key, dataset_info, dataset_key, load_class_names,
                      normalize_class_name, palette, registered_datasets, seen_class_names, unseen_class_names)
from .spec import DatasetSpec, is_spec_path, load_spec

__all__ = ["DATASETS", "DatasetInfo", "DatasetSpec", "class_key", "dataset_info", "dataset_key", "is_spec_path",
           "load_class_names", "load_spec", "normalize_class_name", "palette", "registered_datasets",
           "seen_class_names", "unseen_class_names"]
