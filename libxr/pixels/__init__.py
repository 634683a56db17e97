"""Pixels: image files decoded, fitted and expanded to channels, stored in HDF5, batched and augmented."""
