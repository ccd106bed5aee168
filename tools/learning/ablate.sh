#!/bin/sh
# One ablation row: train configs/$CONFIG with the given --set overrides for
# $STEPS steps, then evaluate the target (and context) encoder with the
# demo's probe protocol (first $TRAIN_LIMIT training images, $TEST_LIMIT test
# images). Appends one line to $TABLE.
#
#   tools/learning/ablate.sh NAME [key=value ...]
#
# Environment: CONFIG (configs/fmnist-tiny.yaml), STEPS (1000), TRAIN_LIMIT
# (10000), TEST_LIMIT (10000), OUT (results/ablate), TABLE ($OUT/table.tsv),
# HJEPA (bin/hjepa).
set -eu
name=$1; shift
CONFIG=${CONFIG:-configs/fmnist-tiny.yaml}
STEPS=${STEPS:-1000}
TRAIN_LIMIT=${TRAIN_LIMIT:-10000}
TEST_LIMIT=${TEST_LIMIT:-10000}
OUT=${OUT:-results/ablate}
TABLE=${TABLE:-$OUT/table.tsv}
HJEPA=${HJEPA:-bin/hjepa}
dir=$OUT/$name
rm -rf "$dir"
mkdir -p "$dir"
sets="--set training.max_steps=$STEPS --set logging.progress=false"
for kv in "$@"; do sets="$sets --set $kv"; done
start=$(date +%s)
# shellcheck disable=SC2086
$HJEPA train --config "$CONFIG" $sets --out "$dir" > "$dir/train.out" 2>&1
mid=$(date +%s)
# shellcheck disable=SC2086
$HJEPA eval --config "$CONFIG" $sets --set evaluation.train_limit=$TRAIN_LIMIT --set evaluation.test_limit=$TEST_LIMIT \
  --checkpoint "$dir/checkpoints/checkpoint_latest" ${EVAL_FLAGS:-} --out "$dir/eval.json" > "$dir/eval.out" 2>&1
end=$(date +%s)
rankme=$(grep '"rankme"' "$dir/metrics.jsonl" | tail -1 | sed 's/.*"rankme":\([0-9.e+-]*\).*/\1/')
alarms=$(grep -c 'collapse alarm' "$dir/logs/train.log" || true)
printf '%s\t%s\ttrain %ss eval %ss\trankme %s\talarms %s\t%s\n' "$name" "$(grep -E 'linear probe' "$dir/eval.out" | sed 's/  */ /g' | tr '\n' '|')" \
  $((mid - start)) $((end - mid)) "$rankme" "$alarms" "$*" >> "$TABLE"
tail -1 "$TABLE"
