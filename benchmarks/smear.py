"""Smear-field benchmark (issue 15). Writes results/smear_detector.{json,md}.

    python benchmarks/smear.py [--detector src/leukodx/shipped/smear_detector.pt] [--onnx ...onnx]

On the detector's own grouped test fields (split remade from the protocol in its file):
- learned detector vs the classical baseline (stain threshold + connected components);
- the same fields downscaled 2x / 3x / 4x (another magnification), through the whole pipeline:
  scale measured from red cells, field resized, tiled detection; boxes compared at the small scale;
- a mosaic of 2 x 2 test fields (1280 x 960, larger than the detector input): tiled, counts vs truth;
- speed end to end (detector + WBC typing) on 2 CPU threads, torch and ONNX Runtime.
"""
import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from leukodx.data.smears import KINDS, SmearField, load_smear_fields, smear_root, split_fields
from leukodx.detect.classical import ClassicalDetector
from leukodx.detect.detector import Detections, Detector
from leukodx.detect.scale import case_scale
from leukodx.detect.smear import SmearAnalyzer
from leukodx.evaluate.detection import detection_metrics
from leukodx.predict.predictor import Predictor
from leukodx.predict.shipped import shipped_model

ROOT = Path(__file__).resolve().parents[1]


def load(f: SmearField, k: float = 1.0) -> np.ndarray:
    im = Image.open(f.path).convert("RGB")
    if k != 1:
        im = im.resize((round(im.width / k), round(im.height / k)), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(im)


def shrunk(f: SmearField, k: float) -> SmearField:
    return SmearField(f.path, f.boxes / k, f.kinds, (round(f.size[0] / k), round(f.size[1] / k)))


def row(m: dict) -> dict:
    return {k: {x: m["per_kind"][k][x] for x in ("ap50", "ap50_ci", "ap", "recall", "recall_ci", "precision",
                                                 "precision_ci", "count_abs_error_per_field")} for k in KINDS}


def magnification(an: SmearAnalyzer, det, test: list[SmearField], k: float) -> dict:
    images = [load(f, k) for f in test]
    scale, how = case_scale(an.detect, images, det.rbc_diameter, det.score_thresholds["rbc"])
    preds = []
    for im in images:
        d = an.detect(np.asarray(Image.fromarray(im).resize((round(im.shape[1] * scale), round(im.shape[0] * scale)),
                                                            Image.Resampling.BILINEAR)))
        preds.append(Detections(d.boxes / np.float32(scale), d.kinds, d.scores))
    m = detection_metrics(preds, [shrunk(f, k) for f in test], det.score_thresholds)
    return {"downscale": k, "estimated_zoom": scale, "true_zoom": k, "scale_note": how, **row(m)}


def mosaic(an: SmearAnalyzer, det, test: list[SmearField], n: int = 8) -> dict:
    rows = []
    for i in range(0, min(len(test) - 3, 4 * n), 4):
        four = test[i:i + 4]
        ims = [load(f) for f in four]
        big = np.concatenate([np.concatenate(ims[:2], 1), np.concatenate(ims[2:], 1)], 0)
        d = an.detect(big)
        d = d.confident(det.score_thresholds)
        single = [an.detect(im) for im in ims]
        rows.append({"fields": [Path(f.path).name for f in four],
                     **{f"{k}_true": sum(f.count(k) for f in four) for k in KINDS},
                     **{f"{k}_mosaic": d.kinds.count(k) for k in KINDS},
                     **{f"{k}_fields_one_by_one": sum(s.confident(det.score_thresholds).kinds.count(k)
                                                     for s in single) for k in KINDS}})
    return {"mosaics": rows, "size": [1280, 960]}


def speed(an: SmearAnalyzer, test: list[SmearField], n: int = 20) -> dict:
    paths = [f.path for f in test[:n]]
    an.analyse(paths[:2])  # warm-up
    t = time.perf_counter()
    case = an.analyse(paths)
    s = time.perf_counter() - t
    return {"fields": len(paths), "seconds": round(s, 2), "fields_per_second": round(len(paths) / s, 2),
            "white_cells_typed": sum(r["kind"] == "wbc" for r in case.rows)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--detector", default=str(shipped_model("smear")))
    ap.add_argument("--onnx", default=str(shipped_model("smear", ".onnx")))
    a = ap.parse_args()
    torch.set_num_threads(2)
    det = Detector.load(a.detector)
    root = smear_root(det.info.get("data", "bccd_smears"))
    fields = load_smear_fields(root)
    p = det.info["split"]
    sides, _ = split_fields(fields, root, p["seed"], p["val_frac"], p["test_frac"])
    test = [fields[i] for i in sides["test"]]
    wbc = Predictor.load(shipped_model("wbc"))
    an = SmearAnalyzer(det, wbc)
    res = {"detector": a.detector, "detector_sha256": hashlib.sha256(Path(a.detector).read_bytes()).hexdigest(),
           "test_fields": len(test), "split": p, "machine": f"{platform.processor() or platform.machine()}, 2 torch threads",
           "score_thresholds": det.score_thresholds, "command": "python benchmarks/smear.py"}
    res["learned"] = row(detection_metrics([det.detect(load(f)) for f in test], test, det.score_thresholds))
    classic = ClassicalDetector(det.rbc_diameter)
    res["classical"] = row(detection_metrics([classic.detect(load(f)) for f in test], test, dict.fromkeys(KINDS, 0.5)))
    res["magnification"] = [magnification(an, det, test, k) for k in (2, 3, 4)]
    res["mosaic"] = mosaic(an, det, test)
    res["speed"] = {"torch": speed(an, test)}
    if Path(a.onnx).is_file():
        from leukodx.detect.onnx_runtime import OnnxDetector
        onnx_an = SmearAnalyzer(OnnxDetector(a.onnx), Predictor.load(shipped_model("wbc"), backend="onnx",
                                                                   onnx_path=shipped_model("wbc", ".onnx")))
        res["speed"]["onnx"] = speed(onnx_an, test)
        res["onnx_learned"] = row(detection_metrics([onnx_an.detector.detect(load(f)) for f in test], test,
                                                    det.score_thresholds))
    out = ROOT / "results" / "smear_detector.json"
    out.write_text(json.dumps(res, indent=1))
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))


def _ci(v, ci) -> str:
    return "-" if v is None else f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def markdown(r: dict) -> str:
    L = ["# Smear-field detector (issue 15)", "",
         (f"Detector `{Path(r['detector']).name}` (sha256 {r['detector_sha256'][:12]}): Faster R-CNN, EfficientNet-Lite0 "
         "+ FPN backbone with the offline ImageNet weights, trained on BCCD train fields only. Test: "
         f"{r['test_fields']} BCCD fields of a grouped split by field (blocks of 10 consecutive field numbers + "
         f"near-duplicates; seed {r['split']['seed']}). 95% CIs by bootstrap over fields. Score thresholds "
         f"{r['score_thresholds']} (per kind, chosen on the val fields). Command: `{r['command']}`."), "",
         "## Learned detector vs classical baseline (test fields at their own scale)", "",
         "| detector | kind | AP@0.5 | AP@[.5:.95] | recall | precision | count error per field |", "|---|---|---|---|---|---|---|"]
    for name in ("learned", "classical", "onnx_learned"):
        if name not in r:
            continue
        for k in KINDS:
            x = r[name][k]
            L.append(f"| {name.replace('_', ' ')} | {k} | {_ci(x['ap50'], x['ap50_ci'])} | {_ci(x['ap'], None)} | "
                     f"{_ci(x['recall'], x['recall_ci'])} | {_ci(x['precision'], x['precision_ci'])} | "
                     f"{x['count_abs_error_per_field']:.2f} |")
    L += ["", "The classical baseline's boxes all have score 1, so its AP is a single precision-recall point.", "",
          "## Other magnifications: test fields downscaled, scale measured from red cells", "",
          "| downscale | zoom found | WBC AP@0.5 | WBC recall | WBC precision | RBC AP@0.5 | platelet AP@0.5 |",
          "|---|---|---|---|---|---|---|"]
    for m in r["magnification"]:
        L.append(f"| {m['downscale']}x | {m['estimated_zoom']:.2f} | {_ci(m['wbc']['ap50'], m['wbc']['ap50_ci'])} | "
                 f"{_ci(m['wbc']['recall'], m['wbc']['recall_ci'])} | {_ci(m['wbc']['precision'], m['wbc']['precision_ci'])} | "
                 f"{_ci(m['rbc']['ap50'], None)} | {_ci(m['platelet']['ap50'], None)} |")
    L += ["", "## Large fields: 2 x 2 mosaics of test fields (1280 x 960), tiled with overlap", "",
          "| fields | WBC true / mosaic / one by one | RBC true / mosaic / one by one | platelets true / mosaic / one by one |",
          "|---|---|---|---|"]
    for m in r["mosaic"]["mosaics"]:
        L.append(f"| {', '.join(f.replace('BloodImage_', '') for f in m['fields'])} | "
                 + " | ".join(f"{m[k + '_true']} / {m[k + '_mosaic']} / {m[k + '_fields_one_by_one']}" for k in KINDS) + " |")
    L += ["", "## Speed, end to end (scale, detection, WBC crops typed by the shipped WBC model)", "",
          "| runtime | fields | fields per second | white cells typed |", "|---|---|---|---|"]
    for name, s in r["speed"].items():
        L.append(f"| {name} | {s['fields']} (640 x 480) | {s['fields_per_second']} | {s['white_cells_typed']} |")
    L += ["", f"Machine: {r['machine']}.", ""]
    return "\n".join(L)


if __name__ == "__main__":
    main()
