#!/usr/bin/env bash
# Regenerates every committed descriptor file with the packaged Qwen2.5-Coder-1.5B GGUF on the CPU.
# Resumable: every finished LLM call is in descriptors/cache/calls.jsonl, so a re-run after a kill repeats none.
# Smallest datasets first, so a partial run already serves the embedded default and the prompt ablation.
# Exit code 3 from `prolab describe` means some classes failed; they are listed in the sidecar, and we go on.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
describe() { $PY -m prolab describe --backend llama_cpp --cache_path descriptors/cache/calls.jsonl "$@" || [ $? -eq 3 ]; }
# The committed structured files: prompt names where a bare mmseg name is ambiguous (ADE20K tank -> storage tank)
# and sampled replies pooled (de-duplicated by MiniLM cosine) until every class has at least 8 descriptions.
POOLED=(--prompt_names --min_pooled 8 --max_samples 4 --pool_embedder all-MiniLM-L6-v2)
describe --prompt structured "${POOLED[@]}" --dataset synthetic_outdoor cityscapes_19 bdd100k_19
describe --prompt naive --dataset cityscapes_19
# prompt-design notebook: the single-message version 1 of the structured prompt on a few classes
describe --prompt structured_single --dataset descriptors/prompt_design_classes.txt
describe --prompt structured --dataset descriptors/prompt_design_classes.txt
describe --prompt structured "${POOLED[@]}" --dataset pascal_context_59 ade20k_150 coco_stuff_171
describe --prompt naive --dataset synthetic_outdoor   # prompt axis of the demo ablation grid
describe --prompt naive --dataset descriptors/prompt_design_classes.txt   # notebook 01 side by side
