#!/usr/bin/env bash
# Issue 17 on a GPU machine, as one command: the CUDA / mixed-precision tests, then DDRNet vs ResNet-18/50/101
# on PBC 4 types at the papers' 224 px (benchmarks/seed_networks.py --size 224), every run at once on one GPU.
#   LEUKODX_SHARED_DATA=DIR bash benchmarks/gpu_protocol.sh [STEPS [MINUTES [SEEDS...]]]
# STEPS optimiser steps a run (2500), MINUTES the most the runs may take together (7), SEEDS (0 1).
# Writes results/ddrnet_pbc4_${SIZE}px.{md,json}; runs land in runs/seed_networks/*_px224_*; with OUT set, a copy
# of the results, the runs' records (no weights) and the logs goes there.
set -u
STEPS=${1:-2500}; MINUTES=${2:-7}; shift $(( $# < 2 ? $# : 2 )); SEEDS=${*:-0 1}
PY=${PYTHON:-python3}
export PYTHONPATH=src:benchmarks${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
SIZE=${SIZE:-224}  # another size only for a quick check of this script
LOGS=${OUT:-runs}/gpu_logs; mkdir -p "$LOGS"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, torch.cuda.get_device_name())"
$PY -m pytest -q -p no:cacheprovider tests/train/test_device.py 2>&1 | tee "$LOGS/pytest_device.txt"
$PY -c "import seed_networks as s; s.split_file('pbc4')"  # one split file before the runs start
for model in ddrnet resnet18 resnet50 resnet101; do
  for seed in $SEEDS; do
    timeout "$(( MINUTES * 60 ))" $PY benchmarks/seed_networks.py --tables ddrnet_pbc4 --models "$model" --size "$SIZE" \
      --steps "$STEPS" --lrs 0.003 --seeds "$seed" --threads 2 --workers 1 > "$LOGS/${model}_seed$seed.txt" 2>&1 &
  done
done
wait
tail -n 3 "$LOGS"/*_seed*.txt
$PY benchmarks/seed_networks.py --tables ddrnet_pbc4 --size "$SIZE" --table-only
cat results/ddrnet_pbc4_${SIZE}px.md
if [ -n "${OUT:-}" ]; then
  cp results/ddrnet_pbc4_${SIZE}px.md results/ddrnet_pbc4_${SIZE}px.json "$OUT"/
  tar czf "$OUT/runs${SIZE}px.tgz" --exclude='*.pt' --exclude='*.ckpt' --exclude='*.onnx' runs/seed_networks/*px$SIZE*
  tar czf "$OUT/logs.tgz" -C "$OUT" gpu_logs && rm -rf "$LOGS"
fi
