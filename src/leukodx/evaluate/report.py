"""HTML report (self-contained, plots embedded) and a Markdown summary of a metrics.json."""
from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plot_confusion(cm, classes) -> str:
    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(classes), 1 + 0.6 * len(classes)))
    ax.imshow(cm, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, cm[i, j], ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return _png(fig)


def plot_roc(y, probs, classes) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for c, name in enumerate(classes):
        if 0 < (y == c).sum() < len(y):
            fpr, tpr, _ = roc_curve(y == c, probs[:, c])
            ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.legend(fontsize=7)
    return _png(fig)


def plot_reliability(tables: dict) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    for label, t in tables.items():
        cnt = np.array(t["count"])
        m = cnt > 0
        ax.plot(np.array(t["confidence"])[m], np.array(t["accuracy"])[m], "o-", label=label, ms=3)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    return _png(fig)


def read_history(metrics_csv: Path) -> dict[str, list[tuple[int, float]]]:
    """Per-epoch values from Lightning's CSVLogger file."""
    hist: dict[str, list] = {}
    if not metrics_csv.is_file():
        return hist
    with open(metrics_csv) as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                if k not in ("epoch", "step") and v not in ("", None):
                    hist.setdefault(k, []).append((int(float(row["epoch"])), float(v)))
    return hist


def plot_history(hist: dict) -> str | None:
    if not hist:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for k in ("train_loss", "val_loss", "val_acc"):
        if k in hist:
            e, v = zip(*hist[k])
            ax.plot(e, v, "o-", ms=3, label=k)
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)
    return _png(fig)


def _fmt(v, ci=None) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    s = f"{v:.4f}"
    return s + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def write_html_report(path: Path, title: str, metrics: dict, y, probs, extra: dict | None = None,
                      history_csv: Path | None = None, reliability_tables: dict | None = None,
                      images: dict[str, str] | None = None) -> Path:
    """`extra`: key -> value rows shown at the top (protocol, timing, baseline ...)."""
    y, probs = np.asarray(y), np.asarray(probs)
    classes = metrics["classes"]
    ci = metrics.get("ci95", {})
    rows = "".join(f"<tr><td>{k}</td><td>{_fmt(metrics[k], ci.get(k))}</td></tr>"
                   for k in ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1", "mcc",
                             "roc_auc"))
    pc = metrics["per_class"]
    sens_ci, spec_ci = ci.get("per_class_sensitivity"), ci.get("per_class_specificity")
    per_class = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{pc['support'][i]}</td><td>{_fmt(pc['precision'][i])}</td>"
        f"<td>{_fmt(pc['recall_sensitivity'][i], sens_ci[i] if sens_ci else None)}</td>"
        f"<td>{_fmt(pc['specificity'][i], spec_ci[i] if spec_ci else None)}</td><td>{_fmt(pc['f1'][i])}</td></tr>"
        for i, c in enumerate(classes))
    info = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in (extra or {}).items())
    plots = {"Confusion matrix": plot_confusion(metrics["confusion_matrix"], classes), "ROC": plot_roc(y, probs, classes)}
    if reliability_tables:
        plots["Reliability"] = plot_reliability(reliability_tables)
    if history_csv is not None and (h := plot_history(read_history(history_csv))):
        plots["Learning curves"] = h
    plots.update(images or {})
    figs = "".join(f"<figure><figcaption>{k}</figcaption><img src='data:image/png;base64,{v}'></figure>"
                   for k, v in plots.items())
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}
figure{{display:inline-block;margin:8px}}</style></head><body>
<h1>{html.escape(title)}</h1><table>{info}</table>
<h2>Metrics on {metrics['n']} test images (95% CI: {html.escape(ci.get('method', 'none'))})</h2><table>{rows}</table>
<h2>Per class</h2><table><tr><th>class</th><th>n</th><th>precision</th><th>sensitivity</th><th>specificity</th><th>F1</th></tr>{per_class}</table>
<h2>Plots</h2>{figs}</body></html>"""
    path.write_text(doc)
    return path
