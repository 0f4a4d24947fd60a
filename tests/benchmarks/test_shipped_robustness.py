"""benchmarks/shipped_robustness.py --shifts: the rows re-scored replace the committed rows of the same set and
shift, in their places; the other rows are kept as they were; a row the committed table lacks is added."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
shipped_robustness = pytest.importorskip("shipped_robustness")


def _row(set_, shift, acc):
    return {"set": set_, "shift": shift, "n": 10, "accuracy": acc, "ci95": [acc - 0.1, acc], "referred": 0.1,
            "median_probability": 0.9}


def test_rescored_rows_take_their_places_and_the_rest_stay(tmp_path):
    committed = tmp_path / "committed.json"
    committed.write_text(json.dumps({"title": "T", "notes": ["n"], "rows": [
        _row("own test", "none", 0.97), _row("own test", "stain_macenko", 0.80), _row("lab/a", "none", 0.6)]}))
    new = {"rows": [_row("own test", "stain_macenko", 0.86), _row("lab/a", "none", 0.6), _row("lab/b", "none", 0.5)]}
    res = shipped_robustness.merged(new, committed, tmp_path / "out")
    assert [(r["set"], r["shift"], r["accuracy"]) for r in res["rows"]] == [
        ("own test", "none", 0.97), ("own test", "stain_macenko", 0.86), ("lab/a", "none", 0.6), ("lab/b", "none", 0.5)]
    assert (res["title"], res["notes"]) == ("T", ["n"])
    md = (tmp_path / "out" / "robustness.md").read_text()
    assert "| own test | stain_macenko | 10 | 0.860 [0.760, 0.860]" in md and "0.800" not in md
