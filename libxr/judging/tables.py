"""xr-eval's report as tables — built once as (title, header, rows), then drawn
with rich on stderr or as Markdown on stdout."""

from libxr.judging.calibration import FIELDS
from libxr.judging.evaluation import CALIBRATION
from libxr.judging.metrics import HEADLINE

PER_CLASS = ("support", "sensitivity", "specificity", "precision", "f1", "auc", "pr_auc")
BY = {"binary": ("accuracy", "sensitivity", "specificity", "f1", "kappa", "auc"),
      "multiclass": ("accuracy", "balanced_accuracy", "kappa", "f1_macro", "auc_macro"),
      "multilabel": ("accuracy", "f1_macro", "auc_macro", "auc_micro")}


def _fmt(value, ci=None):
    if value is None:
        return "—"
    if isinstance(value, int):
        return str(value)
    text = f"{value:.3f}"
    return f"{text} ({ci[0]:.3f}–{ci[1]:.3f})" if ci else text


def tables(report):
    """[(title, header, rows)] for a report from libxr.judging.evaluation.evaluate."""
    kind = report["task"]["kind"]
    sections = report["sections"]
    names = list(sections)
    out = []
    ci = next((s for s in sections.values() if "ci_level" in s), None)
    title = "metrics" + (f" ({ci['ci_level']:.0%} interval, {ci['ci_resampled']} resampled)" if ci else "")
    if report.get("aggregate"):
        title += f", one prediction per {report['aggregate']}"
    rows = [["records", *[_fmt(sections[n]["n"]) for n in names]]]
    if kind == "binary":
        rows.append(["threshold", *[_fmt(sections[n]["threshold"]) for n in names]])
    for key in HEADLINE[kind]:
        rows.append([key, *[_fmt(sections[n].get(key), sections[n].get("ci", {}).get(key)) for n in names]])
    if any("temperature" in sections[n] for n in names):      # scores calibrated: the raw ones' too
        rows += [[f"{key}_raw", *[_fmt(sections[n].get(f"{key}_raw")) for n in names]] for key in CALIBRATION]
        for field in FIELDS:
            if any(field in sections[n] for n in names):
                rows.append([field, *[_per_label(sections[n].get(field)) for n in names]])
    out.append((title, ["metric", *names], rows))
    for name in names:
        section = sections[name]
        detail = section.get("per_class") or section.get("per_label")
        if detail:
            out.append((f"{name}: per {'label' if kind == 'multilabel' else 'class'}", ["", *PER_CLASS],
                        [[c, *[_fmt(_support(r) if k == "support" else r.get(k)) for k in PER_CLASS]]
                         for c, r in detail.items()]))
        if "confusion" in section:
            labels, matrix = section["confusion"]["labels"], section["confusion"]["matrix"]
            out.append((f"{name}: confusion, true × predicted", ["", *labels],
                        [[label, *map(str, row)] for label, row in zip(labels, matrix)]))
        for field, groups in section.get("by", {}).items():
            out.append((f"{name}: by {field}", [field, "n", *BY[kind]],
                        [[value, str(r["n"]), *[_fmt(r.get(k)) for k in BY[kind]]] for value, r in groups.items()]))
    return out


def _per_label(value):
    """One temperature (or shift), or the range of the per-label ones."""
    if isinstance(value, dict):
        return f"{min(value.values()):.3f}–{max(value.values()):.3f} per label"
    return _fmt(float(value)) if value is not None else "several"


def _support(row):
    return row.get("support", row.get("positives"))


def rich_tables(report):
    from rich.table import Table

    out = []
    for title, header, rows in tables(report):
        table = Table(title=title, title_justify="left")
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        out.append(table)
    return out


def markdown(report):
    parts = []
    for title, header, rows in tables(report):
        lines = [f"### {title}", "", "| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"
