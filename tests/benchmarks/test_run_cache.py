"""The benchmark run cache (benchmarks/common.py) and the seed tables' merge of committed seeds."""
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
common = pytest.importorskip("common")
seed_networks = pytest.importorskip("seed_networks")


def _package(root: Path) -> Path:
    files = {
        "leukodx/__init__.py": "",
        "leukodx/train/__init__.py": "from .run import train\n",
        "leukodx/train/run.py": "from ..models import convnet\n\ndef train():\n    from leukodx.data.walk import walk\n",
        "leukodx/models/__init__.py": "",
        "leukodx/models/convnet.py": "import numpy\n",
        "leukodx/data/__init__.py": "",
        "leukodx/data/walk.py": "def walk(): pass\n",
        "leukodx/serve/__init__.py": "",
        "leukodx/serve/app.py": "from leukodx.train import train\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_training_sources_follow_imports_and_skip_the_rest(tmp_path):
    src = _package(tmp_path)
    got = {str(p.relative_to(src)) for p in common.training_sources(src)}
    assert got == {"leukodx/__init__.py", "leukodx/train/__init__.py", "leukodx/train/run.py",
                   "leukodx/models/__init__.py", "leukodx/models/convnet.py", "leukodx/data/__init__.py",
                   "leukodx/data/walk.py"}


def test_code_version_changes_with_training_code_only(tmp_path):
    src = _package(tmp_path)
    before = common.code_version(src)
    (src / "leukodx/serve/app.py").write_text("# a web-app change\n")
    assert common.code_version(src) == before
    (src / "leukodx/data/walk.py").write_text("def walk(): return 1\n")  # imported inside a function
    assert common.code_version(src) != before


def test_the_real_training_closure_holds_models_and_not_the_web_app():
    names = {p.relative_to(common.SRC).as_posix() for p in common.training_sources()}
    assert {"leukodx/train/run.py", "leukodx/models/ddrnet.py", "leukodx/transforms/augment.py"} <= names
    assert not any(n.startswith(("leukodx/serve/", "leukodx/gan/")) for n in names)


def test_a_stale_run_is_kept_under_its_own_key_and_none_is_lost(tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(common, "ROOT", tmp_path)
    made = []

    def fake_train(cfg, out, resume=False, progress=False):
        (out / "test").mkdir(parents=True)
        (out / "test" / "metrics.json").write_text(json.dumps({"accuracy": cfg.lr}))
        made.append(cfg.lr)

    monkeypatch.setattr(common, "train", fake_train)
    runs = tmp_path / "runs" / "g"
    for lr in (1e-3, 3e-3, 1e-3):  # a run at one rate, then another, then the first again
        assert common.run("g", "m_seed0", data="pbc", lr=lr)["accuracy"] == lr
    assert made == [1e-3, 3e-3, 1e-3]
    keys = {common.run_key({"data": "pbc", "lr": lr})[:12] for lr in (1e-3, 3e-3)}
    assert {p.name for p in runs.iterdir()} == {"m_seed0"} | {f"m_seed0.{k}.stale" for k in keys}
    assert common.run("g", "m_seed0", data="pbc", lr=1e-3) and made == [1e-3, 3e-3, 1e-3]  # done: not made again


def test_an_interrupted_run_resumes_with_its_own_key_only(tmp_path, monkeypatch):
    import json
    import os

    monkeypatch.setattr(common, "ROOT", tmp_path)
    calls = []

    def fake_train(cfg, out, resume=False, progress=False):
        calls.append((cfg.lr, resume))
        (out / "checkpoints").mkdir(exist_ok=True)
        (out / "checkpoints" / "last.ckpt").write_text("epoch 3")
        if len(calls) == 1:
            ckpt = out / "checkpoints" / "last.ckpt"
            os.utime(ckpt, (os.stat(out / "run_key.txt").st_mtime + 600,) * 2)  # ten minutes in
            raise KeyboardInterrupt  # killed after its checkpoint
        (out / "test").mkdir(exist_ok=True)
        (out / "test" / "metrics.json").write_text(json.dumps({"accuracy": cfg.lr}))

    monkeypatch.setattr(common, "train", fake_train)
    with pytest.raises(KeyboardInterrupt):
        common.run("g", "m_seed0", data="pbc", lr=1e-3)
    out = tmp_path / "runs" / "g" / "m_seed0"
    assert (out / "run_key.txt").read_text().strip() == common.run_key({"data": "pbc", "lr": 1e-3})  # written first
    m = common.run("g", "m_seed0", data="pbc", lr=1e-3)
    assert calls == [(1e-3, False), (1e-3, True)] and m["resumed"] and m["wall_minutes"] >= 10.0
    assert m["code_version"] == common.code_version()  # which training code made it, apart from the config
    # another config never resumes a run that is not its own: it is set aside and trained anew
    (out / "test" / "metrics.json").unlink()
    common.run("g", "m_seed0", data="pbc", lr=3e-3)
    assert calls[-1] == (3e-3, False) and (out.parent / f"m_seed0.{common.run_key({'data': 'pbc', 'lr': 1e-3})[:12]}.stale").is_dir()


def _old_row(runs, accs):
    return {"status": "done", "runs": runs, "accuracy_per_seed": accs, "ci95_per_seed": [[a - .01, a + .01] for a in accs],
            "macro_f1_mean": 0.9, "min_class_recall": 0.8, "grayscale_accuracy_mean": 0.3, "train_minutes_mean": 30.0,
            "code_keys": ["abc"], "lr": 0.003, "n": 100, "baseline_accuracy": 0.5, "steps": 2000, "sweep": None}


def _local(run, acc, lr=0.003):
    return {"status": "done", "lr": lr, "n": 100, "baseline_accuracy": 0.5, "steps": 2000, "sweep": None,
            "per_seed": [{"run": run, "accuracy": acc, "ci95": [acc - .01, acc + .01], "macro_f1": 0.6,
                          "min_class_recall": 0.7, "grayscale": 0.6, "minutes": 10.0, "run_key": "def"}]}


def test_new_seed_merges_with_committed_seeds_exactly():
    row, kept = seed_networks.merge(_local("m_seed2", 0.7), _old_row(["m_seed0", "m_seed1"], [0.9, 0.8]))
    s = seed_networks.summarise(row)
    assert kept == ["m_seed0", "m_seed1"] and s["seeds"] == 3 and s["runs"] == ["m_seed0", "m_seed1", "m_seed2"]
    assert s["accuracy_mean"] == pytest.approx(0.8) and s["accuracy_sd"] == pytest.approx(0.1)
    assert s["macro_f1_mean"] == pytest.approx((2 * 0.9 + 0.6) / 3)  # the committed mean counts for its two seeds
    assert s["min_class_recall"] == 0.7 and s["run_keys"] == ["abc", "def"]  # an older file's `code_keys` read as run keys
    assert s["code_versions"] == ["?"]  # neither record says which code made it


def test_weakest_class_is_named_only_where_its_seed_recorded_it():
    local = _local("m_seed2", 0.7)
    local["per_seed"][0] |= {"min_class_recall": 0.4, "weakest_class": "ig"}
    s = seed_networks.summarise(seed_networks.merge(local, _old_row(["m_seed0"], [0.9]))[0])
    assert s["min_class_recall"] == 0.4 and s["weakest_class"] == "ig" and "0.400 (ig)" in seed_networks.fmt(s)
    local["per_seed"][0]["min_class_recall"] = 0.9  # now the committed seed (0.8, no name) holds the minimum
    s = seed_networks.summarise(seed_networks.merge(local, _old_row(["m_seed0"], [0.9]))[0])
    assert s["min_class_recall"] == 0.8 and s["weakest_class"] is None and "| 0.800 |" in seed_networks.fmt(s)


def test_a_seed_record_says_whether_its_run_was_resumed_and_which_code_made_it(tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(seed_networks, "RUNS", tmp_path)
    for name, resumed in (("a_seed0", True), ("a_seed1", None)):  # runs made before the marks have neither
        (tmp_path / name / "test").mkdir(parents=True)
        m = {"accuracy": 0.8, "ci95": {"accuracy": [0.7, 0.9]}, "macro_f1": 0.7, "classes": ["x", "y"],
             "per_class": {"recall_sensitivity": [0.9, 0.6]}, "wall_minutes": 5.0}
        marks = {"resumed": True, "run_key": "k" * 64, "code_version": "c" * 64} if resumed else {}
        (tmp_path / name / "test" / "metrics.json").write_text(json.dumps(m | marks))
        (tmp_path / name / "test" / "grayscale.json").write_text(json.dumps({"accuracy": 0.5}))
    new, old = seed_networks.seed_record("a_seed0"), seed_networks.seed_record("a_seed1")
    assert new["resumed"] is True and old["resumed"] is False
    assert new["code_version"] == "c" * 12 and new["run_key"] == "k" * 12 and old["code_version"] == "?"


def test_committed_sweep_is_kept_when_its_file_is_not_in_this_checkout():
    swept = {"val_acc": {"0.001": 0.5, "0.003": 0.6}, "chosen_lr": 0.003, "steps": 400}
    row, _ = seed_networks.merge(_local("m_seed0", 0.7), _old_row(["m_seed0"], [0.9]) | {"sweep": swept})
    assert row["sweep"] == swept
    local = _local("m_seed0", 0.7) | {"sweep": swept | {"chosen_lr": 0.001}}
    assert seed_networks.merge(local, _old_row(["m_seed0"], [0.9]) | {"sweep": swept})[0]["sweep"]["chosen_lr"] == 0.001


def test_local_run_replaces_its_committed_seed_and_other_protocols_do_not_mix():
    row, kept = seed_networks.merge(_local("m_seed1", 0.7), _old_row(["m_seed0", "m_seed1"], [0.9, 0.8]))
    assert kept == ["m_seed0"] and seed_networks.summarise(row)["accuracy_per_seed"] == [0.9, 0.7]
    row, kept = seed_networks.merge(_local("m_seed2", 0.7, lr=0.001), _old_row(["m_seed0"], [0.9]))
    assert kept == [] and seed_networks.summarise(row)["seeds"] == 1
    longer = _local("m_seed2", 0.7) | {"steps": 6000}
    row, kept = seed_networks.merge(longer, _old_row(["m_seed0"], [0.9]))
    assert kept == [] and seed_networks.summarise(row)["seeds"] == 1
    other_split = _local("m_seed2", 0.7) | {"n": 120}
    assert seed_networks.merge(other_split, _old_row(["m_seed0"], [0.9]))[1] == []
    row, kept = seed_networks.merge({"status": "not run"}, _old_row(["m_seed0"], [0.9]))
    assert kept == ["m_seed0"] and seed_networks.summarise(row)["accuracy_mean"] == 0.9


def test_a_row_with_its_own_step_budget_has_its_own_runs(tmp_path, monkeypatch):
    rows = {label: rest for label, *rest in seed_networks.rows_of("classic_pbc_colour")}
    model, kw, steps, train = rows["Conv2D CNN + BatchNorm before the dense layer, colour input, 6000 steps"]
    assert steps == 6000 and train is None and rows["Conv2D CNN + BatchNorm before the dense layer, colour input"][2] is None
    long, short = (seed_networks.run_name("classic_pbc_colour", model, kw, "seed0", s) for s in (6000, None))
    assert long != short and "steps6000" in long
    # a row's training settings reach its config and its run names, so its runs never mix with the plain row's
    *_, ema_steps, ema = rows["Conv2D CNN + BatchNorm before the dense layer, colour input, 6000 steps, weight EMA 0.999"]
    assert ema == {"ema_decay": 0.999} and ema_steps == 6000
    ema_name = seed_networks.run_name("classic_pbc_colour", model, kw, "seed0", 6000, ema)
    assert ema_name == long.replace("_seed0", "_ema0.999_seed0")
    args = SimpleNamespace(size=64, threads=2, workers=0)
    monkeypatch.setattr(seed_networks, "split_file", lambda data: "split.json")  # no split made here
    assert seed_networks.config("classic_pbc_colour", model, kw, 1e-3, 0, 6000, args, ema)["ema_decay"] == 0.999
    assert "ema_decay" not in seed_networks.config("classic_pbc_colour", model, kw, 1e-3, 0, 6000, args)
    # a colour row with the classic filter and mask: its input settings reach the config and the run name
    *_, masked = rows["Conv2D CNN + BatchNorm before the dense layer, colour input, 6000 steps, Gaussian filter and "
                      "whole-cell mask"]
    cfg = seed_networks.config("classic_pbc_colour", model, kw, 1e-3, 0, 6000, args, masked)
    assert cfg["keep_cytoplasm"] and cfg["mask_background"] and cfg["gaussian_sigma"] == 1.0 and not cfg.get("grayscale")
    assert seed_networks.run_name("classic_pbc_colour", model, kw, "seed0", 6000, masked) == \
        long.replace("_seed0", "_mask1_keep1_gaussian1_seed0")
    # the filter's ablation keeps the same mask without the Gaussian filter, under a name of its own
    *_, unfiltered = rows["Conv2D CNN + BatchNorm before the dense layer, colour input, 6000 steps, whole-cell mask, "
                          "no filter"]
    cfg = seed_networks.config("classic_pbc_colour", model, kw, 1e-3, 0, 6000, args, unfiltered)
    assert cfg["keep_cytoplasm"] and cfg["mask_background"] and "gaussian_sigma" not in cfg
    assert seed_networks.run_name("classic_pbc_colour", model, kw, "seed0", 6000, unfiltered) == \
        long.replace("_seed0", "_mask1_keep1_seed0")
    # the paper network's filter ablation: the same input settings, its own runs (no BatchNorm in the name)
    paper_model, paper_kw, _, paper_unfiltered = rows["Conv2D CNN, colour input, 6000 steps, whole-cell mask, no filter"]
    assert paper_unfiltered == unfiltered and paper_kw == {}
    assert seed_networks.run_name("classic_pbc_colour", paper_model, paper_kw, "seed0", 6000, paper_unfiltered) == \
        "classic_cnn_pbc_steps6000_mask1_keep1_seed0"
    assert seed_networks.run_name("classic_pbc_colour", model, kw, "sweep") == \
        seed_networks.run_name("classic_pbc_colour", model, kw, "sweep", None)  # a step budget makes no sweep of its own
    monkeypatch.setattr(seed_networks, "RUNS", tmp_path)
    (tmp_path / short / "test").mkdir(parents=True)
    (tmp_path / short / "test" / "metrics.json").write_text("{}")
    assert seed_networks.finished(seed_networks.run_name("classic_pbc_colour", model, kw, "seed*")) == [short]
    assert seed_networks.row_for("classic_pbc_colour", model, kw, 6000) == {"status": "not run"}


def test_the_lr_column_says_whether_the_seeds_ran_at_the_sweeps_pick():
    def column(sweep):
        return seed_networks.fmt(seed_networks.summarise(_local("m_seed0", 0.8) | {"sweep": sweep})).split(" | ")[6]
    assert column(None) == "0.003 (fixed)"
    assert column({"chosen_lr": 0.003}) == "0.003"
    assert column({"chosen_lr": 0.0003}) == "0.003 (fixed; sweep: 0.0003)"


def test_a_rows_sweep_trains_on_the_rows_own_input(tmp_path, monkeypatch):
    rows = {label: rest for label, *rest in seed_networks.rows_of("classic_pbc")}
    model, kw, _, train = rows["ResNet-34, whole-cell mask"]
    made = {}
    monkeypatch.setattr(seed_networks, "split_file", lambda data: "split.json")
    monkeypatch.setattr(seed_networks, "RUNS", tmp_path)
    monkeypatch.setattr(seed_networks.common, "run", lambda group, name, **cfg: made.update({name: cfg}))
    monkeypatch.setattr(seed_networks, "best_val_acc", lambda name: {1e-3: 0.8, 3e-3: 0.7}[made[name]["lr"]])
    args = SimpleNamespace(size=64, threads=2, workers=0, lrs=[1e-3, 3e-3], sweep_steps=400)
    assert seed_networks.sweep("classic_pbc", model, kw, args, train) == 1e-3
    assert len(made) == 2 and all(c["keep_cytoplasm"] and c["max_steps"] == 400 for c in made.values())
    plain = seed_networks.run_name("classic_pbc", model, kw, "sweep")
    assert not (tmp_path / f"{plain}.json").exists()  # the Otsu-mask row's sweep is not this row's
    assert (tmp_path / f"{seed_networks.run_name('classic_pbc', model, kw, 'sweep', train=train)}.json").is_file()


def test_the_ablations_full_model_takes_committed_seeds_from_the_table_that_shares_its_runs(tmp_path, monkeypatch):
    import json

    full = ("ddrnet", {}, None)
    assert seed_networks.run_name("ddrnet_ablation_taleqani", *full[:2], "seed0") == \
        seed_networks.run_name("ddrnet_taleqani", *full[:2], "seed0")  # the same runs
    monkeypatch.setattr(seed_networks, "ROOT", tmp_path)
    (tmp_path / "results").mkdir()

    def commit(table, label, runs):
        row = {"name": label, **_old_row(runs, [0.9] * len(runs))}
        (tmp_path / "results" / f"{table}.json").write_text(json.dumps({"rows": [row]}))

    assert seed_networks.committed_row("ddrnet_ablation_taleqani", "DDRNet full", *full) is None
    commit("ddrnet_taleqani", "DDRNet (full)", ["ddrnet_taleqani_all_seed0", "ddrnet_taleqani_all_seed1"])
    assert len(seed_networks.committed_row("ddrnet_ablation_taleqani", "DDRNet full", *full)["runs"]) == 2
    commit("ddrnet_ablation_taleqani", "DDRNet full", ["ddrnet_taleqani_all_seed1"])  # fewer: the other wins
    assert len(seed_networks.committed_row("ddrnet_ablation_taleqani", "DDRNet full", *full)["runs"]) == 2
    # a row of another data set or model never lends its seeds
    assert seed_networks.committed_row("ddrnet_ablation_pbc4", "DDRNet full", *full) is None
    assert seed_networks.committed_row("ddrnet_ablation_taleqani", "DDRNet conv", "ddrnet", {"variant": "conv"},
                                       None) is None


def test_another_input_size_gets_its_own_run_names_and_results_file(monkeypatch):
    """The papers' 224-px protocol (on a GPU) must never overwrite or merge with the 64-px CPU runs and tables."""
    cpu_name = seed_networks.run_name("ddrnet_pbc4", "resnet18", {}, "seed0")
    cpu_file = seed_networks.results_stem("ddrnet_pbc4")
    monkeypatch.setattr(seed_networks, "size", 224)
    gpu_name = seed_networks.run_name("ddrnet_pbc4", "resnet18", {}, "seed0")
    assert cpu_name == "resnet18_pbc4_seed0" and gpu_name == "resnet18_pbc4_px224_seed0"
    assert cpu_file.name == "ddrnet_pbc4" and seed_networks.results_stem("ddrnet_pbc4").name == "ddrnet_pbc4_224px"


def test_seed_tables_name_the_environment_of_each_seed(tmp_path, monkeypatch):
    import json

    from leukodx.train.environment import save_environment

    monkeypatch.setattr(seed_networks, "RUNS", tmp_path)
    for run in ("a_seed0", "a_seed1"):
        (tmp_path / run).mkdir()
    key = save_environment(tmp_path / "a_seed0")
    save_environment(tmp_path / "a_seed1")
    assert seed_networks.environment_of("a_seed0")["key"] == key and seed_networks.environment_of("gone") == {}
    seeds = [{"run": "a_seed0", "environment": key}, {"run": "a_seed1", "environment": key},
             {"run": "old_seed2", "environment": "?"}, {"run": "b_seed0", "environment": "0123456789ab"},
             {"run": "c_seed0", "environment": "ba9876543210"}]
    results = [("row", {"per_seed": seeds}), ("not run", {"status": "not run"})]
    env = json.loads((tmp_path / "a_seed0" / "environment.json").read_text())
    # runs gone from this checkout keep their environment through the committed results file
    committed = {"0123456789ab": {k: v for k, v in env.items() if k != "key"} | {"cpu": "Another CPU"}}
    envs = seed_networks.environments(results, committed)
    assert set(envs) == {key, "0123456789ab", "ba9876543210"}  # seeds made before runs recorded it ("?") have none
    assert envs[key]["packages"] == env["packages"] and "key" not in envs[key] and envs["ba9876543210"] is None
    lines = seed_networks.environment_lines(results, envs)
    mine = next(x for x in lines if key in x)
    assert env["packages"]["lightning"] in mine and "made a_seed0, a_seed1." in mine
    assert any("0123456789ab: Another CPU" in x and "made b_seed0." in x for x in lines)
    assert any("ba9876543210: not recorded" in x for x in lines)
