"""How often the lab-shift flag (`leukodx.heads.referral.lab_shift_flag`) fires on a batch of images from
each test set, shift and other lab (issue 14). Reads the unfamiliar-image counts of the shipped models'
robustness files (results/{all_severity,wbc_type}_robustness.json, all images of each row scored by the
model) and gives, for a batch of n images drawn from that row, the probability that the flag fires
(exact: the number of unfamiliar images in the batch is binomial with the row's unfamiliar share).
Writes results/lab_shift_flag.{json,md}.
  python benchmarks/lab_shift_flag.py
"""
import json
from pathlib import Path

from scipy.stats import binom

from leukodx.heads.referral import SHIFT_ALPHA, SHIFT_EXPECTED, lab_shift_flag

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (25, 50, 100, 200)


def smallest_flagged(n: int) -> int | None:
    """The fewest unfamiliar images out of n that raise the flag (the flag's own rule, searched)."""
    for k in range(n + 1):
        if lab_shift_flag(["unfamiliar_image"] * k + [None] * (n - k)):
            return k
    return None


def main():
    crit = {n: smallest_flagged(n) for n in BATCHES}
    rows = []
    for model in ("wbc_type", "all_severity"):
        for r in json.loads((ROOT / "results" / f"{model}_robustness.json").read_text())["rows"]:
            share = r["reasons"].get("unfamiliar_image", 0) / r["n"]
            fire = {n: float(binom.sf(crit[n] - 1, n, share)) if crit[n] is not None else 0.0 for n in BATCHES}
            rows.append({"model": model, "set": r["set"], "shift": r["shift"], "n": r["n"], "unfamiliar_share": share,
                         "accuracy": r["accuracy"], "flag_probability": fire,
                         "flag_on_whole_set": lab_shift_flag(["unfamiliar_image"] * round(share * r["n"])
                                                             + [None] * (r["n"] - round(share * r["n"]))) is not None})
    (ROOT / "results" / "lab_shift_flag.json").write_text(json.dumps({"critical_counts": crit, "rows": rows}, indent=1))
    lines = ["# Lab-shift flag: how often it fires on a batch of images (`python benchmarks/lab_shift_flag.py`)", "",
             (f"- The flag fires when a batch has significantly more unfamiliar images than {100 * SHIFT_EXPECTED:.0f}% "
              f"(one-sided exact binomial test, level {SHIFT_ALPHA}): at least "
              + ", ".join(f"{crit[n]} of {n}" for n in BATCHES) + "."),
             ("- Unfamiliar share: from the shipped models' robustness files (the whole test side or lab, scored by the "
              "model). P(flag | batch of n) assumes a batch of n images drawn from that row."),
             "- In distribution ('none' on the own test side) the flag should stay silent; on shifts and other labs it should fire.", "",
             "| model | set | shift | n | accuracy | unfamiliar share | whole set flagged | "
             + " | ".join(f"P(flag), batch of {n}" for n in BATCHES) + " |",
             "|---|---|---|---|---|---|---|" + "---|" * len(BATCHES)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['set']} | {r['shift']} | {r['n']} | {r['accuracy']:.3f} | "
                     f"{r['unfamiliar_share']:.3f} | {'yes' if r['flag_on_whole_set'] else 'no'} | "
                     + " | ".join(f"{r['flag_probability'][n]:.3f}" for n in BATCHES) + " |")
    (ROOT / "results" / "lab_shift_flag.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
