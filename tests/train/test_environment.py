"""RUN/environment.json: what a run was made with, so that two runs that disagree can be told apart."""
import json

from leukodx.train import environment as E


def test_the_key_follows_library_versions_and_threads_but_not_the_kernel_version():
    env = E.environment()
    assert env["packages"]["torch"] and env["cores"] >= 1 and env["cpu_capability"]
    key = E.environment_key(env)
    assert len(key) == 12 and E.environment_key(dict(env)) == key
    assert E.environment_key(env | {"platform": "another kernel"}) == key
    assert E.environment_key(env | {"torch_threads": env["torch_threads"] + 1}) != key
    assert E.environment_key(env | {"packages": env["packages"] | {"numpy": "0.0"}}) != key


def test_a_run_resumed_elsewhere_keeps_the_key_it_was_started_under(tmp_path, monkeypatch):
    key = E.save_environment(tmp_path)
    assert json.loads((tmp_path / "environment.json").read_text())["key"] == key
    assert E.save_environment(tmp_path) == key and "earlier" not in json.loads((tmp_path / "environment.json").read_text())
    real = E.environment
    monkeypatch.setattr(E, "environment", lambda: real() | {"cpu": "another CPU"})
    other = E.save_environment(tmp_path)
    saved = json.loads((tmp_path / "environment.json").read_text())
    assert other != key and saved["key"] == other and saved["earlier"] == [key] and saved["cpu"] == "another CPU"
    (tmp_path / "environment.json").write_text("{ cut short")  # a damaged file is replaced, not fatal
    assert E.save_environment(tmp_path) == other


def test_training_twice_with_one_config_gives_the_same_numbers(tmp_path):
    """Seeds reach every random draw (split, sampler, augmentation, initialisation): the same config in the
    same environment gives the same learning curve and test metrics, bit for bit. The seed tables rely on it."""
    from leukodx.config import TrainConfig
    from leukodx.data.synthetic import generate
    from leukodx.train.run import train

    generate(tmp_path / "data", n_per_class=16, size=48, seed=0, per_slide=4)
    cfg = TrainConfig(data=str(tmp_path / "data" / "manifest.csv"), model="classic_cnn", pretrained=False,
                      image_size=48, max_steps=30, warmup_steps=5, freeze_epochs=0, augment="robust", lr=1e-3,
                      use_hashes=False, bootstrap=50, early_stopping_patience=0, monitor="val_acc")
    runs = [tmp_path / "a", tmp_path / "b", tmp_path / "seed1"]
    for run in runs:
        train(cfg if run.name != "seed1" else TrainConfig(**(cfg.to_dict() | {"seed": 1})), run, progress=False)
    curves = [(run / "logs" / "metrics.csv").read_text() for run in runs]
    assert curves[0] == curves[1] and curves[0].count("\n") > 3
    assert curves[2] != curves[0]  # another seed: another curve, so the comparison can fail
    metrics = [json.loads((run / "test" / "metrics.json").read_text()) for run in runs]
    for k in ("accuracy", "macro_f1", "confusion_matrix", "ci95"):
        assert metrics[0][k] == metrics[1][k], k
