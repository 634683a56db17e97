"""Judging: the field's metrics, thresholds, xr-eval's report, its tables and plots, and leaderboards."""
