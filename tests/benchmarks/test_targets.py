"""benchmarks/targets.py: the scoreboard of the open issues' targets is read from the committed results files,
judges each number against its goal, and the committed scoreboard is the one those files give today."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
targets = pytest.importorskip("targets")


def test_goals_are_judged_both_ways():
    assert targets.at_least(13, "x", 0.86, 0.85, "f")["met"]
    missed = targets.at_least(13, "x", 0.849, 0.85, "f")
    assert not missed["met"] and missed["measured"] == "0.849" and missed["goal"] == ">= 0.85"


def test_every_issue_has_rows_and_every_source_exists():
    rows = targets.all_targets()
    assert {r["issue"] for r in rows} == {13, 14, 17}
    for r in rows:
        first = r["source"].split(",")[0].split("{")[0].strip()
        assert (ROOT / first).exists() or list(ROOT.glob(first)) or "*" in first, r


def test_committed_scoreboard_matches_the_results_files():
    committed = json.loads((ROOT / "results" / "targets.json").read_text())["rows"]
    assert committed == targets.all_targets(), "results changed: run python benchmarks/targets.py and commit"
