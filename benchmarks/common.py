"""Shared by the benchmark scripts: train one named run and return its test metrics, with wall time
added. A run is reused only when its key (a hash of its config and of the leukodx source files that
training imports) matches the one it was made with; a stale run is moved aside to NAME.KEY.stale (KEY: its own run key) and made again."""
import ast
import hashlib
import json
import shutil
import time
from pathlib import Path

from leukodx.config import TrainConfig
from leukodx.train.run import train

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def _module_file(name: str, src: Path) -> Path | None:
    base = src.joinpath(*name.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def _imports(path: Path, src: Path) -> set[str]:
    """leukodx modules (and the packages holding them) that a file imports anywhere in its body."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    package = parts[:-1]  # the package a relative import starts from, for __init__.py too
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    split = [n.split(".") for n in names if n.split(".")[0] == "leukodx"]
    return {".".join(p[:i]) for p in split for i in range(1, len(p) + 1)}


def training_sources(src: Path = SRC, entry: str = "leukodx.train.run") -> list[Path]:
    """Every leukodx source file reachable by imports from the training entry point."""
    parts = entry.split(".")
    seen, todo = set(), [".".join(parts[:i]) for i in range(1, len(parts) + 1)]  # importing it runs its packages
    while todo:
        f = _module_file(todo.pop(), src)
        if f and f not in seen:
            seen.add(f)
            todo += _imports(f, src)
    return sorted(seen)


def code_version(src: Path = SRC) -> str:
    """sha256 over the training code (paths and contents): a change to the web app or the CLI leaves runs valid."""
    h = hashlib.sha256()
    for p in training_sources(src):
        h.update(str(p.relative_to(src)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def run_key(cfg: dict, code: str | None = None) -> str:
    """sha256 of the config (seed included) and the training code (`code`: code_version(), computed if not given).
    Seeds of one row always differ in it; a run's `code_version` alone says which training code made it."""
    blob = json.dumps({"config": TrainConfig(**cfg).to_dict(), "code": code or code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def metrics_path(group: str, name: str) -> Path:
    return ROOT / "runs" / group / name / "test" / "metrics.json"


def is_done(group: str, name: str, cfg: dict) -> bool:
    key = ROOT / "runs" / group / name / "run_key.txt"
    return metrics_path(group, name).is_file() and key.is_file() and key.read_text().strip() == run_key(cfg)


def interrupted(out: Path, key: str) -> bool:
    """A run started with this very key (config and code) that stopped after a checkpoint (called for runs
    not done, so its test metrics are missing)."""
    mark = out / "run_key.txt"
    return mark.is_file() and mark.read_text().strip() == key and (out / "checkpoints" / "last.ckpt").is_file()


def earlier_legs(out: Path) -> float:
    """Minutes an interrupted run trained up to its last checkpoint, over all its legs so far (RUN/legs.json,
    rewritten as each leg starts: its time stamp is that leg's start; the first leg's is run_key.txt's)."""
    legs = out / "legs.json"
    done = json.loads(legs.read_text()) if legs.is_file() else []
    start = (legs if legs.is_file() else out / "run_key.txt").stat().st_mtime
    done.append(max(0.0, (out / "checkpoints" / "last.ckpt").stat().st_mtime - start) / 60)
    legs.write_text(json.dumps(done))
    return sum(done)


def run(group: str, name: str, **cfg) -> dict:
    out, done = ROOT / "runs" / group / name, metrics_path(group, name)
    if not is_done(group, name, cfg):
        t, code = time.perf_counter(), code_version()  # the code as the run starts, not as it ends
        key = run_key(cfg, code)
        resume = interrupted(out, key)
        before = earlier_legs(out) if resume else 0.0
        if resume:
            print(f"{group}/{name}: interrupted after {before:.1f} min, resuming from checkpoints/last.ckpt", flush=True)
        elif out.exists():  # kept under its own key, so a run at another rate or with older code is never lost
            old = (out / "run_key.txt").read_text().strip()[:12] if (out / "run_key.txt").is_file() else "unkeyed"
            aside = out.with_name(f"{out.name}.{old}.stale")
            print(f"{group}/{name}: stale (config or code changed) -> {aside.name}, training again", flush=True)
            shutil.rmtree(aside, ignore_errors=True)  # only a copy made with this very key (an interrupted run)
            out.rename(aside)
        if not resume:
            out.mkdir(parents=True)
            (out / "run_key.txt").write_text(key + "\n")  # first, so an interrupted run can be resumed
        train(TrainConfig(**cfg), out, resume=resume, progress=False)
        m = json.loads(done.read_text())
        m["wall_minutes"] = round((time.perf_counter() - t) / 60 + before, 2)
        m["resumed"] = resume
        m["run_key"], m["code_version"] = key, code
        done.write_text(json.dumps(m, indent=1))
        print(f"{group}/{name}: acc {m['accuracy']:.4f} in {m['wall_minutes']} min", flush=True)
    return json.loads(done.read_text())


def tree_metrics(group: str, name: str) -> dict:
    """The XGBoost-head evaluation of a run trained with head: xgboost."""
    return json.loads((ROOT / "runs" / group / name / "xgboost" / "test" / "metrics.json").read_text())


def model_and_split(model: str | Path, config: str = "wbc_type"):
    """A model file, its preprocessing and the grouped split its training config makes of its dev data
    (configs/CONFIG.yaml; the shipped WBC model: PBC) -> (bundle, pre, index, split)."""
    from leukodx.data.recipes import load_dataset
    from leukodx.data.splits import make_split
    from leukodx.models.artifact import ModelBundle
    from leukodx.transforms.preprocess import Preprocess, PreprocessConfig

    bundle = ModelBundle.load(model)
    cfg = TrainConfig.load(ROOT / "configs" / f"{config}.yaml")
    index = load_dataset(cfg.data)
    assert index.classes == bundle.classes, "the dev-data index and the model must order classes alike"
    split = make_split(index, cfg.val_frac, cfg.test_frac, cfg.seed, cfg.use_hashes)
    return bundle, Preprocess(PreprocessConfig(**bundle.preprocess)), index, split


def sides_and_labs(index, split, classes: list[str]):
    """The split's sides and each wbc_external lab (classes mapped by name onto `classes`) ->
    (side -> indices into index, name -> records for train / val / test and each lab, the class map)."""
    from leukodx.data.class_map import map_classes
    from leukodx.data.recipes import lab_of, load_dataset

    sides = {side: split.indices(index, side) for side in ("train", "val", "test")}
    sets = {side: [index.records[i] for i in idx] for side, idx in sides.items()}
    ext, cmap = map_classes(load_dataset("wbc_external"), classes)
    for lab in sorted({lab_of(ext, r) for r in ext.records}):
        sets[lab] = [r for r in ext.records if lab_of(ext, r) == lab]
    return sides, sets, cmap
