"""Records: the JSON Lines manifest, what its labels ask a model to learn, and leakage-free splits."""
