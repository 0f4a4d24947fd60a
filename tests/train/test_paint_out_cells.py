"""`paint_out_cells`: training images shown without their stained cells ask for no class, and as many
with the same paint beside the cells keep their label; the loss turns "no class" into a uniform target."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from leukodx.config import TrainConfig
from leukodx.errors import ConfigError
from leukodx.train.data import NO_CLASS, CellsPaintedOut
from leukodx.train.module import ClassifierModule
from leukodx.transforms.cell_paint import recentred


def _field(cx: int) -> torch.Tensor:
    """A textured pink field with one purple cell at column cx, as a (3, 64, 64) uint8 tensor."""
    yy, xx = np.mgrid[:64, :64]
    img = np.empty((64, 64, 3), np.uint8)
    img[:] = (232, 214, 220)
    img[::2] -= 6
    img[(yy - 32) ** 2 + (xx - cx) ** 2 < 9 ** 2] = (110, 60, 160)
    return torch.from_numpy(img).permute(2, 0, 1)


class _Set:  # what CellsPaintedOut reads of an ImageDataset
    def __init__(self):
        self.images = torch.stack([_field(20), _field(44)])
        self.labels = torch.tensor([0, 1])
        self.augment = None

    def __len__(self):
        return 2


def _purple(x: torch.Tensor) -> float:
    a = x.float()
    return float(((a[0] + a[2]) / 2 - a[1]).max())


def test_painted_images_lose_their_cells_and_their_label_controls_keep_both():
    ds = _Set()
    painted = CellsPaintedOut(ds, p=0.25, seed=0)
    draws = [painted[i % 2] for i in range(800)]
    no_class = [(x, i % 2) for i, (x, y) in enumerate(draws) if y == NO_CLASS]
    kept = [(x, y, i % 2) for i, (x, y) in enumerate(draws) if y != NO_CLASS]
    assert 0.2 < len(no_class) / 800 < 0.3
    assert all(_purple(x) < 20 for x, _ in no_class)  # the cell is gone (the field itself is not purple)
    assert all(int(y) == j and _purple(x) > 60 for x, y, j in kept)  # the cell and its label stay
    controls = [x for x, _, j in kept if not torch.equal(x, ds.images[j])]
    assert 0.2 < len(controls) / 800 < 0.3  # paint beside the cell about as often as instead of it
    centre = {0: slice(16, 25), 1: slice(40, 49)}  # the middle of each image's cell
    assert all(torch.equal(x[:, 28:37, centre[j]], ds.images[j][:, 28:37, centre[j]]) for x, _, j in kept)


def test_recentred_copies_zoom_on_what_is_left_as_cell_centring_would():
    img = _field(32).permute(1, 2, 0).numpy().copy()
    yy, xx = np.mgrid[:64, :64]
    img[(yy - 12) ** 2 + (xx - 50) ** 2 < 4 ** 2] = (150, 110, 130)  # a small dark red cell up and to the right
    out = recentred(img, 2.5)
    assert out.shape == img.shape
    # centred on the small dark object (the purple cell is darker still: recentring starts from the darkest)
    painted = img.copy()
    painted[(yy - 32) ** 2 + (xx - 32) ** 2 < 10 ** 2] = (232, 214, 220)
    out = recentred(painted, 2.5).astype(float)
    dark = out.sum(-1) < out.sum(-1).mean() - 60
    ys, xs = np.nonzero(dark)
    assert abs(ys.mean() - 32) < 4 and abs(xs.mean() - 32) < 4  # the red cell is now in the middle
    assert dark.mean() > 0.1  # and zoomed: 8 px across in 64 becomes about 64 / 2.5 px
    ds = _Set()
    ds.images[:, :, (yy - 12) ** 2 + (xx - 50) ** 2 < 4 ** 2] = torch.tensor([150, 110, 130], dtype=torch.uint8)[:, None]
    plain, zoomed = CellsPaintedOut(ds, p=0.5, seed=0), CellsPaintedOut(ds, p=0.5, seed=0, recentre=2.5)
    assert torch.equal(plain.out[0], zoomed.out[0]) and not torch.equal(plain.out[1], zoomed.out[1])  # every other copy


def test_no_class_label_is_a_uniform_target_and_other_labels_are_unchanged():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))
    module = ClassifierModule(net, 3, (0.5,) * 3, (0.25,) * 3)
    module.log = lambda *a, **k: None
    x = torch.randint(0, 255, (4, 3, 4, 4), dtype=torch.uint8)
    logits = module(x)
    y = torch.tensor([0, NO_CLASS, 2, NO_CLASS])
    target = torch.tensor([[1, 0, 0], [1 / 3] * 3, [0, 0, 1], [1 / 3] * 3])
    assert torch.allclose(module.training_step((x, y), 0), F.cross_entropy(logits, target))
    y = torch.tensor([0, 1, 2, 1])
    assert torch.allclose(module.training_step((x, y), 0), F.cross_entropy(logits, y))


def test_paint_out_cells_is_checked():
    with pytest.raises(ConfigError, match="paint_out_cells"):
        TrainConfig(paint_out_cells=0.7)
