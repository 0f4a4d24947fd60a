"""Markdown result tables from metrics dicts (as written by evaluation): value [95% CI] per cell."""
from __future__ import annotations

import json
from pathlib import Path

DEFAULT_KEYS = ("accuracy", "macro_f1", "mcc", "macro_precision", "macro_recall", "roc_auc")


def cell(m: dict, key: str) -> str:
    if key not in m or m[key] is None:
        return "-"
    ci = m.get("ci95", {}).get(key)
    return f"{m[key]:.4f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{m[key]:.4f}"


def metrics_table(rows: list[tuple[str, dict]], keys=DEFAULT_KEYS, extra: dict[str, str] | None = None) -> str:
    """rows: (label, metrics). `extra` maps a column title to a metrics key shown as is (e.g. train time)."""
    extra = extra or {}
    head = ["model", "test n", *keys, *extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, m in rows:
        vals = [label, str(m.get("n", "-")), *(cell(m, k) for k in keys)]
        vals += [str(m.get(k, "-")) for k in extra.values()]
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def write_results(out_stem: str | Path, rows: list[tuple[str, dict]], title: str, notes: list[str],
                  keys=DEFAULT_KEYS, extra: dict[str, str] | None = None) -> Path:
    """Write OUT.json (every row's full metrics) and OUT.md (title, notes, table)."""
    out = Path(out_stem)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"title": title, "notes": notes,
                                                    "rows": [{"name": n, **m} for n, m in rows]}, indent=1))
    md = [f"# {title}", "", *[f"- {n}" for n in notes], "", metrics_table(rows, keys, extra)]
    out.with_suffix(".md").write_text("\n".join(md))
    return out.with_suffix(".md")
