"""Robustness numbers: the group bootstrap interval and the model card's plain-language warning."""
import numpy as np

from leukodx.evaluate.model_card import robustness_section
from leukodx.evaluate.robustness import accuracy_ci


def test_accuracy_ci_contains_the_mean_and_widens_with_fewer_groups():
    correct = np.r_[np.ones(80), np.zeros(20)]
    lo, hi = accuracy_ci(correct, n_boot=500)
    assert lo < 0.8 < hi
    groups = np.repeat(np.arange(5), 20)  # five groups, each all right or all wrong: few independent units
    glo, ghi = accuracy_ci(correct, groups, n_boot=500)
    assert ghi - glo > hi - lo


def _row(set_name, acc):
    return {"set": set_name, "shift": "none", "n": 100, "accuracy": acc, "ci95": [acc - 0.05, acc + 0.05],
            "referred": 0.1, "median_probability": 0.93}


def test_card_warns_when_other_labs_fail_and_only_then():
    res = {"notes": ["n"], "rows": [_row("pbc test", 0.97), _row("wbc_external/tecom", 0.16)]}
    text = "\n".join(robustness_section(res, "x"))
    assert "Not ready for other labs' images" in text and "tecom: 16% right" in text
    res["rows"][1] = _row("wbc_external/tecom", 0.9)
    assert "Not ready" not in "\n".join(robustness_section(res, "x"))
