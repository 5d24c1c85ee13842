"""The authors' release files, both ways: property partitions (``property_<dataset>.json``, in ``partition``)
and mmseg 0.x segmentation checkpoints (``checkpoint``; also ``python -m prolab.interop.release.checkpoint``)."""
from .partition import (partition_report, partition_report_lines, partition_space, read_partition,
                        release_agreement_lines)

__all__ = ["partition_report", "partition_report_lines", "partition_space", "read_partition", "release_agreement_lines"]
