#!/usr/bin/env bash
# Re-train the shipped smear-field detector (configs/bccd_detector.yaml, fixed seed), install it with
# its ONNX export, run benchmarks/smear.py and write its model card.
#   benchmarks/shipped_detector.sh          # ~40 min training on 2 CPU cores, ~5 min benchmark
# STAGE=bench benchmarks/shipped_detector.sh skips training (reuses runs/bccd_detector).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/bccd_detector}
[ "${STAGE:-train}" = bench ] || .venv/bin/leukodx train-detector --config configs/bccd_detector.yaml --out "$RUN"
cp "$RUN/detector.pt" src/leukodx/shipped/smear_detector.pt
.venv/bin/leukodx export src/leukodx/shipped/smear_detector.pt --out src/leukodx/shipped/smear_detector.onnx
.venv/bin/python benchmarks/smear.py
.venv/bin/python -c "from leukodx.evaluate.model_card import write_detector_card as w; w('results/smear_detector.json', 'results/smear_detector_model_card.md')"
cp results/smear_detector_model_card.md src/leukodx/shipped/smear_detector.md
