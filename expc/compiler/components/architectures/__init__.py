"""Architectures (`model FAMILY`): one module per family; each says what kind of network it
provides."""
