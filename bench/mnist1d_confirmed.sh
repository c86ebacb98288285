#!/usr/bin/env bash
# MNIST-1D with the honest protocol (issue 10): search on validation (3,600 / 400 of the official 4,000
# training sequences), confirm the top configurations with 5 fresh seeds, test accuracy of the confirmed
# winner = mean over its 5 confirm runs' checkpoints, each scored once on the official 1,000-sequence test split.
# Usage: bench/mnist1d_confirmed.sh OUT_DIR [REPO]   (runs the three sweeps side by side, one trial at a time each)
# Budgets are reduced from the example files on a shared 2-core machine (see README "MNIST-1D reference results").
set -u
out=${1:?OUT_DIR}; repo=${2:-$(cd "$(dirname "$0")/.." && pwd)}
hpo=${HPO:-/work/main/.venv/bin/hpo}
run() {  # model, extra --set pairs
  local model=$1; shift
  mkdir -p "$out/$model" && cd "$out/$model" || return
  local sets=(--set budget.max_concurrent=2)
  for pair in "$@"; do sets+=(--set "$pair"); done
  ( time HPO_HOME=$PWD/.hpo PYTHONPATH=$repo nice -n 10 "$hpo" run "$repo/examples/sweeps/mnist1d_$model.yaml" \
      "${sets[@]}" --json > result.json 2> stderr.txt ) 2> time.txt
  HPO_HOME=$PWD/.hpo PYTHONPATH=$repo "$hpo" best "mnist1d_$model" > best.txt 2>&1
}
# every sweep: two trials at a time, a 420 s search budget; the confirmation (5 seeds) has no time limit
run mlp budget.trials=12 budget.time_limit_s=420 trainer.epochs=30 &
run cnn budget.trials=8 budget.time_limit_s=420 trainer.epochs=15 confirm.top=2 &
run gru budget.trials=6 budget.time_limit_s=420 trainer.epochs=10 early_stop.grace_epochs=3 confirm.top=2 \
    'parameters.hidden.values=[64]' parameters.layers.max=1 &
wait
"$(dirname "$hpo")/python" "$(dirname "$0")/mnist1d_summary.py" "$out" > "$out/summary.txt"
