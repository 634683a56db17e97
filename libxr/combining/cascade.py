"""Classifiers in cascade (report 001): a later stage refines one class of the stage
before it — normal vs infected, then COVID vs viral pneumonia among the infected.

Probabilities compose through the chain, P(COVID) = P(infected) · P(COVID | infected),
so the output is ordinary prediction records over the final classes and xr-eval
scores a cascade exactly like one model. Decisions follow the gates: a record
takes stage k's decision only when stage k-1 decided the gated class. Every
stage scores every record (a composed probability needs both factors); the gate
decides whose decision counts.
"""

import numpy as np

from libxr.combining.aligned import base
from libxr.errors import ManifestError, UsageError, XRError


def chain(files, ids, gates):
    """Compose per-record stage predictions: ``files`` is one Scored file per stage (libxr.combining.aligned),
    ``ids`` the records every stage has; ``gates[k]`` the class of stage k's labels that stage k+1 refines."""
    if len(files) < 2:
        raise UsageError("a cascade needs two or more --stage files")
    if len(gates) != len(files) - 1:
        raise UsageError(f"{len(files)} stages need {len(files) - 1} --gate classes, not {len(gates)}")
    stages = [_stage(f, ids) for f in files]
    for i in ids:
        rows = [f.records[i] for f in files]
        failed = next((r for r in rows if "error" in r), None)
        if failed is not None:
            yield {**base(rows[0]), "error": failed["error"]}
            continue
        scores, pred = dict(stages[0][i]), rows[0]["pred"]
        for gate, stage, row in zip(gates, stages[1:], rows[1:]):
            if gate not in scores:
                raise XRError(f"--gate {gate!r} is not one of the classes so far ({', '.join(scores)})")
            clash = [c for c in stage[i] if c in scores and c != gate]
            if clash:
                raise XRError(f"the stage refining {gate!r} scores {clash[0]!r}, already a class of the cascade")
            share = scores[gate]
            refined = {}
            for c, s in scores.items():        # the refined classes take the gate's place
                if c == gate:
                    refined.update({c2: round(share * s2, 6) for c2, s2 in stage[i].items()})
                else:
                    refined[c] = s
            scores = refined
            pred = row["pred"] if pred == gate else pred
        yield {**base(rows[0]), "scores": scores, "pred": pred,
               "stages": [{"scores": r["scores"], "pred": r["pred"]} for r in rows]}


def _stage(file, ids):
    """{id: class probabilities} of one stage's scored records, checked: a `pred` that is one of its
    classes, and scores summing to 1 within xr-eval's tolerance (rescaled to exactly 1, so the
    composed scores sum to 1 too), or a ManifestError at the record's line."""
    from libxr.judging.evaluation import one_per_record

    if file.task.kind == "multilabel":
        raise XRError(f"{file.name}: a cascade stage decides one class per record; "
                      "these records are multi-label")
    names = file.task.names
    rows = [(file.lines[i], file.records[i]) for i in ids if "error" not in file.records[i]]
    for line, rec in rows:
        if "pred" not in rec:
            raise ManifestError(file.name, line, "record has no `pred` (run xr-predict first)")
        if rec["pred"] not in names:
            raise ManifestError(file.name, line, f"pred {rec['pred']!r} is not one of the stage's classes "
                                                 f"({', '.join(names)})")
    p = np.array([[float(rec["scores"][n]) for n in names] for _, rec in rows])
    p = one_per_record(p, rows, file.name)
    out = {}
    for (_, rec), row in zip(rows, p):
        rescaled = dict(zip(names, row))
        out[rec["id"]] = {n: round(float(rescaled[n]), 6) for n in rec["scores"]}     # the file's order
    return out


def derive(numbered, name, merges):
    """The stage manifests of a cascade from the (line, record) pairs of one single-label manifest ``name``.

    ``merges``: {new class: [classes]}. Stage 1 sees every labelled record with merged classes
    renamed; each merged class gets a manifest of its own records, labels unchanged. A new
    name must not be a class already: stage 1 would mix the two in silence.
    Returns ({"stage1": records, new class: records}, the lines of the records with no label,
    which no stage can learn from and which are left out).
    """
    records, unlabelled = [], []
    for line, rec in numbered:
        if isinstance(rec.get("labels"), dict):
            raise ManifestError(name, line, "cascades split single-label manifests; this record carries "
                                            "multi-label `labels`")
        if rec.get("label") is None:
            unlabelled.append(line)
        else:
            records.append(rec)
    present = {str(r["label"]) for r in records}
    rename = {}
    for new, old in merges.items():
        if new in present:
            raise UsageError(f"--merge {new}: {new!r} is a class already: name the merged class otherwise")
        for c in old:
            if c not in present:
                raise XRError(f"--merge {new}: class {c!r} has no records (classes: {', '.join(sorted(present))})")
            if c in rename:
                raise UsageError(f"class {c!r} is merged twice")
            rename[c] = new
        if len(old) < 2:
            raise UsageError(f"--merge {new}: name two or more classes to merge")
    if len({rename.get(c, c) for c in present}) < 2:
        raise XRError("stage 1 would have one class only: leave some classes unmerged")
    out = {"stage1": [{**r, "label": rename.get(str(r["label"]), r["label"])} for r in records]}
    for new, old in merges.items():
        out[new] = [r for r in records if str(r["label"]) in old]
    return out, unlabelled
