"""Does Macenko stain normalisation give a plausible smear? torchstain 1.4.1's Macenko (used before 2026-12-06)
against leukodx.transforms.stain.Macenko, on random pairs of real images of one set (each image normalised to
another of the same set): does the darkest 5% of the image (the nucleus) stay clearly darker than the median
pixel, and does the output's background take the reference's colour (within 20 of 255 levels per channel)?
Writes results/macenko_check.{json,md}.
    python benchmarks/macenko_check.py [--pairs 30]
"""
import argparse
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

from leukodx.data.recipes import load_dataset
from leukodx.transforms.stain import StainNormalizer, background_colour

ROOT = Path(__file__).resolve().parents[1]
SETS = ("pbc", "taleqani_all", "wbc_external")


def torchstain_macenko(reference: np.ndarray):
    """torchstain's numpy Macenko as leukodx called it before (Io 240; the image back where it fails)."""
    import torchstain

    norm = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
    norm.fit(reference)

    def apply(a: np.ndarray) -> np.ndarray:
        try:
            out = norm.normalize(I=a, stains=False)[0]
        except Exception:  # noqa: BLE001 - as StainNormalizer did
            return a
        return np.clip(np.nan_to_num(np.asarray(out, float), nan=255), 0, 255).round().astype(np.uint8)
    return apply


def plausible(src: np.ndarray, out: np.ndarray, ref: np.ndarray) -> tuple[bool, bool]:
    g0, g1 = src.mean(2), out.astype(float).mean(2)
    dark = g0 < np.quantile(g0, 0.05)
    background = np.abs(background_colour(out).astype(int) - background_colour(ref).astype(int)).max() <= 20
    return bool(g1[dark].mean() < np.median(g1) - 10), bool(background)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=30)
    a = ap.parse_args()
    rows = []
    for name in SETS:
        paths = random.Random(11).sample([r.path for r in load_dataset(name).records], 2 * a.pairs)
        ims = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        for impl, make in (("torchstain 1.4.1", torchstain_macenko), ("leukodx", lambda r: StainNormalizer(r, "macenko"))):
            got = np.array([plausible(s, make(r)(s), r) for s, r in zip(ims[:a.pairs], ims[a.pairs:])])
            rows.append({"set": name, "implementation": impl, "pairs": a.pairs, "nucleus_stays_darker": int(got[:, 0].sum()),
                         "reference_background": int(got[:, 1].sum())})
            print(rows[-1], flush=True)
    (ROOT / "results" / "macenko_check.json").write_text(json.dumps({"rows": rows}, indent=1))
    lines = ["# Macenko stain normalisation: plausible output? (`python benchmarks/macenko_check.py`)", "",
             " ".join(__doc__.split("Writes")[0].split()),
             ("The second column favours by design an implementation that gives the output the reference's background "
              "(torchstain's maps an unstained pixel to gray 240 and reads a cream or yellow background as stain); the "
              "first is a plain error (torchstain leaves the eigenvectors' signs to chance)."), "",
             "| set | implementation | pairs | nucleus stays darker | background = reference's |", "|---|---|---|---|---|"]
    lines += [f"| {r['set']} | {r['implementation']} | {r['pairs']} | {r['nucleus_stays_darker']} | {r['reference_background']} |"
              for r in rows]
    (ROOT / "results" / "macenko_check.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
