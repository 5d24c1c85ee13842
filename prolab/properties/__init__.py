"""Stage 2: the property space (clustering the embedded descriptions, PropertySpace, collisions, names,
analyses). The embedders and their cache live in ``prolab.embed``."""
from .build import (DEFAULT_EMBEDDER, BuildOutput, build_property_space, default_descriptor_file,
                    default_space_path, embed_descriptions)
from .clustering import METHODS, Clustering, ClusteringDefaults, cluster
from .collisions import (NEAR, NearDefaults, find_collisions, near_collisions, overshared_properties, property_usage,
                         repair_collisions, report_lines, separate_signatures, signature_report)
from .names import llm_short_names, nearest_member_names
from .space import PropertySpace, signatures_from_assignments

__all__ = ["DEFAULT_EMBEDDER", "BuildOutput", "build_property_space", "default_descriptor_file", "default_space_path",
           "embed_descriptions", "METHODS", "Clustering", "ClusteringDefaults", "cluster", "find_collisions",
           "property_usage", "repair_collisions", "NEAR", "NearDefaults", "near_collisions", "overshared_properties",
           "report_lines", "separate_signatures", "signature_report", "llm_short_names", "nearest_member_names",
           "PropertySpace", "signatures_from_assignments"]
