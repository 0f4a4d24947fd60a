from dataclasses import replace

import pytest

from leukodx.data import check_split, load_recipe, make_split
from leukodx.data.audit import audit
from leukodx.data.dataset import DatasetIndex, ImageRecord
from leukodx.data.groups import group_ids, listed_duplicates
from leukodx.data.splits import Split
from leukodx.errors import LeukodxError
from tests.conftest import rgb, shared


def _index(tmp_path, n_per_class=30, dup=True):
    recs = []
    for c in range(2):
        d = tmp_path / f"c{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            p = d / f"img-{i:03d}.png"
            rgb(c * 1000 + i).save(p)
            recs.append(ImageRecord(str(p), c, group=f"patient{c}_{i // 3}"))
    if dup:  # an exact copy of c0/img-000 under another patient
        (tmp_path / "c0" / "copy.png").write_bytes((tmp_path / "c0" / "img-000.png").read_bytes())
        recs.append(ImageRecord(str(tmp_path / "c0" / "copy.png"), 0, group="patient_other"))
    return DatasetIndex("t", str(tmp_path), ["c0", "c1"], recs)


def test_groups_never_cross_sides(tmp_path):
    idx = _index(tmp_path)
    split = make_split(idx, 0.2, 0.2, seed=3)
    side = {k: s for k, s in split.sides.items()}
    by_patient = {}
    for r in idx.records:
        by_patient.setdefault(r.group, set()).add(side[idx.key(r)])
    assert all(len(s) == 1 for g, s in by_patient.items() if g != "patient_other")
    # the exact copy is pulled into its twin's group
    assert side["c0/copy.png"] == side["c0/img-000.png"]
    assert check_split(idx, split) == []


def test_check_split_detects_leak(tmp_path):
    idx = _index(tmp_path)
    split = make_split(idx, 0.2, 0.2)
    a, b = "c0/img-000.png", "c0/copy.png"
    leaky = Split(dict(split.sides), dict(split.groups), {})
    leaky.sides[b] = "test" if leaky.sides[a] != "test" else "train"
    from leukodx.data.hashes import fingerprints
    problems = check_split(idx, leaky, fingerprints(idx))
    assert problems and any("identical image" in p or "group" in p for p in problems)


def test_synthetic_images_stay_in_train(tmp_path):
    idx = _index(tmp_path, dup=False)
    idx.records = [replace(r, synthetic=True) if i % 4 == 0 else r for i, r in enumerate(idx.records)]
    split = make_split(idx, 0.2, 0.2, use_hashes=False)
    assert all(split.sides[idx.key(r)] == "train" for r in idx.records if r.synthetic)
    bad = Split(dict(split.sides), dict(split.groups))
    bad.sides[idx.key(idx.records[0])] = "test"
    assert any("synthetic" in p for p in check_split(idx, bad))


def test_split_roundtrip_and_bad_fractions(tmp_path):
    idx = _index(tmp_path)
    s = make_split(idx, 0.2, 0.2)
    back = Split.load(s.save(tmp_path / "s.json"))
    assert back.sides == s.sides
    with pytest.raises(LeukodxError, match="fractions"):
        make_split(idx, 0.6, 0.2)


def test_block_groups(tmp_path):
    idx = _index(tmp_path, dup=False)
    idx.records = [replace(r, group=None) for r in idx.records]
    idx.block_size = 10
    g = group_ids(idx, use_hashes=False)
    key = {idx.key(r): gi for r, gi in zip(idx.records, g)}
    assert key["c0/img-001.png"] == key["c0/img-010.png"] != key["c0/img-011.png"]


def test_real_taleqani_audit_finds_listed_duplicates_and_split_is_clean():
    root = shared("taleqani_all")
    idx = load_recipe("taleqani_all")
    listed_exact = {tuple(sorted(g)) for g in listed_duplicates(root)
                    if all((root / p).exists() for p in g)}
    exact_lines = [line.split("\t")[1:] for line in (root / "duplicates.txt").read_text().splitlines()
                   if line.startswith("exact")]
    listed_exact = {tuple(sorted(g)) for g in exact_lines}
    split = make_split(idx, 0.15, 0.2, seed=0)
    rep = audit(idx, split)
    found = {tuple(g) for g in rep["exact_duplicate_groups"]}
    assert listed_exact and listed_exact <= found
    assert rep["split"]["ok"] and rep["split"]["leaks"] == []
    # no block of consecutive numbers straddles two sides
    blocks = {}
    for r in idx.records:
        n = int(r.path.rsplit("-", 1)[1].split(".")[0])
        blocks.setdefault((r.label, (n - 1) // 25), set()).add(split.sides[idx.key(r)])
    assert all(len(s) == 1 for s in blocks.values())
