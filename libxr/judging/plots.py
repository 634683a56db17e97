"""PNG figures people would rather look at than read: training curves, ROC and
precision-recall curves, confusion matrices and reliability diagrams.

Drawn with matplotlib's Agg backend (no display needed on a cluster node) and
written atomically.
"""

import contextlib

import numpy as np

from libxr.atomic import atomic_output
from libxr.judging.metrics import ECE_BINS, expected_calibration_error


@contextlib.contextmanager
def figure(png, ncols=1, nrows=1, width=5.0, height=4.5):
    """A figure of nrows × ncols axes (yielded as a flat list), saved to ``png`` on success."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    try:
        yield fig, list(axes.flat)
        fig.tight_layout()
        with atomic_output(png, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)


def plot_curves(rows, png):
    """Loss and AUC (or accuracy) per epoch, train and validation, from a run's metrics.jsonl rows
    (libxr.learning.history)."""
    if not rows:
        return
    epochs = [r["epoch"] for r in rows]
    second = "auc" if any(r.get("val_auc") is not None for r in rows) else "accuracy"
    with figure(png, 2) as (_, axes):
        for ax, metric in zip(axes, ("loss", second)):
            for split in ("train", "val"):
                values = [r.get(f"{split}_{metric}") for r in rows]
                ax.plot(epochs, [np.nan if v is None else v for v in values], marker="o", label=split)
            ax.set_xlabel("epoch")
            ax.set_title(metric)
            ax.legend()
            ax.grid(alpha=0.3)


def _curves(task, y, p):
    """(name, 0/1 truth, probability) per class or label for one-vs-rest curves."""
    if task.kind == "binary":
        return [(task.names[1], y.astype(int), p)]
    if task.kind == "multiclass":
        return [(name, (y == j).astype(int), p[:, j]) for j, name in enumerate(task.names)]
    out = []
    for j, name in enumerate(task.names):
        known = ~np.isnan(y[:, j])
        out.append((name, y[known, j].astype(int), p[known, j]))
    return out


def plot_roc(task, y, p, png, title, threshold=None):
    """One-vs-rest ROC curves; a binary task's operating point at ``threshold`` is marked."""
    from sklearn.metrics import auc, roc_curve

    with figure(png) as (_, (ax,)):
        for name, truth, prob in _curves(task, y, p):
            if len(np.unique(truth)) == 2:
                fpr, tpr, _ = roc_curve(truth, prob)
                ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
                if task.kind == "binary" and threshold is not None:
                    pred = prob >= threshold
                    ax.plot([pred[truth == 0].mean()], [pred[truth == 1].mean()], "o", color="black",
                            label=f"threshold {threshold:.3f}")
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set(xlabel="1 − specificity (false positive rate)", ylabel="sensitivity (true positive rate)",
               title=f"ROC — {title}", xlim=(0, 1), ylim=(0, 1.01))
        _legend(ax, "lower right", "no curve: a class is missing from this split")
        ax.grid(alpha=0.3)


def _legend(ax, loc, empty):
    """The legend, or what the empty axes mean (matplotlib only warns of a legend with nothing in it)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc=loc, fontsize="small")
    else:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)


def plot_pr(task, y, p, png, title):
    from sklearn.metrics import average_precision_score, precision_recall_curve

    with figure(png) as (_, (ax,)):
        for name, truth, prob in _curves(task, y, p):
            if truth.any():
                precision, recall, _ = precision_recall_curve(truth, prob)
                ax.plot(recall, precision, label=f"{name} (AP {average_precision_score(truth, prob):.3f})")
        ax.set(xlabel="recall (sensitivity)", ylabel="precision", title=f"Precision-recall — {title}",
               xlim=(0, 1), ylim=(0, 1.01))
        _legend(ax, "lower left", "no curve: no positive in this split")
        ax.grid(alpha=0.3)


def plot_confusion(section, png, title):
    """The section's confusion matrix, or one 2 × 2 matrix per label (multi-label)."""
    matrices = ([(title, section["confusion"])] if "confusion" in section else
                [(label, r["confusion"]) for label, r in section.get("per_label", {}).items()])
    cols = min(len(matrices), 4)
    k = len(matrices[0][1]["labels"])
    size = max(3.0, 0.6 * k + 2)
    with figure(png, cols, -(-len(matrices) // cols), size, size) as (_, axes):
        for ax in axes[len(matrices):]:
            ax.axis("off")
        for ax, (name, confusion) in zip(axes, matrices):
            m = np.asarray(confusion["matrix"])
            ax.imshow(m, cmap="Blues")
            labels = confusion["labels"]
            ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="true",
                   title=name)
            ax.set_xticklabels(labels, rotation=30, ha="right", fontsize="small")
            ax.set_yticklabels(labels, fontsize="small")
            for (i, j), v in np.ndenumerate(m):
                ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")


def plot_calibration(task, y, p, png, title, raw=None):
    """Reliability diagram: observed frequency against predicted probability in libxr.judging.metrics's
    ECE bins — top class for multiclass, every label pooled for multi-label —, of the scores and,
    when given, of the ``raw`` scores before calibration, with each one's ECE."""
    from sklearn.calibration import calibration_curve

    curves = [("scores", p, "-")] if raw is None else [("before calibration", raw, "--"), ("calibrated", p, "-")]
    pooled = " pooled over labels" if task.kind == "multilabel" else ""
    with figure(png) as (_, (ax,)):
        for name, scores, style in curves:
            truth, prob = _reliability_pairs(task, y, scores)
            if len(truth):
                observed, predicted = calibration_curve(truth, prob, n_bins=ECE_BINS, strategy="uniform")
                ece = expected_calibration_error(truth, prob)
                ax.plot(predicted, observed, style, marker="o", label=f"{name} (ECE {ece:.3f}{pooled})")
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect")
        ax.set(xlabel="predicted probability", ylabel="observed frequency", title=f"Reliability — {title}",
               xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper left", fontsize="small")
        ax.grid(alpha=0.3)


def _reliability_pairs(task, y, p):
    """(0/1 truth, probability) the reliability diagram and ECE are drawn from."""
    if task.kind == "multiclass":
        return (p.argmax(1) == y).astype(int), p.max(1)
    pairs = _curves(task, y, p)
    return np.concatenate([t for _, t, _ in pairs]), np.concatenate([q for _, _, q in pairs])


def report_plots(preds, report, folder, history=None):
    """xr-eval's figures for each section of ``report`` (and the training curves of ``history``, a
    run's metrics rows); the paths written."""
    import os

    os.makedirs(folder, exist_ok=True)
    written = []
    for split, section in report["sections"].items():
        part = preds.split(split)
        name = os.path.join(folder, split)
        plot_roc(preds.task, part.y, part.p, f"{name}-roc.png", split, section.get("threshold"))
        plot_pr(preds.task, part.y, part.p, f"{name}-pr.png", split)
        plot_calibration(preds.task, part.y, part.p, f"{name}-calibration.png", split, part.raw)
        plot_confusion(section, f"{name}-confusion.png", split)
        written += [f"{name}-{kind}.png" for kind in ("roc", "pr", "calibration", "confusion")]
    if history:
        written.append(os.path.join(folder, "training.png"))
        plot_curves(history, written[-1])
    return written
