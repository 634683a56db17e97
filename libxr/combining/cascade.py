"""Classifiers in cascade (report 001): a later stage refines one class of the stage
before it — normal vs infected, then COVID vs viral pneumonia among the infected.

Probabilities compose through the chain, P(COVID) = P(infected) · P(COVID | infected),
so the output is ordinary prediction records over the final classes and xr-eval
scores a cascade exactly like one model. Decisions follow the gates: a record
takes stage k's decision only when stage k-1 decided the gated class. Every
stage scores every record (a composed probability needs both factors); the gate
decides whose decision counts.
"""

from libxr.combining.aligned import base
from libxr.errors import UsageError, XRError


def chain(stage_records, gates):
    """Compose per-record stage predictions: ``stage_records`` is one list of records per
    stage, aligned (same ids, same order); ``gates[k]`` the class of stage k's labels that
    stage k+1 refines."""
    if len(stage_records) < 2:
        raise UsageError("a cascade needs two or more --stage files")
    if len(gates) != len(stage_records) - 1:
        raise UsageError(f"{len(stage_records)} stages need {len(stage_records) - 1} --gate classes, "
                         f"not {len(gates)}")
    for rows in zip(*stage_records):
        first = rows[0]
        failed = next((r for r in rows if "error" in r), None)
        if failed is not None:
            yield {**base(first), "error": failed["error"]}
            continue
        scores, pred = dict(first["scores"]), first["pred"]
        for gate, row in zip(gates, rows[1:]):
            if gate not in scores:
                raise XRError(f"--gate {gate!r} is not one of the classes so far ({', '.join(scores)})")
            clash = [c for c in row["scores"] if c in scores and c != gate]
            if clash:
                raise XRError(f"the stage refining {gate!r} scores {clash[0]!r}, already a class of the cascade")
            share = scores[gate]
            refined = {}
            for c, s in scores.items():        # the refined classes take the gate's place
                if c == gate:
                    refined.update({c2: round(share * s2, 6) for c2, s2 in row["scores"].items()})
                else:
                    refined[c] = s
            scores = refined
            pred = row["pred"] if pred == gate else pred
        yield {**base(first), "scores": scores, "pred": pred,
               "stages": [{"scores": r["scores"], "pred": r["pred"]} for r in rows]}


def derive(records, merges):
    """The stage manifests of a cascade from one single-label manifest.

    ``merges``: {new class: [classes]}. Stage 1 sees every record with merged classes
    renamed; each merged class gets a manifest of its own records, labels unchanged.
    Returns {"stage1": records, new class: records}.
    """
    records = list(records)
    present = {str(r.get("label")) for r in records if r.get("label") is not None}
    if any(isinstance(r.get("labels"), dict) for r in records):
        raise XRError("cascades split single-label manifests; these records carry multi-label `labels`")
    rename = {}
    for new, old in merges.items():
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
    out = {"stage1": [{**r, "label": rename.get(str(r.get("label")), r.get("label"))} for r in records]}
    for new, old in merges.items():
        out[new] = [r for r in records if str(r.get("label")) in old]
    return out
