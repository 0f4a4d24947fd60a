from pathlib import Path

import pytest
from PIL import Image

from leukodx.data import from_folder, from_manifest, load_dataset, load_recipe, write_manifest
from leukodx.data.download import download_dataset
from leukodx.errors import LeukodxError
from tests.conftest import rgb, shared


def _tree(root: Path, names: dict[str, list[str]]):
    for cls, files in names.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(files):
            rgb(i).save(root / cls / f)


def test_folder_and_manifest_roundtrip(tmp_path):
    _tree(tmp_path / "ds", {"a": ["1.png", "2.png"], "b": ["3.png"]})
    idx = from_folder(tmp_path / "ds")
    assert idx.classes == ["a", "b"] and idx.counts() == {"a": 2, "b": 1}
    write_manifest(idx, tmp_path / "m.csv")
    back = from_manifest(tmp_path / "m.csv")
    assert back.counts() == idx.counts()
    assert load_dataset(str(tmp_path / "m.csv")).counts() == idx.counts()


def test_manifest_relative_paths_and_groups(tmp_path):
    _tree(tmp_path, {"x": ["a.png", "b.png"]})
    (tmp_path / "m.csv").write_text("path,label,group\nx/a.png,ALL,p1\nx/b.png,hem,p2\n")
    idx = from_manifest(tmp_path / "m.csv")
    assert [r.group for r in idx.records] == ["p1", "p2"] and Path(idx.records[0].path).is_file()


def test_missing_dataset_is_clear_error(tmp_path):
    with pytest.raises(LeukodxError, match="not found"):
        load_dataset(str(tmp_path / "nope"))
    with pytest.raises(LeukodxError, match="unknown dataset recipe"):
        load_recipe("nope")


def test_cnmc_patient_ids_parsed(tmp_path):
    _tree(tmp_path / "fold_0", {"all": ["UID_11_10_1_all.bmp", "UID_11_12_2_all.bmp"], "hem": ["UID_H10_43_1_hem.bmp"]})
    idx = load_recipe("cnmc", tmp_path)
    assert idx.classes == ["ALL", "hem"]
    assert sorted(r.group for r in idx.records) == ["patient_11", "patient_11", "patient_H10"]


def test_allidb2_label_from_suffix(tmp_path):
    d = tmp_path / "img"
    d.mkdir()
    for n in ("Im001_1.tif", "Im002_0.tif"):
        rgb(1).save(d / n)
    idx = load_recipe("allidb2", tmp_path)
    assert {Path(r.path).name: idx.classes[r.label] for r in idx.records} == {"Im001_1.tif": "ALL", "Im002_0.tif": "healthy"}


def test_bccd_crops_from_voc(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "Annotations").mkdir()
    Image.new("RGB", (64, 48), "white").save(tmp_path / "JPEGImages" / "f1.jpg")
    (tmp_path / "Annotations" / "f1.xml").write_text(
        "<annotation><filename>f1.jpg</filename><size><width>64</width><height>48</height></size>"
        "<object><name>WBC</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>40</xmax><ymax>70</ymax></bndbox></object>"
        "<object><name>RBC</name><bndbox><xmin>30</xmin><ymin>10</ymin><xmax>60</xmax><ymax>40</ymax></bndbox></object>"
        "</annotation>")
    idx = load_recipe("bccd", tmp_path)
    wbc = next(r for r in idx.records if idx.classes[r.label] == "WBC")
    assert wbc.box == (2, 2, 40, 48)  # clipped at the image edge
    assert {r.group for r in idx.records} == {"f1"}


def test_white_cell_crops_are_squares_around_the_wbc_boxes_clipped_to_the_field(tmp_path):
    from leukodx.data.smears import white_cell_crops

    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "Annotations").mkdir()
    Image.new("RGB", (100, 80), "white").save(tmp_path / "JPEGImages" / "f1.jpg")
    obj = "<object><name>{}</name><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>"
    (tmp_path / "Annotations" / "f1.xml").write_text(
        "<annotation><filename>f1.jpg</filename><size><width>100</width><height>80</height></size>"
        + obj.format("WBC", 40, 30, 60, 50) + obj.format("WBC", 0, 0, 10, 10) + obj.format("RBC", 70, 60, 90, 78)
        + "</annotation>")
    crops = white_cell_crops(tmp_path, n=5, factor=2)
    assert sorted(c.shape for c in crops) == [(15, 15, 3), (40, 40, 3)]  # 2 x 20 px around (50, 40); the corner one clipped
    assert len(white_cell_crops(tmp_path, n=1)) == 1
    (tmp_path / "Annotations" / "f1.xml").write_text(
        "<annotation><filename>f1.jpg</filename>" + obj.format("RBC", 70, 60, 90, 78) + "</annotation>")
    with pytest.raises(LeukodxError, match="no white-cell boxes"):
        white_cell_crops(tmp_path)


def test_download_from_local_zip(tmp_path):
    import zipfile
    z = tmp_path / "bccd.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("BCCD_Dataset-master/BCCD/Annotations/a.xml", "<annotation/>")
    out = download_dataset("bccd", tmp_path / "dest", url=z.as_uri())
    assert (out / "Annotations" / "a.xml").is_file()
    with pytest.raises(LeukodxError, match="cannot be downloaded automatically"):
        download_dataset("taleqani_all", tmp_path / "dest")


def test_real_taleqani_recipe_counts():
    shared("taleqani_all")
    idx = load_recipe("taleqani_all")
    assert idx.counts() == {"Benign": 379, "Early": 785, "Pre": 763, "Pro": 629}
    binary = load_recipe("taleqani_binary")
    assert binary.counts() == {"Benign": 379, "Malignant": 785 + 763 + 629}


def test_real_pbc_views():
    shared("pbc192")
    assert len(load_recipe("pbc")) == 14524
    assert load_recipe("pbc4").classes == ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]


def test_real_bccd_crops():
    shared("bccd_smears")
    idx = load_recipe("bccd")
    assert idx.counts()["WBC"] >= 300 and all(r.box for r in idx.records)


def test_real_wbc_external_recipe():
    shared("wbc_external")
    from leukodx.data.recipes import lab_of
    idx = load_dataset("wbc_external")
    assert idx.classes == ["basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil"] and len(idx) == 400
    labs = [lab_of(idx, r) for r in idx.records]
    assert labs.count("tecom") == 300 and labs.count("cellavision_blog") == 100


def test_zip_bombs_and_escaping_paths_are_refused(tmp_path):
    import zipfile

    from leukodx.data.download import safe_extract
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/zeros.bin", b"\0" * (64 * 2**20))
    assert bomb.stat().st_size < 2**20
    with pytest.raises(LeukodxError, match="zip bomb"):
        safe_extract(bomb, tmp_path / "out")
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../escaped.png", b"x")
    with pytest.raises(LeukodxError, match="unsafe path"):
        safe_extract(evil, tmp_path / "out2")
    assert not (tmp_path / "escaped.png").exists()
    many = tmp_path / "big.zip"
    with zipfile.ZipFile(many, "w") as z:
        z.writestr("a.bin", b"\1" * 4096)
        z.writestr("b.bin", b"\2" * 4096)
    with pytest.raises(LeukodxError, match="more than"):
        safe_extract(many, tmp_path / "out3", max_bytes=6000)
