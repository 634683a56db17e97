"""The xr commands: thin click wrappers over libxr, installed as ``xrtools``."""
