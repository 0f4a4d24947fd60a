"""--model names: the short names and the shipped files' own names find the shipped files; a local file or
folder of the same name wins; a name that is neither is a clear error listing the shipped models."""
import pytest

from leukodx.errors import LeukodxError
from leukodx.predict.shipped import SHIPPED, resolve_model, shipped_model


@pytest.mark.parametrize("short", sorted(SHIPPED))
def test_short_and_file_names_give_the_shipped_file(short, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stem = shipped_model(short).stem
    assert resolve_model(short) == shipped_model(short) == resolve_model(stem)
    assert resolve_model(stem, ".onnx") == shipped_model(short, ".onnx")


def test_a_local_folder_of_that_name_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wbc_type").mkdir()
    assert resolve_model("wbc_type") == tmp_path.joinpath("wbc_type").relative_to(tmp_path)


def test_an_unknown_name_lists_the_shipped_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LeukodxError, match=r"wbc_typo: no such model file or run folder .*wbc \(wbc_type\)"):
        resolve_model("wbc_typo")
