"""End-to-end `predict` throughput and peak memory over a folder of real JPEGs (decode included).

Each backend runs in a fresh process so peak RSS is its own. Writes results/predict_throughput.{json,md} (`--model all`) or results/predict_throughput_MODEL.{json,md}.
For a model whose preparing finds cells, files are prepared (decode, cell-finding, image checks) on one
thread while the network runs on the others; otherwise between batches, the network on every core
(`leukodx.predict.results.network_threads`). `--threads N` sets the ONNX network's threads.
Usage: python benchmarks/predict_throughput.py [--model all] [--data taleqani_all] [--n 512] [--threads N] [--repeats 5]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one(model: str, data: str, n: int, backend: str, threads: int, repeats: int) -> dict:
    """backend 'torch': the PyTorch Predictor; 'onnx': the torch-free OnnxPredictor on the exported .onnx
    (what `leukodx predict --backend onnx` runs for the shipped models)."""
    from leukodx.data.recipes import load_dataset
    from leukodx.predict.shipped import resolve_model

    paths = [r.path for r in load_dataset(data).records][:n]
    if backend == "onnx":
        from leukodx.predict.lean import OnnxPredictor
        p = OnnxPredictor(resolve_model(model, ".onnx"), threads=threads)
        size = p.meta["preprocess"]["image_size"]
        arch = p.meta["arch"]
        net_threads = p.session.get_session_options().intra_op_num_threads
    else:
        import torch

        from leukodx.predict.predictor import Predictor
        from leukodx.predict.results import finds_cells, network_threads
        p = Predictor.load(resolve_model(model))
        torch.set_num_threads(threads or network_threads())
        if finds_cells(p.pre.cfg):  # predict_paths caps torch there for folder runs
            torch.set_num_threads(min(torch.get_num_threads(), network_threads(p.pre.cfg)))
        net_threads = torch.get_num_threads()
        size, arch = p.bundle.preprocess["image_size"], p.bundle.arch
    p.predict_paths(paths[:32])  # warm-up not timed
    rates = []
    for _ in range(repeats):  # this machine's speed wanders by 10-30% between passes: report the median
        t0 = time.perf_counter()
        preds, errors = p.predict_paths(paths)
        rates.append(len(preds) / (time.perf_counter() - t0))
    # the per-image checks behind the `unreadable` / `not_a_cell` referral reasons, alone (best of 3 passes)
    from leukodx.data.images import load_image
    from leukodx.heads.image_checks import image_problem
    arrays = [p.pre.array(load_image(x)) for x in paths[:128]]
    checks = []
    for _ in range(3):
        t0 = time.perf_counter()
        [image_problem(a) for a in arrays]
        checks.append(1000 * (time.perf_counter() - t0) / len(arrays))
    return {"backend": backend, "images": len(preds), "errors": len(errors), "repeats": repeats,
            "image_checks_ms_per_image": min(checks),
            "images_per_second": statistics.median(rates), "images_per_second_per_pass": rates,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "network_threads": net_threads, "image_size": size, "arch": arch}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="all")
    ap.add_argument("--data", default="taleqani_all")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--threads", type=int, default=0, help="the network's threads (0: the predictor's default)")
    ap.add_argument("--repeats", type=int, default=5, help="timed passes over the images; the median is reported")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(one(a.model, a.data, a.n, a.child, a.threads, a.repeats)))
        return
    rows = []
    for backend in ("torch", "onnx"):
        out = subprocess.run([sys.executable, __file__, "--model", a.model, "--data", a.data, "--n", str(a.n),
                              "--threads", str(a.threads), "--repeats", str(a.repeats), "--child", backend], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    from leukodx.predict.shipped import resolve_model
    from leukodx.train.environment import environment, environment_key

    env = environment()  # the same code gives 60-160 img/s on different machines: the file says which one
    onnx = resolve_model(a.model, ".onnx")
    res = {"command": "python benchmarks/predict_throughput.py " + " ".join(sys.argv[1:]), "model": a.model,
           "data": a.data, "machine": f"{platform.machine()}, {os.cpu_count()} cores, {env['cpu_capability']}, no GPU",
           "environment": {**env, "key": environment_key(env)}, "onnx_file": onnx.name,
           "onnx_sha256": hashlib.sha256(onnx.read_bytes()).hexdigest(), "results": rows,
           "note": "end to end: file read + JPEG decode + resize + normalise + forward + softmax + image checks and referral per image, batch 32; files prepared on one thread beside the network where the model finds cells, else between batches (network_threads); median of the timed passes"}
    stem = ROOT / "results" / ("predict_throughput" + ("" if a.model == "all" else f"_{a.model}"))
    stem.parent.mkdir(exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(res, indent=1))
    md = ["| backend | images | images/s (median of passes) | each pass | image checks (ms/image) | peak RSS (MB) | input px | network threads |",
          "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['backend']} | {r['images']} | {r['images_per_second']:.1f} | "
           f"{', '.join(f'{v:.0f}' for v in r['images_per_second_per_pass'])} | {r['image_checks_ms_per_image']:.2f} | "
           f"{r['peak_rss_mb']:.0f} | {r['image_size']} | {r['network_threads']} |" for r in rows]
    stem.with_suffix(".md").write_text(
        f"# predict throughput ({res['model']} model on {res['data']}, {res['machine']})\n\n`{res['command']}`\n\n"
        f"- {env['cpu']} ({env['cpu_capability']}), environment {res['environment']['key']}; "
        f"{onnx.name} sha256 {res['onnx_sha256'][:16]}...\n\n"
        + "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
