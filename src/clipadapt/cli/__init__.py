"""The `clipadapt` command line."""
