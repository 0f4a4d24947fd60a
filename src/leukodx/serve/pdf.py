"""The case report as a PDF to file (matplotlib, no browser): counts with 95% intervals, referred
images nobody reviewed, and one line per image with both labels and the input's sha256."""
from __future__ import annotations

import io
import textwrap
from datetime import UTC, datetime


def _ci(k: int, n: int) -> str:
    from scipy.stats import binomtest
    if n == 0:
        return "-"
    lo, hi = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return f"{k / n:.0%} [{lo:.0%}, {hi:.0%}]"


def case_pdf(case: dict) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    s = case["summary"]
    head = [f"leukodx case report: {case['name']}",
            (f"Model: {case['model']}   Created: {case['created'][:19]} UTC   "
            f"Printed: {datetime.now(UTC).isoformat()[:19]} UTC"),
            (f"{s['n']} images, {s['reviewed']} reviewed, {s['counted']} counted; "
            f"{s['referred_unreviewed']} referred and NOT reviewed (left out of the counts)."),
            ("Final label = the reviewer's where reviewed, else the model's. Model labels are suggestions "
            "for a person to check."),
            *(w for lim in s.get("limited_to", []) for w in textwrap.wrap(f"Answers limited to: {lim}.", 110)),
            *(textwrap.wrap(f"WARNING: {s['lab_shift_flag']}", 110) if s.get("lab_shift_flag") else []), ""]
    counts = [["label", "images", "share [95% CI]"]] + [[k, str(v), _ci(v, s["counted"])]
                                                         for k, v in sorted(s["counts"].items())]
    rows = [["file", "model label (p)", "referral", "reviewer label", "sha256"]]
    for im in case["images"]:
        p = "invalid" if im["probability"] is None else f"{im['probability']:.2f}"
        rev = im["review"]["label"] + f" ({im['review']['reviewer']})" if im["review"] else \
            ("NOT REVIEWED" if im["refer"] else "-")
        refer = (im["refer_reason"] or "-") if im["refer"] else "no"
        if im.get("outside_limit") is not None:
            refer += f" ({im['outside_limit']}% outside limit)"
        if im.get("grayscale_copy"):
            refer += " (read in grayscale)"
        rows.append([im["filename"][:40], f"{im['label']} ({p})", refer, rev, im["sha256"][:12]])
    buf = io.BytesIO()
    per_page = 30
    with PdfPages(buf) as pdf:
        chunks = [rows[1:][i:i + per_page] for i in range(0, max(1, len(rows) - 1), per_page)] or [[]]
        for n, chunk in enumerate(chunks):
            fig = plt.figure(figsize=(8.27, 11.69))  # A4
            y = 0.96
            if n == 0:
                for i, line in enumerate(head):
                    fig.text(0.06, y, line, fontsize=13 if i == 0 else 8.5, weight="bold" if i == 0 else "normal")
                    y -= 0.025
                ax = fig.add_axes((0.06, y - 0.03 * len(counts), 0.6, 0.03 * len(counts)))
                ax.axis("off")
                ax.table(cellText=counts, loc="upper left", cellLoc="left").auto_set_font_size(False)
                y -= 0.03 * len(counts) + 0.03
            if chunk:
                h = min(y - 0.04, 0.025 * (len(chunk) + 1))
                ax = fig.add_axes((0.04, y - h, 0.92, h))
                ax.axis("off")
                t = ax.table(cellText=[rows[0]] + chunk, loc="upper left", cellLoc="left")
                t.auto_set_font_size(False)
                t.set_fontsize(7)
            fig.text(0.5, 0.02, f"page {n + 1} of {len(chunks)}", ha="center", fontsize=7)
            pdf.savefig(fig)
            plt.close(fig)
    return buf.getvalue()
