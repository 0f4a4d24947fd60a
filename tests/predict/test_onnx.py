import numpy as np
import pytest

from leukodx.models import create_model
from leukodx.models.artifact import ModelBundle
from leukodx.predict import Predictor
from tests.conftest import rgb


@pytest.fixture
def bundle():
    m = create_model("efficientnet_lite0", 3, pretrained=True).eval()
    return ModelBundle(m, "efficientnet_lite0", ["a", "b", "c"], {"image_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3},
                       temperature=2.0, refer_threshold=0.9)


def test_onnx_backend_matches_torch(bundle, tmp_path):
    files = []
    for i in range(5):
        rgb(i, 80).save(tmp_path / f"{i}.png")
        files.append(tmp_path / f"{i}.png")
    t, _ = Predictor(bundle, backend="torch").predict_paths(files)
    o, _ = Predictor(bundle, backend="onnx").predict_paths(files)
    for a, b in zip(t, o):
        assert a.label == b.label and a.refer == b.refer
        assert np.allclose(list(a.probabilities.values()), list(b.probabilities.values()), atol=1e-4)
        assert a.refer == (a.probability < 0.9)


@pytest.mark.parametrize("name", ["ddrnet", "thesis_vit", "hybrid_cnn_vit", "classic_cnn"])
def test_seed_networks_export_to_onnx(name, tmp_path):
    import torch
    m = create_model(name, 3, img_size=64).eval()
    b = ModelBundle(m, name, ["a", "b", "c"], {"image_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3},
                    {"img_size": 64})
    for i in range(3):
        rgb(i, 64).save(tmp_path / f"{i}.png")
    files = sorted(tmp_path.glob("*.png"))
    t, _ = Predictor(b, backend="torch").predict_paths(files)
    o, _ = Predictor(b, backend="onnx").predict_paths(files)
    for a, c in zip(t, o):
        assert np.allclose(list(a.probabilities.values()), list(c.probabilities.values()), atol=1e-4)
    assert torch.is_tensor(m(torch.zeros(1, 3, 64, 64)))


def test_lean_onnx_predictor_matches_torch_without_importing_torch(bundle, tmp_path, bad_files):
    import subprocess
    import sys

    from leukodx.predict.lean import OnnxPredictor
    from leukodx.predict.onnx_export import export_onnx
    folder, bad = bad_files
    path = export_onnx(bundle, tmp_path / "m.onnx")
    files = sorted(folder.iterdir())
    t, _ = Predictor(bundle).predict_paths(files)
    o, errors = OnnxPredictor(path).predict_paths(files)
    assert {e["path"].rsplit("/", 1)[1] for e in errors} == bad and len(o) == len(t)
    for a, c in zip(t, o):
        assert a.label == c.label and a.refer == c.refer
        assert np.allclose(list(a.probabilities.values()), list(c.probabilities.values()), atol=1e-4)
    code = f"import sys; from leukodx.predict.lean import OnnxPredictor; OnnxPredictor('{path}'); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    (tmp_path / "junk.onnx").write_bytes(b"nope")
    with pytest.raises(Exception, match="not a readable ONNX"):
        OnnxPredictor(tmp_path / "junk.onnx")


def test_a_folder_run_gives_the_answers_of_a_single_batch_and_restores_torch_threads(bundle, tmp_path, monkeypatch):
    """More files than a batch, with a cell-finding model: the network runs on fewer threads while
    files are prepared ahead; the answers equal one big batch's, and torch's process-wide thread count
    comes back. A resize-only model (the fixture) keeps every thread and prepares between batches."""
    import torch

    from leukodx.predict import predictor as predictor_module

    files = []
    for i in range(7):
        rgb(i, 80).save(tmp_path / f"{i}.png")
        files.append(tmp_path / f"{i}.png")
    real, original = torch.set_num_threads, torch.get_num_threads()
    real(2)
    seen = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), real(n)))
    try:
        plain, _ = Predictor(bundle, batch_size=3).predict_paths(files)
        assert seen == []  # resize only: no overlap, no thread change
        monkeypatch.setattr(predictor_module, "finds_cells", lambda cfg: True)
        monkeypatch.setattr(predictor_module, "network_threads", lambda cfg=None: 1)
        small, _ = Predictor(bundle, batch_size=3).predict_paths(files)
        whole, _ = Predictor(bundle, batch_size=32).predict_paths(files)
        assert seen == [1, 2] and torch.get_num_threads() == 2  # lowered for the folder run only, then restored
    finally:
        real(original)
    assert [p.path for p in small] == [str(f) for f in files] == [p.path for p in plain]
    np.testing.assert_allclose([p.probability for p in small], [p.probability for p in whole], atol=1e-5)
    np.testing.assert_allclose([p.probability for p in plain], [p.probability for p in whole], atol=1e-5)


def test_only_cell_finding_models_leave_a_core_to_preparing(monkeypatch):
    import os

    from leukodx.predict.results import finds_cells, network_threads
    from leukodx.transforms.preprocess import PreprocessConfig

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert not finds_cells(PreprocessConfig()) and network_threads(PreprocessConfig()) == 4 == network_threads()
    assert finds_cells(PreprocessConfig(cell_centre=3.0)) and network_threads(PreprocessConfig(cell_centre=3.0)) == 3
    assert finds_cells(PreprocessConfig(mask_background=True))
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert network_threads(PreprocessConfig(cell_centre=3.0)) == 1
