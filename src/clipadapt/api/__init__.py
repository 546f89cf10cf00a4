"""The Python API (docs/python.md): `clipadapt.load`, `Run`, `train`, `adapt`, `evaluate`,
`bench`, `create_backbone` and the `list_*` catalogues. Re-exported at the package top
level; the modules here are imported on first use."""
