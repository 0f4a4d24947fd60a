#!/usr/bin/env bash
# Re-train a shipped model from scratch (fixed seed in configs/NAME.yaml), write its results and model
# card, and install it as a default `leukodx predict` model.
#   benchmarks/shipped_model.sh all_severity   # ~15 min on 2 CPU cores
#   benchmarks/shipped_model.sh wbc_type       # ~30 min on 2 CPU cores
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${1:?usage: benchmarks/shipped_model.sh all_severity|wbc_type}
case "$NAME" in
  all_severity) TITLE="leukodx ALL severity model (Benign / Early / Pre / Pro)" ;;
  wbc_type) TITLE="leukodx WBC type model (8 PBC classes)" ;;
  *) echo "unknown shipped model '$NAME'" >&2; exit 2 ;;
esac
RUN=${RUN:-runs/$NAME}
.venv/bin/leukodx train --config "configs/$NAME.yaml" --out "$RUN"
mkdir -p results src/leukodx/shipped
cp "$RUN/test/metrics.json" "results/${NAME}_metrics.json"
.venv/bin/python -c "from leukodx.evaluate.model_card import write_model_card as w; w('$RUN', 'results/${NAME}_model_card.md', '$TITLE')"
cp "results/${NAME}_model_card.md" "src/leukodx/shipped/$NAME.md"
cp "$RUN/model.pt" "src/leukodx/shipped/$NAME.pt"
.venv/bin/leukodx export "src/leukodx/shipped/$NAME.pt" --out "src/leukodx/shipped/$NAME.onnx"
.venv/bin/python benchmarks/shipped_table.py
