#!/usr/bin/env bash
# Regenerates every committed descriptor file with the packaged Qwen2.5-Coder-1.5B GGUF on the CPU.
# Resumable: every finished LLM call is in descriptors/cache/calls.jsonl, so a re-run after a kill repeats none.
# Smallest datasets first, so a partial run already serves the embedded default and the prompt ablation.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY -m prolab describe --backend llama_cpp --prompt structured --dataset synthetic_outdoor cityscapes_19 bdd100k_19
$PY -m prolab describe --backend llama_cpp --prompt naive --dataset cityscapes_19
$PY -m prolab describe --backend llama_cpp --prompt structured --dataset pascal_context_59 ade20k_150 coco_stuff_171
