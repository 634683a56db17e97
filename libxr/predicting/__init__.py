"""Predicting: a trained checkpoint rebuilt as a classifier, and records scored with it."""
