"""Files of a smear case: detections.csv, detections_coco.json, fields/<name>.png (annotated),
differential.json and report.html. Each file is written to a temporary name and moved into place."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from PIL import Image, ImageDraw

from leukodx.data.images import load_image
from leukodx.data.smears import KINDS
from leukodx.detect.differential import differential
from leukodx.detect.smear import SmearCase

COLOURS = {"wbc": (123, 31, 162), "rbc": (198, 40, 40), "platelet": (21, 101, 192)}
REFER_COLOUR = (255, 143, 0)
CSV_COLUMNS = ["image", "x_min", "y_min", "x_max", "y_max", "kind", "score", "label", "probability", "refer"]


def _write(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    tmp.replace(path)


def detections_csv(case: SmearCase) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in case.rows:
        w.writerow([r["image"], *r["box"], r["kind"], r["score"], r["label"],
                    "" if r["probability"] is None else r["probability"], int(r["refer"])])
    return buf.getvalue()


def coco(case: SmearCase) -> dict:
    names = list(case.sizes)
    images = [{"id": i + 1, "file_name": n, "width": case.sizes[n][0], "height": case.sizes[n][1]}
              for i, n in enumerate(names)]
    anns = []
    for j, r in enumerate(case.rows):
        x0, y0, x1, y1 = r["box"]
        anns.append({"id": j + 1, "image_id": names.index(r["image"]) + 1, "category_id": KINDS.index(r["kind"]) + 1,
                     "bbox": [x0, y0, round(x1 - x0, 1), round(y1 - y0, 1)], "area": round((x1 - x0) * (y1 - y0), 1),
                     "iscrowd": 0, "score": r["score"],
                     "attributes": {"label": r["label"], "probability": r["probability"], "refer": r["refer"]}})
    return {"images": images, "annotations": anns,
            "categories": [{"id": i + 1, "name": k} for i, k in enumerate(KINDS)]}


def annotate(image: Image.Image, rows: list[dict]) -> Image.Image:
    """Boxes coloured by kind; white cells labelled with their type; referred cells in orange, thick."""
    img = image.convert("RGB").copy()
    d = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 320))
    for r in rows:
        refer = r["kind"] == "wbc" and r["refer"]
        colour = REFER_COLOUR if refer else COLOURS[r["kind"]]
        d.rectangle(r["box"], outline=colour, width=width * (2 if refer else 1))
        if r["kind"] == "wbc":
            text = f"{r['label']} {r['probability']:.2f}" + (" REFER" if refer else "")
            x, y = r["box"][0], max(0, r["box"][1] - 12 * width // 2 - 4)
            tb = d.textbbox((x, y), text)
            d.rectangle([tb[0] - 2, tb[1] - 2, tb[2] + 2, tb[3] + 2], fill=(255, 255, 255))
            d.text((x, y), text, fill=(0, 0, 0))
    return img


def _png_name(name: str) -> str:
    return Path(name).stem.replace(" ", "_") + ".png"


def write_case(case: SmearCase, out: str | Path, classes: list[str], sources: dict[str, Path],
               info: dict) -> dict:
    """Write every file of the case into `out`; returns the differential."""
    out = Path(out)
    (out / "fields").mkdir(parents=True, exist_ok=True)
    _write(out / "detections.csv", detections_csv(case))
    _write(out / "detections_coco.json", json.dumps(coco(case), indent=1))
    for name in case.sizes:
        rows = [r for r in case.rows if r["image"] == name]
        buf = io.BytesIO()
        annotate(load_image(sources[name]), rows).save(buf, format="PNG")
        _write(out / "fields" / _png_name(name), buf.getvalue())
    diff = differential(case.rows, classes)
    diff.update({"fields": len(case.sizes), "unusable_files": case.errors, "scale": case.scale,
                 "scale_note": case.scale_note, **info})
    _write(out / "differential.json", json.dumps(diff, indent=1))
    _write(out / "report.html", report_html(case, diff, classes))
    return diff


def report_html(case: SmearCase, diff: dict, classes: list[str]) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("leukodx.detect", "templates"), autoescape=select_autoescape())
    fields = [{"name": n, "png": "fields/" + _png_name(n), **diff["per_field"].get(n, {"wbc": 0, "rbc": 0, "platelet": 0})}
              for n in case.sizes]
    return env.get_template("smear_report.html").render(d=diff, classes=classes, fields=fields)
