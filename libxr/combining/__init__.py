"""Combining: several models' predictions of the same records — cascades, votes, means, experts, stacking."""
