#!/usr/bin/env bash
# Re-train the shipped ALL-severity model from scratch (fixed seed), write its results and model card,
# and install it as the default `leukodx predict` model. About 15 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/all_severity}
.venv/bin/leukodx train --config configs/all_severity.yaml --out "$RUN"
mkdir -p results src/leukodx/shipped
cp "$RUN/test/metrics.json" results/all_severity_metrics.json
.venv/bin/python -c "from leukodx.evaluate.model_card import write_model_card as w; w('$RUN', 'results/all_severity_model_card.md', 'leukodx ALL severity model (Benign / Early / Pre / Pro)')"
cp results/all_severity_model_card.md src/leukodx/shipped/all_severity.md
cp "$RUN/model.pt" src/leukodx/shipped/all_severity.pt
