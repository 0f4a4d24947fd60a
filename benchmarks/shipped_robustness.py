"""Re-score a shipped model file's robustness table without its run folder: every shift on the test side of
the grouped split its training config makes (and wbc_external for the WBC model), written to
results/NAME_robustness.{json,md} and into the robustness section of both copies of its model card.
Use it when scoring code changes (for example the referral score's order) and the weights do not.
  python benchmarks/shipped_robustness.py wbc_type       # ~30 min on 2 CPU cores
  python benchmarks/shipped_robustness.py all_severity   # ~10 min
  python benchmarks/shipped_robustness.py wbc_type --shifts stain_macenko   # only those rows; the others kept
"""
import argparse
import hashlib
import json
import shutil
import tempfile
from datetime import date
from pathlib import Path

from common import ROOT, model_and_split
from shipped_notes import INFLUENCED

from leukodx.data.recipes import load_dataset
from leukodx.evaluate.model_card import ROBUSTNESS_HEADING, replace_section, robustness_section
from leukodx.evaluate.robustness import evaluate_robustness, write_robustness
from leukodx.transforms.shifts import parse_shifts


def merged(new: dict, committed: Path, out_dir: Path) -> dict:
    """The committed table with the rows just re-scored (same set and shift) put in their places."""
    old = json.loads(committed.read_text())
    fresh = {(r["set"], r["shift"]): r for r in new["rows"]}
    rows = [fresh.pop((r["set"], r["shift"]), r) for r in old["rows"]] + list(fresh.values())
    return write_robustness(rows, out_dir, old["title"], old["notes"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=sorted(INFLUENCED))
    ap.add_argument("--shifts", default="all", help="'all', or only these shifts: their rows (and the external "
                    "ones) are re-scored and the committed file's other rows kept")
    a = ap.parse_args()
    partial = a.shifts != "all"
    model = ROOT / "src" / "leukodx" / "shipped" / f"{a.name}.pt"
    bundle, _, index, split = model_and_split(model, a.name)
    ext = load_dataset("wbc_external") if a.name == "wbc_type" else None
    with tempfile.TemporaryDirectory() as tmp:
        res = evaluate_robustness(bundle, index, split, parse_shifts(a.shifts), Path(tmp), ext)
        if partial:
            res = merged(res, ROOT / "results" / f"{a.name}_robustness.json", Path(tmp))
        for suffix in ("json", "md"):
            shutil.copyfile(Path(tmp) / f"robustness.{suffix}", ROOT / "results" / f"{a.name}_robustness.{suffix}")
    sha = hashlib.sha256(model.read_bytes()).hexdigest()[:12]
    command = f"python benchmarks/shipped_robustness.py {a.name}" + (f" --shifts {a.shifts}" if partial else "")
    scope = (f" (the {a.shifts} rows" + (" and the other labs" if ext is not None else "") + "; the rest earlier)"
             if partial else "")
    source = (f"`{command}` (the shipped model file, sha256 {sha}..., re-scored on {date.today().isoformat()}{scope} "
              "on its config's grouped split; its error AUROC and AURC rank by "
              "the referral score of that day, and where they differ from the figures under 'Calibration and referral' "
              "above, those were made with an earlier score's order: the same decisions)")
    for card in (ROOT / "results" / f"{a.name}_model_card.md", model.with_suffix(".md")):
        replace_section(card, ROBUSTNESS_HEADING, robustness_section(res, source, INFLUENCED[a.name]))
    print(f"written: results/{a.name}_robustness.md and the robustness section of both model cards")


if __name__ == "__main__":
    main()
