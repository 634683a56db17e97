"""Whether a run is learning anything.

A network that predicts one class for every validation record, or whose val AUC stays at chance,
can still finish, write best.pt and exit 0 (issue 14 saw report 000's CNN do so on 1,000 chest
films at 64 px: threshold 1.000, one class everywhere). Such a stretch of ``--patience`` epochs is said while the
run goes on, and a best epoch like that is said at its end, with what to try. Judged from
metrics.jsonl's rows, so a resumed run judges its whole history.
"""

import numpy as np

CHANCE = 0.55       # a val AUC at or below this is no better than guessing on a small val set
TRY = ("try --augment, a lower --lr (1e-4), --class-weights balanced, --arch batch_norm=true where the "
       "model has it, or more epochs, and check the labels (xr-index --summary)")


def predicted_classes(task, scores, threshold):
    """How many classes validation's decisions use — binary at the stored threshold, multiclass by
    argmax — or None (multi-label, whose rare labels are rightly all negative)."""
    scores = np.asarray(scores)
    if task.kind == "binary":
        return int(np.unique(scores >= (0.5 if threshold is None else threshold)).size)
    if task.kind == "multiclass":
        return int(np.unique(scores.argmax(1)).size)
    return None


def _why(row):
    """Why epoch ``row`` is at chance, or None."""
    auc = row.get("val_auc")
    if row.get("val_predicted_classes") == 1:
        return "one class for every val record"
    if auc is not None and auc <= CHANCE:
        return f"val AUC {auc:.3f}"
    return None


def stuck(rows, patience):
    """The warning for the epoch that ends ``patience`` epochs in a row at chance (said once a stretch)."""
    if len(rows) < patience or not all(_why(r) for r in rows[-patience:]):
        return None
    if len(rows) > patience and _why(rows[-patience - 1]):
        return None
    first, last = rows[-patience]["epoch"], rows[-1]["epoch"]
    span = f"epoch {last}" if first == last else f"epochs {first}-{last}"
    return f"{span}: {_why(rows[-1])}: the model is not learning; {TRY}"


def verdict(rows, best):
    """The run's last line: its best epoch (``best``: the early-stopping monitor's), and whether it
    learned nothing. (is_warning, text)."""
    if not best.get("epoch"):
        return False, None
    row = rows[best["epoch"] - 1]
    auc = row.get("val_auc")
    said = f"best epoch {best['epoch']} of {len(rows)}: {best['metric']} {best['value']:.4f}" + (
        f", val AUC {auc:.4f}" if auc is not None and best["metric"] != "val_auc" else "")
    why = _why(row)
    if why:
        why = "at chance" if why.startswith("val AUC") else why     # its AUC is said already
        return True, f"this run learned nothing: {said}, {why}; {TRY}"
    return False, said
