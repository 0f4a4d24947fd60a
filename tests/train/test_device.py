"""Training and model files on another device: the CUDA and mixed-precision path (where a GPU is present; CI has
none and skips those), and what must follow a model from one device to another (checked here with `meta`)."""
import json

import numpy as np
import pytest
import torch

from leukodx.config import TrainConfig
from leukodx.errors import ConfigError

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_workers_must_be_a_count():
    with pytest.raises(ConfigError, match="workers"):
        TrainConfig(data="x", workers=-1)


def test_the_network_and_its_unfamiliar_reference_follow_the_model_to_another_device():
    from leukodx.models import create_model
    from leukodx.models.artifact import ModelBundle

    b = ModelBundle(create_model("classic_cnn", 2, img_size=32).eval(), "classic_cnn", ["a", "b"],
                    {"image_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3})
    width = b.model.forward_head(b.model.forward_features(torch.zeros(1, 3, 32, 32)), pre_logits=True).shape[1]
    b.reference = torch.nn.functional.normalize(torch.randn(6, width), dim=1)
    on_cpu = b.net()
    assert b.net() is on_cpu and on_cpu.reference.device.type == "cpu"
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    probs, dist = b.scores(x.float())  # CPU in, numpy out
    assert probs.shape == (4, 2) and dist.shape == (4,)
    b.model.to("meta")  # a device without data: what moves with the model is visible without a GPU
    moved = b.net()
    assert moved is not on_cpu and moved.reference.device.type == "meta"


@cuda
@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_a_gpu_run_trains_in_mixed_precision_and_its_model_answers_alike_on_cpu(tmp_path, precision):
    from leukodx.data.recipes import load_dataset
    from leukodx.data.synthetic import generate
    from leukodx.data.torch_dataset import ImageDataset
    from leukodx.evaluate.evaluate_run import bundle_outputs
    from leukodx.evaluate.robustness import shift_rows
    from leukodx.explain import Explainer
    from leukodx.models.artifact import ModelBundle
    from leukodx.models.inference import model_device
    from leukodx.train.run import train
    from leukodx.transforms.preprocess import Preprocess, PreprocessConfig

    generate(tmp_path / "data", n_per_class=16, size=48, seed=0, per_slide=4)
    cfg = TrainConfig(data=str(tmp_path / "data" / "manifest.csv"), model="resnet18", pretrained=False,
                      image_size=48, max_steps=40, warmup_steps=5, freeze_epochs=0, augment="robust", lr=1e-3,
                      use_hashes=False, bootstrap=50, accelerator="gpu", precision=precision, workers=2)
    summary = train(cfg, tmp_path / "run", progress=False)
    metrics = json.loads((tmp_path / "run" / "test" / "metrics.json").read_text())
    assert torch.cuda.get_device_name() in metrics["hardware"] and metrics["steps_run"] == 40
    assert metrics["precision"] == precision
    assert np.isfinite(summary["temperature"]) and 0 <= metrics["accuracy"] <= 1

    bundle = ModelBundle.load(tmp_path / "run")  # saved from the GPU, loaded on the CPU
    assert model_device(bundle.model).type == "cpu"
    index = load_dataset(str(tmp_path / "data" / "manifest.csv"))
    images = ImageDataset(index, Preprocess(PreprocessConfig(**bundle.preprocess))).images[:24]
    on_cpu = bundle_outputs(bundle, images)
    bundle.model.cuda()
    on_gpu = bundle_outputs(bundle, images)
    for a, b in zip(on_cpu, on_gpu):  # probabilities and unfamiliar-image distances, device for device
        assert np.allclose(a, b, atol=2e-3)
    row = shift_rows(bundle, index, list(range(24)), None, ["grayscale"], "test", n_boot=20)[0]
    assert 0 <= row["accuracy"] <= 1
    assert Explainer(bundle).explain(index.records[0].path)[0].map.shape == (48, 48)
    assert model_device(bundle.model).type == "cuda"  # the explainer worked on a CPU copy
