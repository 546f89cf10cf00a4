"""Procedural, labelled synthetic images (real pixels, offline) for demos and tests.

`streets` renders street views with the eight Global StreetScapes attributes and writes
them in the GSS folder layout; the other modules are its parts (camera, layout,
surfaces, props, atmosphere, effects).
"""

from clipadapt.synthetic.streets import caption_for, render_street_scene, sample_scene_labels, write_gss_dataset

__all__ = ["caption_for", "render_street_scene", "sample_scene_labels", "write_gss_dataset"]
