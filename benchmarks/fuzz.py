"""Reliability benchmark (issue 18): the unusual corpus (tests/corpus.py) and N mutated image files
through `leukodx predict --backend onnx --out`, as a user runs it. Counts answers, clear errors,
tracebacks (must be 0), silent drops (must be 0), unreferred NaN answers (must be 0) and the peak
memory of the run. Writes results/fuzz.{json,md}.
    .venv/bin/python benchmarks/fuzz.py --n 10000
"""
import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from leukodx.predict.results import collect_images
from tests.corpus import mutated_files, unusual_files

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=10000)
ap.add_argument("--kills-only", action="store_true", help="only the SIGKILL part, added to an existing results file")
a = ap.parse_args()
work = Path(tempfile.mkdtemp())


def kills(n_files: int = 2000, points=(100, 700, 1500)) -> dict:
    """predict --out killed (SIGKILL) after `points` journal rows in turn, then run to the end: every
    finished row must survive, none may repeat."""
    import os
    import signal
    folder = work / "killme"
    mutated_files(folder, n_files, seed=1)
    out, journal = work / "k.json", work / "k.json.partial.jsonl"
    cmd = [sys.executable, "-m", "leukodx.cli", "predict", str(folder), "--model", "wbc", "--backend", "onnx",
           "--out", str(out), "--quiet"]
    seen, killed = set(), 0
    for k in points:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            if journal.is_file() and len(journal.read_text(errors="replace").splitlines()) > k:
                os.kill(proc.pid, signal.SIGKILL)
                killed += 1
                break
            time.sleep(0.01)
        proc.wait()
        rows = [json.loads(x) for x in journal.read_text().splitlines()[1:] if x.strip().endswith("}")]
        seen |= {r["path"] for r in rows}
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    res = json.loads(out.read_text())
    paths = [p["path"] for p in res["predictions"]] + [e["path"] for e in res["errors"]]
    return {"files": n_files, "kills": killed, "rows_before_last_run": len(seen), "final_rows": len(paths),
            "duplicates": len(paths) - len(set(paths)), "lost": len(seen - set(paths)),
            "missing": n_files - len(set(paths)), "tracebacks": int("Traceback" in r.stderr)}


if a.kills_only:
    res = json.loads(Path("results/fuzz.json").read_text())
    res["kill_and_resume"] = kills()
    Path("results/fuzz.json").write_text(json.dumps(res, indent=1))
    k = res["kill_and_resume"]
    md = Path("results/fuzz.md").read_text().split("\n## ")[0].rstrip("\n")
    md += ("\n\n## SIGKILL during `predict --out`\n\n"
           f"- {k['files']} mutated files; killed {k['kills']} times (after 100, 700 and 1,500 journal rows), then run "
           f"to the end: {k['rows_before_last_run']} rows were finished before the last run; final output "
           f"{k['final_rows']} rows, {k['duplicates']} duplicated, {k['lost']} lost, {k['missing']} missing, "
           f"{k['tracebacks']} tracebacks. Command: `.venv/bin/python benchmarks/fuzz.py --kills-only`.\n")
    Path("results/fuzz.md").write_text(md)
    print(md)
    raise SystemExit(0)
sets = {"unusual corpus": unusual_files(work / "corpus"), f"{a.n} mutated files": mutated_files(work / "mutated", a.n)}
rows = []
for name in sets:
    folder = work / ("corpus" if name == "unusual corpus" else "mutated")
    listed, skipped = collect_images(folder)
    out = work / f"{folder.name}.json"
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    r = subprocess.run([sys.executable, "-m", "leukodx.cli", "predict", str(folder), "--model", "wbc", "--backend",
                        "onnx", "--out", str(out), "--quiet"], capture_output=True, text=True, check=False)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    res = json.loads(out.read_text()) if out.is_file() else {"predictions": [], "errors": []}
    preds, errors = res["predictions"], res["errors"]
    nan_unreferred = sum(1 for p in preds if (p["probability"] is None or not math.isfinite(p["probability"]))
                         and not p["refer"])
    rows.append({"set": name, "entries": len(listed) + len(skipped), "answered": len(preds),
                 "clear_errors": len(errors), "tracebacks": int("Traceback" in r.stderr), "exit_code": r.returncode,
                 "silent_drops": len(listed) + len(skipped) - len(preds) - len(errors),
                 "nan_unreferred": nan_unreferred, "referred": sum(p["refer"] for p in preds),
                 "peak_rss_mb": round(max(peak, before) / 1024, 1), "seconds": round(time.perf_counter() - t0, 1)})
    print(rows[-1], flush=True)
res = {"rows": rows, "command": f".venv/bin/python benchmarks/fuzz.py --n {a.n}", "hardware": "2 CPU cores, no GPU",
       "note": "peak_rss_mb: the largest resident set of any predict process so far (ru_maxrss of children)"}
outp = Path("results/fuzz")
outp.with_suffix(".json").write_text(json.dumps(res, indent=1))
md = ["# Reliability: unusual and mutated files through `leukodx predict --backend onnx --out`", "",
      f"- Command: `{res['command']}`; {res['hardware']}. Corpus and mutations: `tests/corpus.py`.",
      "- Targets: 0 tracebacks, 0 silent drops, 0 unreferred NaN answers; peak memory under 600 MB.", "",
      ("| set | entries | answered | clear errors / skips | tracebacks | silent drops | NaN unreferred | referred | "
      "peak RSS MB | s |"), "|---|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    md.append(f"| {r['set']} | {r['entries']} | {r['answered']} | {r['clear_errors']} | {r['tracebacks']} | "
              f"{r['silent_drops']} | {r['nan_unreferred']} | {r['referred']} | {r['peak_rss_mb']} | {r['seconds']} |")
outp.with_suffix(".md").write_text("\n".join(md) + "\n")
print("\n".join(md))
