"""Weakly open-vocabulary semantic segmentation: PGSeg (Zhang et al., "Uncovering Prototypical Knowledge for
Weakly Open-Vocabulary Semantic Segmentation", NeurIPS 2023, arXiv 2310.19001) beside ProLab.

ProLab builds prototypes from text (properties) and supervises pixels with masks; PGSeg learns to segment from
image-text pairs alone, with prototypes extracted from the image features themselves. This stage holds the parts
of PGSeg in the kit's own code (GroupViT's code is under NVIDIA's non-commercial licence and PGSeg's repository
ships none, so nothing is copied from either):

- ``grouping``: the straight-through hard assignment of tokens to group tokens (Gumbel-softmax in training, the
  soft assignment at evaluation) and the composition of two grouping stages into one pixel -> group map;
- ``npr``: non-learnable prototypical regularisation: prototypes by EM over a stage's tokens, matched one to one
  with the group centres (Hungarian), the prototype-guidance loss L_PG with its hard-rejection threshold phi, and
  EMA prototypes; ``released_code=True`` reproduces the official code's departures from the paper;
- ``captions``: training captions built from image-level labels (classes covering a minimum share of the image,
  unseen classes never named) and the label-aware (multi-positive) contrastive loss they need;
- ``model``: the GroupViT network on transformers' ``GroupViTModel`` (``paper`` preset: GroupViT-S; ``cpu``
  preset: the same shape shrunk), its per-stage assignments and its group embeddings;
- ``zero_shot``: the GroupViT/PGSeg evaluation protocol (groups named by softmax over cosine x logit scale,
  restricted to the image's top-k classes, a background threshold) and the oracle naming (each group given its
  majority class), which measures grouping apart from naming;
- ``baselines``: trivial groupings (one group per image, a square grid) scored by oracle naming with the kit's
  metrics, the bar a trained grouping must clear (``python -m prolab.wovss.baselines``);
- ``train``: the CPU model (ImageNet MobileNetV2 tokens -> GroupViT's grouping stages; frozen MiniLM captions ->
  a projection), its losses, training and evaluation; ``runs``: its run folders (``prolab wovss train|evaluate``);
- ``inspect``: group maps, EM clusters, the matching matrix and the kept share against phi (notebook 14);
- ``checkpoints``: the released GroupViT and PGSeg checkpoints and transformers' hub layout into the network;
- ``shards``: image-caption pairs streamed from WebDataset shards (CC3M / CC12M / RedCaps as img2dataset writes them);
- ``benchmarks``: the zero-shot benchmarks (VOC, Pascal Context, COCO-Object) in the layouts their evaluation reads.

Not built yet: training at the paper's scale (the loop over the shards on GPUs, CLIP's tokenizer, the schedule);
``docs/stages/wovss.md`` says what there is.
"""
from .captions import TEMPLATES, caption, image_labels, multi_positive_infonce, positives_from_labels
from .grouping import compose_assignments, gumbel_softmax, hard_softmax, token_assignment
from .npr import (EMAPrototypes, PGLoss, em_prototypes, match_prototypes, pg_loss)
from .zero_shot import name_groups, oracle_labels, pixel_labels

__all__ = ["TEMPLATES", "caption", "image_labels", "multi_positive_infonce", "positives_from_labels",
           "compose_assignments", "gumbel_softmax", "hard_softmax", "token_assignment", "EMAPrototypes", "PGLoss",
           "em_prototypes", "match_prototypes", "pg_loss", "name_groups", "oracle_labels", "pixel_labels"]
