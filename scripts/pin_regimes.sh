#!/usr/bin/env bash
# Behaviour pin for restructures: run each regime's default config (seed 0) plus short runs of
# the other self-supervised objectives and a LoRA + MT-DNN refinement run from source tree SRC,
# writing OUT/<name>/metrics.jsonl. Compare two pins with scripts/compare_trajectories.py.
#   scripts/pin_regimes.sh SRC OUT [PYTHON]
set -u
SRC=$(cd "$1" && pwd); OUT=$2; PY=${3:-$SRC/.venv/bin/python}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
cd "$SRC"
run() {
  name=$1; shift; rm -rf "$OUT/$name"
  /usr/bin/time -f "$name %e s" "$PY" launch.py "$@" --workdir="$OUT/$name" \
    --config.train.progress=False > "$OUT/$name.log" 2>&1
  tail -1 "$OUT/$name.log"
}
run multitask --regime=multitask
run supervised_sequential --regime=supervised_sequential
run unsupervised_sequential --regime=unsupervised_sequential
run self_supervised --regime=self_supervised
run consistency --regime=self_supervised --config.objective=consistency \
  --config.train.steps=40 --config.train.log_every=2
run cvt --regime=self_supervised --config=configs/self_supervised_cvt.py \
  --config.train.steps=40 --config.train.log_every=2
run mt_lora_refine --regime=multitask --config.optim.strategy=lora --config.train.steps=30 \
  --config.refine.steps=10 --config.train.log_every=2 --config.train.eval_every=10
