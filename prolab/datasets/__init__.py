"""Class lists of the paper's datasets and of the embedded default, plus your own data (a dataset YAML).
``resolve`` says what a ``dataset`` value means (registered, YAML, class list or ``custom``)."""
from .classes import (DATASETS, DatasetInfo, class_key, dataset_info, normalize_class_name, read_class_names,
                      registered_datasets, unseen_class_names)
from .resolve import DatasetRef, dataset_key, load_class_names, palette, resolve, seen_class_names
from .spec import DatasetSpec, is_spec_path, load_spec

__all__ = ["DATASETS", "DatasetInfo", "DatasetRef", "DatasetSpec", "class_key", "dataset_info", "dataset_key",
           "is_spec_path", "load_class_names", "load_spec", "normalize_class_name", "palette", "read_class_names",
           "registered_datasets", "resolve", "seen_class_names", "unseen_class_names"]
