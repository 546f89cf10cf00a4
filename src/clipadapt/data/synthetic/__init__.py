"""Procedural, labelled synthetic images (real pixels, offline) for demos and tests."""
