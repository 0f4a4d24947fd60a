#!/usr/bin/env bash
# Re-train a shipped model from scratch (fixed seed in configs/NAME.yaml), write its results, its
# robustness table (shifts on the test split; other labs for the WBC model) and model card, and
# install it as a default `leukodx predict` model.
#   benchmarks/shipped_model.sh all_severity   # ~15 min training on 2 CPU cores, ~10 min robustness
#   benchmarks/shipped_model.sh wbc_type       # ~20 min training on 2 CPU cores (96 px), ~15 min robustness
# STAGE=robustness benchmarks/shipped_model.sh NAME skips training (reuses runs/NAME).
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${1:?usage: benchmarks/shipped_model.sh all_severity|wbc_type}
case "$NAME" in
  all_severity) TITLE="leukodx ALL severity model (Benign / Early / Pre / Pro)"; EXT="" ;;
  wbc_type) TITLE="leukodx WBC type model (8 PBC classes)"; EXT="--external wbc_external" ;;
  *) echo "unknown shipped model '$NAME'" >&2; exit 2 ;;
esac
RUN=${RUN:-runs/$NAME}
[ "${STAGE:-train}" = robustness ] || .venv/bin/leukodx train --config "configs/$NAME.yaml" --out "$RUN"
[ -f "$RUN/robustness/robustness.json" ] && [ "$RUN/robustness/robustness.json" -nt "$RUN/model.pt" ] || \
  .venv/bin/leukodx evaluate "$RUN" --shifts all $EXT --out "$RUN/robustness"
mkdir -p results src/leukodx/shipped
cp "$RUN/test/metrics.json" "results/${NAME}_metrics.json"
cp "$RUN/robustness/robustness.json" "results/${NAME}_robustness.json"
cp "$RUN/robustness/robustness.md" "results/${NAME}_robustness.md"
.venv/bin/python - "$RUN" "$NAME" "$TITLE" <<'PY'
import sys
sys.path.insert(0, "benchmarks")
from leukodx.evaluate.model_card import write_model_card
from shipped_notes import INFLUENCED
run, name, title = sys.argv[1:]
write_model_card(run, f"results/{name}_model_card.md", title, INFLUENCED[name])
# the intervention audit (benchmarks/cell_removal.py) stays in the card while the model file is the one it scored
import hashlib
import json
from pathlib import Path
from leukodx.evaluate.model_card import CELL_REMOVAL_HEADING, cell_removal_section, replace_section
cr = Path("results/cell_removal.json")
r = json.loads(cr.read_text())["models"].get(name) if cr.is_file() else None
if r and r.get("sha256") == hashlib.sha256(Path(f"{run}/model.pt").read_bytes()).hexdigest():
    replace_section(f"results/{name}_model_card.md", CELL_REMOVAL_HEADING, cell_removal_section(r, str(cr)))
PY
cp "results/${NAME}_model_card.md" "src/leukodx/shipped/$NAME.md"
cp "$RUN/model.pt" "src/leukodx/shipped/$NAME.pt"
.venv/bin/leukodx export "src/leukodx/shipped/$NAME.pt" --out "src/leukodx/shipped/$NAME.onnx"
# the shortcut audit (benchmarks/explain_benchmark.py) stays in both cards while the weights are the ones it explained
.venv/bin/python benchmarks/explain_benchmark.py "$NAME" --cards || echo "shortcut audit left out of the card: re-run benchmarks/explain_benchmark.py $NAME"
.venv/bin/python benchmarks/shipped_table.py
