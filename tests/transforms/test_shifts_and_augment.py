"""Robustness tools on small generated images: each shift does what it says, augmentation stays on
the train side, class maps refuse unknown names."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from leukodx.data.class_map import map_classes
from leukodx.data.dataset import DatasetIndex, ImageRecord
from leukodx.errors import ConfigError
from leukodx.transforms.augment import (
    ROBUST_INGREDIENTS,
    RandomConvolution,
    RandomToneCurves,
    StainTransfer,
    build_augment,
)
from leukodx.transforms.shifts import DEFAULT_SHIFTS, build_shift, parse_shifts
from leukodx.transforms.stain import border_colour, hed_jitter


def cell(size=128, r=20, bg=(235, 215, 200), fg=(90, 40, 130)):
    """A purple disc (the 'nucleus') on a pinkish background, with a fine checker texture inside."""
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    c = size // 2
    d.ellipse((c - r, c - r, c + r, c + r), fill=fg)
    a = np.array(img)
    inside = (a == fg).all(axis=2)
    checker = ((np.indices((size, size)).sum(0) % 2) * 40).astype(np.uint8)
    a[inside] = np.clip(a[inside].astype(int) + checker[inside, None], 0, 255)
    return Image.fromarray(a)


def dark_area(img, t=160):
    return int((np.asarray(img.convert("L")) < t).sum())


def test_every_default_shift_builds_and_keeps_size():
    img = cell()
    for name in DEFAULT_SHIFTS:
        out = build_shift(name, cell(fg=(60, 20, 160)))(img)
        assert out.size == img.size and out.mode == "RGB", name
    assert np.array_equal(np.asarray(build_shift("none")(img)), np.asarray(img))


def test_grayscale_has_no_colour():
    a = np.asarray(build_shift("grayscale")(cell())).astype(int)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()


def test_scale_changes_cell_area_by_the_square():
    base = dark_area(cell())
    assert dark_area(build_shift("scale_0.5")(cell())) == pytest.approx(base / 4, rel=0.15)
    assert dark_area(build_shift("scale_2")(cell())) == pytest.approx(base * 4, rel=0.15)
    # zoom out pads with the background colour, never black
    corner = np.asarray(build_shift("scale_0.5")(cell()))[0, 0]
    assert np.abs(corner.astype(int) - (235, 215, 200)).max() <= 2


def test_blur_and_lowres_remove_fine_texture_jpeg_changes_pixels():
    def texture(img):
        a = np.asarray(img.convert("L")).astype(float)
        return np.abs(np.diff(a, axis=1)).mean()
    img = cell()
    assert texture(build_shift("blur_2")(img)) < 0.5 * texture(img)
    assert texture(build_shift("lowres_32")(img)) < 0.5 * texture(img)
    j = np.asarray(build_shift("jpeg_10")(img)).astype(int)
    assert 0 < np.abs(j - np.asarray(img)).mean() < 30


def test_stain_normalisation_moves_colour_to_the_reference():
    img, ref = cell(fg=(90, 40, 130)), cell(fg=(150, 30, 60))  # purple nucleus vs a red reference
    for m in ("reinhard", "macenko"):
        out = np.asarray(build_shift(f"stain_{m}", ref)(img)).astype(int)
        centre = out[60:68, 60:68].reshape(-1, 3).mean(0)
        before = np.asarray(img)[60:68, 60:68].reshape(-1, 3).mean(0)
        target = np.asarray(ref)[60:68, 60:68].reshape(-1, 3).mean(0)
        assert np.abs(centre - target).sum() < np.abs(before - target).sum(), m


def test_stain_transfer_moves_a_cell_towards_an_earlier_training_image():
    torch.manual_seed(0)
    t = StainTransfer(p=1.0, pool=1, refresh=0.0)
    tensor = lambda im: torch.from_numpy(np.array(im)).permute(2, 0, 1).contiguous()
    red, purple = cell(fg=(150, 30, 60)), cell(fg=(90, 40, 130))
    assert torch.equal(t(tensor(red)), tensor(red))  # nothing to transfer yet: the first image becomes the reference
    moved = 0
    for _ in range(4):  # the reference's method (Reinhard or Macenko) is drawn at random
        out = t(tensor(purple)).permute(1, 2, 0).numpy().astype(int)
        centre = out[60:68, 60:68].reshape(-1, 3).mean(0)
        before = np.asarray(purple)[60:68, 60:68].reshape(-1, 3).mean(0)
        target = np.asarray(red)[60:68, 60:68].reshape(-1, 3).mean(0)
        moved += np.abs(centre - target).sum() < np.abs(before - target).sum()
    assert moved == 4 and len(t.refs) == 1
    blank = StainTransfer(p=1.0)
    blank(torch.full((3, 32, 32), 255, dtype=torch.uint8))  # no stain to fit: not kept as a reference
    assert blank.refs == []
    with pytest.raises(ConfigError):
        build_augment("seed", stain_transfer=0.3)


def test_stain_transfer_to_fixed_references_never_adds_training_images():
    tensor = lambda im: torch.from_numpy(np.array(im)).permute(2, 0, 1).contiguous()
    red, purple = cell(fg=(150, 30, 60)), cell(fg=(90, 40, 130))
    t = StainTransfer(p=1.0, refresh=1.0, references=[np.asarray(red)])
    assert len(t.refs) == 2  # one reference, fitted by Reinhard and by Macenko
    for _ in range(4):
        out = t(tensor(purple)).permute(1, 2, 0).numpy().astype(int)
        centre, target = out[60:68, 60:68].reshape(-1, 3).mean(0), np.asarray(red)[60:68, 60:68].reshape(-1, 3).mean(0)
        assert np.abs(centre - target).sum() < np.abs(np.asarray(purple)[60:68, 60:68].reshape(-1, 3).mean(0) - target).sum()
    assert len(t.refs) == 2  # the training images did not join the references
    with pytest.raises(ConfigError, match="stain_refs"):
        StainTransfer(references=[np.full((32, 32, 3), 255, np.uint8)])  # no stain to fit in any reference
    from leukodx.config import TrainConfig
    from leukodx.errors import LeukodxError

    with pytest.raises(ConfigError, match="stain_refs"):
        TrainConfig(augment="robust", stain_refs="bccd_smears")  # references without stain transfer
    cfg = TrainConfig(augment="robust", stain_transfer=0.3, stain_refs="/nonexistent/smears")  # read without the data
    with pytest.raises(LeukodxError, match="not found"):
        cfg.train_augment()  # training needs it: a clear error before the first step


def test_hed_shift_is_deterministic_and_zero_is_identity():
    img = cell()
    a, b = build_shift("hed_0.5")(img), build_shift("hed_0.5")(img)
    assert np.array_equal(np.asarray(a), np.asarray(b)) and not np.array_equal(np.asarray(a), np.asarray(img))
    assert np.array_equal(hed_jitter(np.asarray(img), np.zeros(3), np.zeros(3)), np.asarray(img))


def test_cells_out_paints_the_cell_with_the_background_and_shifts_compose():
    img = cell()
    gone = build_shift("cells_out")(img)
    assert dark_area(img) > 1000 and dark_area(gone) == 0
    assert np.abs(np.asarray(gone)[64, 64].astype(int) - (235, 215, 200)).max() <= 2  # the background's colour
    both = build_shift("cells_out+grayscale")(img)
    assert np.array_equal(np.asarray(both), np.asarray(build_shift("grayscale")(gone)))
    assert parse_shifts("cells_out+blur_2") == ["cells_out+blur_2"]


def test_unknown_shifts_are_refused():
    for bad in ("sepia", "blur_x", "jpeg_0", "scale_100", "stain_foo", "cells_out+sepia"):
        with pytest.raises(ConfigError):
            parse_shifts(bad)
    assert parse_shifts("all") == list(DEFAULT_SHIFTS)


def test_robust_augmentation_fills_with_background_and_ablates():
    torch.manual_seed(0)
    x = torch.from_numpy(np.array(cell())).permute(2, 0, 1).contiguous()
    only_geometry = build_augment("robust", [i for i in ROBUST_INGREDIENTS if i not in ("scale", "background_fill")])
    black = build_augment("robust", [i for i in ROBUST_INGREDIENTS if i != "scale"])
    n_black_bg = n_black_old = 0
    for _ in range(20):
        n_black_bg += int((only_geometry(x).sum(0) == 0).sum())
        n_black_old += int((black(x).sum(0) == 0).sum())
    assert n_black_bg == 0 and n_black_old > 0  # the old fill adds black corners; ours never does
    assert tuple(border_colour(np.asarray(cell()))) == (235, 215, 200)
    with pytest.raises(ConfigError):
        build_augment("robust", ["sepia"])
    with pytest.raises(ConfigError):
        build_augment("seed", ["hed"])
    with pytest.raises(ConfigError):
        build_augment("seed", blur_sigma=3.0)  # blur strength belongs to the robust preset


def test_random_convolution_changes_colour_keeps_the_disc_and_the_range():
    from leukodx.config import TrainConfig

    torch.manual_seed(0)
    x = torch.from_numpy(np.array(cell())).permute(2, 0, 1).contiguous()
    inside = torch.from_numpy(np.asarray(cell().convert("L")) < 160)
    assert torch.equal(RandomConvolution(p=0.0)(x), x)
    changed = 0
    for _ in range(10):
        y = RandomConvolution(p=1.0, sizes=(1,))(x)  # 1 x 1: a pure colour map, no spatial change
        assert y.dtype == torch.uint8 and y.shape == x.shape
        changed += int((y.float() - x.float()).abs().mean() > 5)
        # the disc stays where it was: inside and outside still differ in at least one channel
        gap = (y[:, inside].float().mean(1) - y[:, ~inside].float().mean(1)).abs().max()
        assert gap > 10
        # per-channel mean is kept (within rounding and clipping)
        assert (y.float().mean((1, 2)) - x.float().mean((1, 2))).abs().max() < 12
    assert changed >= 5  # the blend weight is random: some draws stay close to the original
    robust = build_augment("robust", random_conv=0.5)
    assert any(isinstance(t, RandomConvolution) for t in robust.transforms)
    names = [type(t).__name__ for t in robust.transforms]
    assert names.index("RandomConvolution") < names.index("LowResolution")  # before the camera steps
    with pytest.raises(ConfigError):
        build_augment("seed", random_conv=0.5)
    with pytest.raises(ConfigError):
        TrainConfig(augment="robust", random_conv=1.5)


def test_tone_curves_keep_white_and_black_and_turn_dark_and_pale_hues_apart():
    from leukodx.config import TrainConfig

    torch.manual_seed(0)
    img = np.array(cell())
    img[:4], img[-4:] = 255, 0  # a white and a black stripe
    x = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    assert torch.equal(RandomToneCurves(p=0.0)(x), x)
    inside = torch.from_numpy(np.asarray(cell().convert("L")) < 160)
    inside[:4], inside[-4:] = False, False
    outside = ~inside
    outside[:4], outside[-4:] = False, False
    turned = 0
    for _ in range(10):
        y = RandomToneCurves(p=1.0)(x)
        assert y.dtype == torch.uint8 and y.shape == x.shape
        assert (y[:, :4] == 255).all() and (y[:, -4:] == 0).all()
        # each channel's curve is monotone: the dark disc stays darker than the pale background
        assert (y[:, inside].float().mean(1) < y[:, outside].float().mean(1)).all()
        # a power curve moves a dark value and a pale one by different ratios: the dark disc's colour
        # (channel ratios) changes by more than the pale background's
        ratio = lambda t, m: t[:, m].float().mean(1) / t[:, m].float().mean()
        dark_turn = (ratio(y, inside) - ratio(x, inside)).abs().max()
        pale_turn = (ratio(y, outside) - ratio(x, outside)).abs().max()
        turned += int(dark_turn > 2 * pale_turn)
    assert turned >= 8
    names = [type(t).__name__ for t in build_augment("robust", tone_curves=0.5).transforms]
    assert "RandomToneCurves" in names and names.index("RandomToneCurves") < names.index("LowResolution")
    with pytest.raises(ConfigError):
        build_augment("seed", tone_curves=0.5)
    with pytest.raises(ConfigError):
        TrainConfig(augment="robust", tone_curves=-0.1)


def test_blur_sigma_sets_the_strongest_training_blur():
    from leukodx.config import TrainConfig

    torch.manual_seed(0)
    x = torch.from_numpy(np.array(cell())).permute(2, 0, 1).contiguous()
    only_blur = [i for i in ROBUST_INGREDIENTS if i not in ("blur", "scale", "background_fill")]

    def sharpest_edge(sigma):  # the smallest largest-step over 40 draws: how blurred the strongest blur leaves it
        aug = build_augment("robust", only_blur, blur_sigma=sigma)
        aug.transforms[2] = torch.nn.Identity()  # the narrow zoom cannot be dropped; keep the geometry fixed
        return min(int(aug(x).float().diff(dim=2).abs().max()) for _ in range(40))

    assert sharpest_edge(4.0) < sharpest_edge(1.5)
    for bad in (0.0, 20.0):
        with pytest.raises(ConfigError):
            TrainConfig(augment="robust", blur_sigma=bad)


def test_class_map_by_name_drops_and_refuses():
    idx = DatasetIndex("ext", "/x", ["Neutrophil", "lymphocyte", "smudge"],
                       [ImageRecord(f"/x/{i}.png", i % 3) for i in range(9)])
    mapped, cm = map_classes(idx, ["lymphocyte", "neutrophil", "platelet"])
    assert mapped.classes == ["lymphocyte", "neutrophil", "platelet"] and len(mapped) == 6
    assert {r.label for r in mapped.records} == {0, 1} and cm.dropped == {"smudge": 3}
    assert "smudge (3 images)" in cm.describe()
    with pytest.raises(ConfigError, match="not in the model"):
        map_classes(idx, ["lymphocyte"], {"smudge": "blast"})
    with pytest.raises(ConfigError, match="not in the data"):
        map_classes(idx, ["lymphocyte"], {"monocyte": "lymphocyte"})
    with pytest.raises(ConfigError):
        map_classes(idx, ["eosinophil"])


def test_augmentation_never_reaches_val_or_test(tmp_path, monkeypatch):
    """Every ImageDataset built by train() with an augmentation holds train-side records only."""
    from leukodx.config import TrainConfig
    from leukodx.data import torch_dataset
    from leukodx.data.splits import Split
    from leukodx.data.synthetic import generate
    from leukodx.train import run as run_mod

    seen = []
    real_init = torch_dataset.ImageDataset.__init__

    def spy(self, index, preprocess, augment=None, *a, **k):
        seen.append(({r.path for r in index.records}, augment))
        real_init(self, index, preprocess, augment, *a, **k)

    monkeypatch.setattr(torch_dataset.ImageDataset, "__init__", spy)
    generate(tmp_path / "data", n_per_class=12, size=48, seed=0, per_slide=3)
    cfg = TrainConfig(data=str(tmp_path / "data" / "manifest.csv"), model="efficientnet_lite0", pretrained=False,
                      image_size=48, epochs=1, freeze_epochs=0, use_hashes=False, bootstrap=0, augment="robust",
                      early_stopping_patience=0)
    run_mod.train(cfg, tmp_path / "run", progress=False)
    from leukodx.data.recipes import load_dataset
    index = load_dataset(cfg.data)
    split = Split.load(tmp_path / "run" / "split.json")
    train_paths = {index.records[i].path for i in split.indices(index, "train")}
    augmented = [paths for paths, aug in seen if aug is not None]
    assert augmented and all(p <= train_paths for p in augmented)
    assert any(paths & ({r.path for r in index.records} - train_paths) for paths, aug in seen if aug is None)


def test_cell_finder_finds_a_dark_blob_at_a_known_place_and_scale():
    from leukodx.transforms.cell_finder import CellCentre, find_nucleus

    rng = np.random.default_rng(0)
    for size, r, (cx, cy) in [(128, 12, (40, 80)), (300, 40, (170, 120)), (60, 8, (30, 30))]:
        img = Image.new("RGB", (size, size), (235, 215, 200))
        d = ImageDraw.Draw(img)
        for _ in range(6):  # paler red cells around it must not be taken for the nucleus
            x, y = rng.integers(0, size, 2)
            d.ellipse((x - r, y - r, x + r, y + r), fill=(215, 150, 160))
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(80, 30, 120))
        n = find_nucleus(img)
        assert n.found and abs(n.centre[0] - cx) < 2 and abs(n.centre[1] - cy) < 2
        assert n.diameter == pytest.approx(2 * r, rel=0.15)
        crop = CellCentre(3.0)(img)  # 3 diameters across, the blob in the middle
        assert crop.size[0] == pytest.approx(6 * r, rel=0.15)
        mid = np.asarray(crop)[crop.size[1] // 2, crop.size[0] // 2]
        assert tuple(mid) == (80, 30, 120)
    blank = Image.new("RGB", (64, 64), (230, 230, 230))
    assert not find_nucleus(blank).found and CellCentre(3.0)(blank).size == (64, 64)


def test_red_green_darkness_prefers_a_purple_nucleus_to_a_darker_red_clump():
    """A clump of dark red cells absorbs more green light than the purple nucleus beside it: `green` darkness
    centres on the clump, `red_green` (a red cell hardly absorbs red) on the nucleus; a grayscale copy gives
    both the same answer; an unknown darkness is a config error."""
    from leukodx.errors import ConfigError
    from leukodx.transforms.cell_finder import CellCentre, find_nucleus
    from leukodx.transforms.preprocess import PreprocessConfig

    img = Image.new("RGB", (200, 200), (240, 225, 215))
    d = ImageDraw.Draw(img)
    d.ellipse((20, 20, 80, 80), fill=(175, 40, 80))      # red clump, centre (50, 50): green 40, red 175
    d.ellipse((120, 120, 160, 160), fill=(90, 50, 140))  # purple nucleus, centre (140, 140): green 50, red 90
    green, red_green = find_nucleus(img), find_nucleus(img, darkness="red_green")
    assert abs(green.centre[0] - 50) < 3 and abs(green.centre[1] - 50) < 3
    assert abs(red_green.centre[0] - 140) < 3 and abs(red_green.centre[1] - 140) < 3
    assert red_green.diameter == pytest.approx(40, rel=0.15)
    mid = np.asarray(CellCentre(3.0, "red_green")(img))
    assert tuple(mid[mid.shape[0] // 2, mid.shape[1] // 2]) == (90, 50, 140)
    gray = img.convert("L").convert("RGB")
    assert find_nucleus(gray).centre == find_nucleus(gray, darkness="red_green").centre
    with pytest.raises(ConfigError, match="cell_darkness"):
        PreprocessConfig(cell_centre=2.5, cell_darkness="blue")
    with pytest.raises(ValueError, match="darkness"):
        find_nucleus(img, darkness="blue")


@pytest.mark.parametrize("preset", ["seed", "ddrnet", "thesis"])
def test_paper_presets_never_add_black_corners(preset):
    torch.manual_seed(0)
    x = torch.zeros(3, 48, 48, dtype=torch.uint8)
    x[0], x[1], x[2] = 230, 200, 215  # a pale smear background
    x[:, 16:32, 16:32] = torch.tensor([120, 60, 150], dtype=torch.uint8)[:, None, None]  # a stained cell
    aug = build_augment(preset)
    ring = torch.ones(48, 48, dtype=torch.bool)
    ring[5:-5, 5:-5] = False  # where rotated / shifted corners land; the cell never reaches it
    dark = sum(int((aug(x).int().sum(0)[ring] < 150).sum()) for _ in range(20))
    assert dark == 0


def test_background_colour_ignores_red_cells_on_the_border_and_pads_tight_crops():
    from leukodx.transforms.cell_finder import CellCentre
    from leukodx.transforms.stain import background_colour

    img = cell(size=96, r=20)
    d = ImageDraw.Draw(img)
    for x in (0, 48, 90):  # red cells cut by the border darken its median
        d.ellipse((x - 14, -14, x + 14, 14), fill=(200, 120, 140))
        d.ellipse((x - 14, 82, x + 14, 110), fill=(200, 120, 140))
    assert tuple(background_colour(np.asarray(img))) == (235, 215, 200)
    tight = cell(size=48, r=20)  # the nucleus fills the image: centring must pad it
    out = np.asarray(CellCentre(3.0)(tight))
    assert out.shape[0] > 48 and tuple(out[0, 0]) == (235, 215, 200)


def test_tight_crop_paints_outside_a_centred_square_with_the_background():
    from leukodx.transforms.augment import TightCrop

    torch.manual_seed(0)
    x = torch.from_numpy(np.array(cell(size=100, r=10))).permute(2, 0, 1).contiguous()
    x[:, :8, :8] = torch.tensor([120, 20, 40], dtype=torch.uint8)[:, None, None]  # a dark corner object
    for _ in range(10):
        y = TightCrop(p=1.0, side=(0.5, 0.6), jitter=0.0)(x)
        assert torch.equal(y[:, 45:55, 45:55], x[:, 45:55, 45:55])  # the cell is kept
        assert tuple(y[:, 2, 2].tolist()) == (235, 215, 200)  # the corner object is gone
    assert torch.equal(TightCrop(p=0.0)(x), x)


def test_centring_never_zooms_into_noise():
    from leukodx.heads.image_checks import image_problem
    from leukodx.transforms.cell_finder import CellCentre, find_nucleus
    from leukodx.transforms.preprocess import Preprocess, PreprocessConfig

    noise = Image.fromarray(np.random.default_rng(3).integers(0, 255, (80, 80, 3), dtype=np.uint8))
    assert not find_nucleus(noise).found and CellCentre(2.5)(noise).size == (80, 80)
    # so the referral's image check still sees the noise after cell-centred preprocessing
    assert image_problem(Preprocess(PreprocessConfig(image_size=64, cell_centre=2.5)).array(noise)) == "not_a_cell"
    assert find_nucleus(cell()).found


def test_white_balance_makes_the_background_neutral_and_keeps_the_cell_darker():
    from leukodx.transforms.preprocess import Preprocess, PreprocessConfig

    yellow = cell(bg=(255, 250, 170), fg=(120, 60, 90))
    a = Preprocess(PreprocessConfig(image_size=128, white_balance=True)).array(yellow).astype(int)
    bg, nucleus = a[5, 5], a[64, 64]
    assert np.abs(bg - 235).max() <= 2                       # yellow lamp removed: neutral grey
    assert nucleus.max() < 200 and nucleus[2] > 90 * 235 / 170 - 3  # blue scaled by the same gain
    # an image that already has a neutral background keeps its colours (up to the level)
    grey = np.asarray(cell(bg=(235, 235, 235))).astype(int)
    same = Preprocess(PreprocessConfig(image_size=128, white_balance=True)).array(cell(bg=(235, 235, 235)))
    assert np.abs(same.astype(int) - grey).max() <= 1


def test_clahe_raises_a_faint_cells_contrast_keeps_its_hue_and_refuses_bad_limits():
    from leukodx.transforms.preprocess import Preprocess, PreprocessConfig

    faint = cell(bg=(200, 190, 185), fg=(170, 150, 185))  # a washed-out, low-contrast camera
    before = np.asarray(faint.resize((128, 128))).astype(int)
    after = Preprocess(PreprocessConfig(image_size=128, clahe=0.01)).array(faint).astype(int)
    assert after.shape == (128, 128, 3)
    assert after.sum(2)[5, 5] - after.sum(2)[64, 64] > before.sum(2)[5, 5] - before.sum(2)[64, 64]  # more contrast
    nucleus = after[64, 64]
    assert nucleus[2] > nucleus[1] and nucleus[0] > nucleus[1]  # still purple: lightness changed, not hue
    off = Preprocess(PreprocessConfig(image_size=128)).array(faint)
    assert np.array_equal(off, before)  # off by default
    for bad in (-0.1, 2, "x"):
        with pytest.raises(ConfigError, match="clahe"):
            PreprocessConfig(clahe=bad)

def test_darkest_object_answers_as_find_nucleus_does():
    from leukodx.transforms.cell_finder import darkest_object, find_nucleus, shrink

    rng = np.random.default_rng(4)
    images = [cell(size=s, r=r) for s, r in ((64, 8), (128, 20), (160, 30))] + [
        Image.new("RGB", (96, 96), (235, 215, 200)),  # blank background
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)),  # noise
        Image.fromarray(np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (96, 1))).convert("RGB")]  # a ramp
    got = [darkest_object(shrink(im, 64)) for im in images]
    assert [g is not None for g in got[:5]] == [True, True, True, False, False]
    assert [g is not None for g in got] == [find_nucleus(shrink(im, 64)).found for im in images]
    for g, im in zip(got[:3], images[:3]):  # the disc itself: inside the found nucleus, centred
        n = find_nucleus(shrink(im, 64))
        assert (g <= n.mask).all() and g.sum() >= 0.8 * n.mask.sum()


def test_stained_cells_finds_every_purple_cell_and_no_red_cell():
    from leukodx.transforms.cell_finder import stained_cells

    yy, xx = np.mgrid[:120, :120]
    a = np.full((120, 120, 3), (240, 238, 230), np.uint8)  # pale background
    discs = {(25, 25): (200, 170, 175), (95, 30): (190, 185, 205),  # red cells: pink and grey-blue
             (30, 90): (130, 80, 190), (90, 90): (150, 100, 200)}  # two blasts: purple
    for (cy, cx), colour in discs.items():
        a[(yy - cy) ** 2 + (xx - cx) ** 2 <= 12 ** 2] = colour
    m = stained_cells(Image.fromarray(a))
    inside = {c: m[c] for c in discs}
    assert inside[(30, 90)] and inside[(90, 90)] and not inside[(25, 25)] and not inside[(95, 30)]
    assert abs(m.sum() - 2 * np.pi * 12 ** 2) < 0.15 * 2 * np.pi * 12 ** 2  # the two blasts, whole
    assert not stained_cells(Image.new("RGB", (64, 64), (240, 238, 230))).any()  # a blank field


def test_stained_only_whitens_all_but_the_stained_cells_in_colour_and_grayscale():
    from leukodx.transforms.preprocess import Preprocess, PreprocessConfig, StainedOnly

    yy, xx = np.mgrid[:120, :120]
    a = np.full((120, 120, 3), (240, 238, 200), np.uint8)  # yellowish background
    red, blast = (yy - 30) ** 2 + (xx - 30) ** 2 <= 12 ** 2, (yy - 85) ** 2 + (xx - 80) ** 2 <= 14 ** 2
    a[red], a[blast] = (200, 170, 175), (120, 70, 180)
    out = np.asarray(StainedOnly()(Image.fromarray(a)))
    assert (out[red] == 255).all() and (out[:5, :5] == 255).all()  # red cell and background whitened
    assert (out[blast] == a[blast]).all()  # the blast untouched, its rim kept by the widening
    ring = ((yy - 85) ** 2 + (xx - 80) ** 2 <= 16 ** 2) & ~blast
    assert (out[ring] != 255).any()
    gray = np.repeat(a.mean(2, keepdims=True).astype(np.uint8), 3, 2)  # no colour: the darkest object stays
    g = np.asarray(StainedOnly()(Image.fromarray(gray)))
    assert (g[blast] == gray[blast]).all() and (g[red] == 255).all()
    blank = Image.new("RGB", (64, 64), (240, 238, 230))
    assert np.array_equal(np.asarray(StainedOnly()(blank)), np.asarray(blank))  # nothing found: unchanged
    pre = Preprocess(PreprocessConfig(64, stained_only=True))
    assert pre.array(Image.fromarray(a)).shape == (64, 64, 3) and pre.to_dict()["stained_only"] is True


def test_stain_free_input_marks_the_nucleus_and_looks_alike_under_two_stains():
    from leukodx.transforms.preprocess import Preprocess, PreprocessConfig

    pre = Preprocess(PreprocessConfig(image_size=64, stain_free=True))
    purple = pre.array(cell(bg=(235, 215, 200), fg=(90, 40, 130))).astype(int)
    magenta = pre.array(cell(bg=(250, 245, 170), fg=(150, 50, 90))).astype(int)  # yellow lamp, red-purple stain
    inside, outside = (slice(28, 36), slice(28, 36)), (slice(0, 6), slice(0, 6))
    for a in (purple, magenta):
        assert (a[inside][..., 0] == 255).all() and (a[outside][..., 0] == 0).all()  # red: the nucleus mask
        assert a[inside][..., 1].mean() > 200 and a[outside][..., 1].mean() < 30     # green: stretched darkness
    assert np.abs(purple - magenta).mean() < 8  # the stain's colours are gone
    assert np.abs(pre.array(cell()).astype(int) - np.asarray(cell().resize((64, 64)))).mean() > 50


def test_nucleus_only_paints_the_cytoplasm_with_the_background():
    from leukodx.transforms.preprocess import NucleusOnly

    img = cell(r=14)
    ImageDraw.Draw(img).ellipse((64 - 30, 64 - 30, 64 + 30, 64 + 30), outline=(200, 170, 210), width=8)  # a cytoplasm ring
    a = np.asarray(img)
    b = np.asarray(NucleusOnly()(img))
    ring = (a == (200, 170, 210)).all(axis=2)
    assert ring.sum() > 500 and (b[ring] == (235, 215, 200)).all()  # the ring is gone
    assert (b[60:68, 60:68] == a[60:68, 60:68]).all()                # the nucleus is kept
    blank = Image.new("RGB", (64, 64), (230, 230, 230))
    assert NucleusOnly()(blank) is blank                              # no nucleus: left as it is


def test_whole_cell_mask_keeps_the_cytoplasm_and_cuts_the_red_cells_touching_it(one_cell_field):
    from leukodx.transforms.cell_finder import whole_cell_mask
    from leukodx.transforms.preprocess import MaskBackground, Preprocess, PreprocessConfig, cell_mask

    img, cell, reds, touching = (one_cell_field[k] for k in ("image", "cell", "reds", "touching"))
    a = np.asarray(img)
    m = whole_cell_mask(img)
    assert m[cell].mean() > 0.9 and m[reds & ~cell].mean() < 0.05 and m[~cell & ~reds].mean() < 0.02
    assert cell_mask(img)[touching & ~cell].mean() > 0.3  # Otsu on gray levels takes the red cells touching it
    out = np.asarray(MaskBackground(keep_cytoplasm=True)(img))
    assert (out[cell] == a[cell]).all(-1).mean() > 0.9 and (out[reds & ~cell] == 255).mean() > 0.95
    yy, xx = np.mgrid[:150, :150]
    c2, n2 = (yy - 75) ** 2 + (xx - 75) ** 2 <= 50 ** 2, (yy - 75) ** 2 + (xx - 75) ** 2 <= 25 ** 2
    plain = np.full((150, 150, 3), (190, 200, 110), np.uint8)  # a yellow ground, no red cells: nothing is cut
    plain[c2], plain[n2] = (170, 120, 100), (100, 20, 80)
    assert whole_cell_mask(Image.fromarray(plain))[c2].mean() > 0.95
    assert whole_cell_mask(Image.new("RGB", (64, 64), (240, 238, 230))).all()  # no cell found: nothing masked
    pre = Preprocess(PreprocessConfig(64, mask_background=True, keep_cytoplasm=True))
    assert pre.to_dict()["keep_cytoplasm"] is True and pre.array(img).shape == (64, 64, 3)
