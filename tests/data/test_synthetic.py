import numpy as np
from PIL import Image

from leukodx.data.synthetic import CLASSES, generate


def test_generator_classes_differ_in_morphology_not_background(tmp_path):
    idx = generate(tmp_path, n_per_class=12, size=64, seed=1)
    assert idx.counts() == {c: 12 for c in sorted(CLASSES)} or set(idx.counts().values()) == {12}
    assert all("synthetic" in c for c in idx.classes)
    corners, darks = {}, {}
    for r in idx.records:
        a = np.asarray(Image.open(r.path)).astype(float)
        corners.setdefault(r.label, []).append(a[:6, :6].mean())
        darks.setdefault(r.label, []).append((a.mean(2) < 110).mean())  # nucleus area share
    corner_means = [np.mean(v) for v in corners.values()]
    dark_means = [np.mean(v) for v in darks.values()]
    assert max(dark_means) > 1.5 * min(dark_means)         # nucleus size carries the class
    assert max(corner_means) - min(corner_means) < 25    # background does not
    assert len({r.group for r in idx.records}) > 4
