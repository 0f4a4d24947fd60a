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


def test_stain_rows_use_the_given_reference_and_name_it(tmp_path):
    import torch
    from PIL import Image

    from leukodx.data.synthetic import generate
    from leukodx.evaluate.robustness import shift_rows
    from leukodx.models import create_model
    from leukodx.models.artifact import ModelBundle

    torch.manual_seed(0)
    index = generate(tmp_path, n_per_class=4, size=32, classes=["a", "b"])
    b = ModelBundle(create_model("classic_cnn", 2, img_size=32).eval(), "classic_cnn", index.classes,
                    {"image_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3})
    idx = list(range(len(index.records)))
    own = shift_rows(b, index, idx, None, ["stain_reinhard"], "t", n_boot=10)[0]
    assert own["reference"] == index.key(index.records[0])
    pink = Image.new("RGB", (32, 32), (240, 200, 220))
    pink.paste((120, 40, 160), (8, 8, 24, 24))  # a stained blob on a pink background
    other = shift_rows(b, index, idx, None, ["stain_reinhard"], "t", n_boot=10, reference=("pink lab", pink))[0]
    assert other["reference"] == "pink lab" and other["n"] == own["n"]
    # a different reference gives different inputs, so the model's scores move
    assert other["median_probability"] != own["median_probability"]
