"""Smear fields on generated images: VOC reading, tiling without double counts, scale from red
cells, crops, the differential and the written files."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from leukodx.data.smears import read_voc, split_fields
from leukodx.detect.detector import Detections, Detector, create_detector
from leukodx.detect.differential import differential
from leukodx.detect.outputs import CSV_COLUMNS, write_case
from leukodx.detect.scale import case_scale, field_scale
from leukodx.detect.smear import SmearCase, cell_crop
from leukodx.detect.tiles import detect_tiled, tile_origins
from leukodx.errors import LeukodxError


def blobs(image: np.ndarray) -> Detections:
    """A stand-in detector: every dark connected component is a red cell, boxed exactly."""
    from scipy import ndimage

    lab, n = ndimage.label(image[..., 0] < 128)
    boxes = [[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in ndimage.find_objects(lab)]
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), ["rbc"] * n, np.ones(n, np.float32))


def disc_field(w, h, centres, r):
    yy, xx = np.mgrid[:h, :w]
    a = np.full((h, w, 3), 230, np.uint8)
    for cx, cy in centres:
        a[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = (60, 40, 120)
    return a


def test_voc_clips_boxes_and_drops_unknown_names(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    Image.new("RGB", (100, 80)).save(tmp_path / "JPEGImages" / "f1.jpg")
    obj = "<object><name>{}</name><bndbox><xmin>{}</xmin><ymin>5</ymin><xmax>{}</xmax><ymax>40</ymax></bndbox></object>"
    xml = tmp_path / "f1.xml"
    xml.write_text("<annotation><filename>f1.jpg</filename><size><width>100</width><height>80</height></size>"
                   + obj.format("WBC", -5, 50) + obj.format("RBC", 60, 130) + obj.format("Dust", 1, 20)
                   + obj.format("Platelets", 10, 11) + "</annotation>")
    f = read_voc(xml, tmp_path / "JPEGImages")
    assert f.kinds == ["wbc", "rbc"]
    assert f.boxes.tolist() == [[0, 5, 50, 40], [60, 5, 100, 40]]
    xml.write_text("<annotation><object>")
    with pytest.raises(LeukodxError, match="unreadable VOC"):
        read_voc(xml, tmp_path / "JPEGImages")


def test_field_split_keeps_number_blocks_together(tmp_path):
    from leukodx.data.smears import SmearField

    fields = [SmearField(str(tmp_path / f"Img_{i:05d}.jpg"), np.zeros((1, 4), np.float32), ["wbc"], (64, 64))
              for i in range(120)]
    sides, protocol = split_fields(fields, tmp_path, seed=0)
    block = {i: (i - 1) // 10 for i in range(120)}  # numbers 1-10, 11-20, ... share a block
    side_of = {i: s for s, idx in sides.items() for i in idx}
    assert sum(len(v) for v in sides.values()) == 120 and all(len(v) for v in sides.values())
    for b in range(12):
        assert len({side_of[i] for i in range(120) if block[i] == b}) == 1
    assert "blocks of 10" in protocol["groups"][0]


@pytest.mark.parametrize("w,h", [(640, 480), (1500, 1000), (2000, 700)])
def test_tiles_count_every_cell_once(w, h):
    rng = np.random.default_rng(w)
    tile = (640, 480)
    xs, ys = tile_origins(w, tile[0], 288), tile_origins(h, tile[1], 288)
    # discs on and near every tile border, plus random ones
    centres = [(x + tile[0] - 144 + d, h // 2) for x in xs[:-1] for d in (-20, 0, 20)]
    centres += [(w // 3, y + tile[1] - 144 + d) for y in ys[:-1] for d in (-20, 0, 20)]
    centres += [tuple(rng.integers(50, [w - 50, h - 50])) for _ in range(10)]
    centres = [c for i, c in enumerate(centres) if all(np.hypot(c[0] - o[0], c[1] - o[1]) > 70 for o in centres[:i])]
    field = disc_field(w, h, centres, 30)
    got = detect_tiled(blobs, field, tile)
    assert len(got) == len(centres)
    assert np.allclose(np.sort(got.boxes[:, 2] - got.boxes[:, 0]), 61)  # whole discs, none cut at a tile edge
    if len(xs) * len(ys) > 1:  # a plain union of tiles would count border cells twice (or cut them)
        union = sum(len(blobs(field[y:y + tile[1], x:x + tile[0]])) for y in ys for x in xs)
        assert union > len(centres)


def test_field_scale_finds_the_zoom_that_brings_red_cells_to_training_size():
    train_rbc = 100.0

    def detector_like(image):  # sees red cells only between 70 and 140 px, like a trained detector
        d = blobs(image)
        sides = d.boxes[:, 2] - d.boxes[:, 0]
        return d.keep((sides > 70) & (sides < 140))

    field = disc_field(400, 300, [(80, 80), (200, 80), (320, 80), (80, 220), (200, 220)], 12)  # 25 px cells
    f = field_scale(detector_like, field, train_rbc, threshold=0.5)
    assert f == pytest.approx(4.0, rel=0.1)
    factor, how = case_scale(detector_like, [field], train_rbc, 0.5, pixels_per_um=2.0)
    assert factor == pytest.approx(train_rbc / 7.5 / 2.0) and "stated" in how
    factor, how = case_scale(detector_like, [np.full((300, 400, 3), 230, np.uint8)], train_rbc, 0.5)
    assert factor == 1.0 and "no red cells" in how


def test_cell_crop_is_centred_and_padded_with_background():
    field = disc_field(200, 150, [(20, 20)], 10)
    crop = np.asarray(cell_crop(field, [10, 10, 31, 31]))
    assert crop.shape == (42, 42, 3)
    assert (crop[0, 0] == 230).all()  # outside the field: background colour, not black
    assert (crop[21, 21] == (60, 40, 120)).all()


def _rows():
    rows = []
    for i in range(30):
        rows.append({"image": f"f{i % 3}.png", "box": [1, 2, 30, 40], "kind": "wbc", "score": 0.9,
                     "label": "neutrophil" if i < 20 else "lymphocyte", "probability": 0.95,
                     "refer": i >= 27, "refer_reason": "low_confidence" if i >= 27 else None})
    rows += [{"image": "f0.png", "box": [50, 50, 90, 90], "kind": "rbc", "score": 0.8, "label": "",
              "probability": None, "refer": False, "refer_reason": None}] * 7
    return rows


def test_differential_counts_non_referred_cells_with_exact_intervals():
    d = differential(_rows(), ["lymphocyte", "neutrophil", "monocyte"])
    assert d["white_cells_detected"] == 30 and d["white_cells_typed"] == 27 and d["white_cells_referred"] == 3
    t = d["per_type"]
    assert t["neutrophil"]["count"] == 20 and t["lymphocyte"]["count"] == 7 and t["monocyte"]["count"] == 0
    assert t["neutrophil"]["percent"] == pytest.approx(100 * 20 / 27)
    lo, hi = t["neutrophil"]["percent_ci95"]
    assert lo < 100 * 20 / 27 < hi and hi - lo > 20  # 27 cells: wide
    assert t["monocyte"]["percent_ci95"][0] == 0
    assert d["per_field"]["f0.png"] == {"wbc": 10, "rbc": 7, "platelet": 0}
    assert d["low_count_flag"] and "27" in d["low_count_flag"]
    assert len(d["referred"]) == 3
    assert d["lab_shift_flag"] is None  # 3 low-confidence referrals say nothing about the lab
    shifted = [{**r, "refer": True, "refer_reason": "unfamiliar_image"} if r["kind"] == "wbc" and i % 2 else r
               for i, r in enumerate(_rows())]
    flag = differential(shifted, ["lymphocyte", "neutrophil", "monocyte"])["lab_shift_flag"]
    assert flag and flag.startswith("15 of 30 white cells")


def test_case_files_are_complete(tmp_path):
    for i in range(3):
        Image.fromarray(disc_field(120, 90, [(40, 40)], 15)).save(tmp_path / f"f{i}.png")
    case = SmearCase(rows=_rows(), sizes={f"f{i}.png": (120, 90) for i in range(3)})
    out = tmp_path / "out"
    write_case(case, out, ["lymphocyte", "neutrophil", "monocyte"], {f"f{i}.png": tmp_path / f"f{i}.png" for i in range(3)},
               {"wbc_model": "m", "detector": "d"})
    with open(out / "detections.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == CSV_COLUMNS and len(rows) == 1 + 37
    from pycocotools.coco import COCO

    c = COCO()
    c.dataset = json.loads((out / "detections_coco.json").read_text())
    c.createIndex()
    assert len(c.getAnnIds(catIds=[1])) == 30 and len(c.getImgIds()) == 3
    assert sorted(p.name for p in (out / "fields").iterdir()) == ["f0.png", "f1.png", "f2.png"]
    html = (out / "report.html").read_text()
    assert "Differential count" in html and "neutrophil" in html and "Too few cells" in html
    assert not list(out.rglob("*.tmp"))


def test_detector_file_round_trip_and_refusals(tmp_path):
    thr = {"wbc": 0.6, "rbc": 0.7, "platelet": 0.5}
    det = Detector(create_detector(pretrained=False), thr, 90.0, (320, 240))
    p = det.save(tmp_path / "d.pt")
    back = Detector.load(p)
    assert (back.score_thresholds, back.rbc_diameter, back.tile) == (thr, 90.0, (320, 240))
    img = np.full((240, 320, 3), 200, np.uint8)
    a, b = det.detect(img), back.detect(img)
    assert np.allclose(a.boxes, b.boxes) and a.kinds == b.kinds
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(LeukodxError, match="not a readable"):
        Detector.load(tmp_path / "bad.pt")
    import torch

    torch.save({"format": "leukodx-detector/1", "arch": "fasterrcnn_lite0_fpn", "kinds": ["wbc", "rbc", "platelet"],
                "score_thresholds": {"wbc": 7.0, "rbc": 0.5, "platelet": 0.5}, "rbc_diameter": 90.0, "state_dict": {}}, tmp_path / "odd.pt")
    with pytest.raises(LeukodxError, match="out of range"):
        Detector.load(tmp_path / "odd.pt")


def test_average_precision_equals_pycocotools():
    from torchmetrics.detection import MeanAveragePrecision

    from leukodx.data.smears import KINDS, SmearField
    from leukodx.evaluate.detection import average_precision

    rng = np.random.default_rng(0)
    fields, preds = [], []
    for i in range(12):
        n = int(rng.integers(1, 9))
        xy = rng.uniform(0, 500, (n, 2))
        wh = rng.uniform(20, 120, (n, 2))
        truth = np.hstack([xy, xy + wh]).astype(np.float32)
        kinds = [KINDS[j] for j in rng.integers(0, 3, n)]
        fields.append(SmearField(f"f{i}.png", truth, kinds, (640, 480)))
        keep = rng.random(n) < 0.8  # some misses, jittered boxes, some wrong kinds, some false boxes
        boxes = truth[keep] + rng.normal(0, 8, (keep.sum(), 4)).astype(np.float32)
        pk = [k if rng.random() < 0.85 else KINDS[int(rng.integers(0, 3))] for k, m in zip(kinds, keep) if m]
        extra = int(rng.integers(0, 3))
        xy = rng.uniform(0, 500, (extra, 2))
        boxes = np.vstack([boxes, np.hstack([xy, xy + 50])]).astype(np.float32)
        pk += [KINDS[int(j)] for j in rng.integers(0, 3, extra)]
        preds.append(Detections(boxes, pk, rng.random(len(pk)).astype(np.float32)))
    ours = average_precision(preds, fields)
    import torch

    p_t = [{"boxes": torch.from_numpy(p.boxes), "scores": torch.from_numpy(p.scores),
            "labels": torch.tensor([KINDS.index(k) for k in p.kinds])} for p in preds]
    t_t = [{"boxes": torch.from_numpy(f.boxes), "labels": torch.tensor([KINDS.index(k) for k in f.kinds])}
           for f in fields]
    for key, ious in (("ap", None), ("ap50", [0.5])):
        m = MeanAveragePrecision(iou_type="bbox", iou_thresholds=ious, class_metrics=True, backend="pycocotools")
        m.update(p_t, t_t)
        res = m.compute()
        classes = res["classes"].tolist()
        for i, kind in enumerate(KINDS):
            assert ours[kind][key] == pytest.approx(float(res["map_per_class"][classes.index(i)]), abs=1e-6)
    assert 0 < ours["wbc"]["ap"] < ours["wbc"]["ap50"] < 1
