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
