"""xr-synth: synthetic radiograph datasets in every layout xr-index reads.

A dataset is planned first (patients, studies, labels, splits, file names —
all from one seeded generator), then its images are drawn, each from its own
seed, in parallel; the label files follow the real datasets' formats and
``boxes.jsonl`` gives each finding's pixel box under the id xr-index will give
that image.
"""

from libxr.synth.layouts import LAYOUTS, SynthOptions, synthesize

__all__ = ["LAYOUTS", "SynthOptions", "synthesize"]
