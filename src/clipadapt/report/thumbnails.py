"""The report's gallery: test images with true / predicted labels, mistakes first, and
for CLIP-MHAdapter runs the adapter's attention on each image."""

from __future__ import annotations

from html import escape
from pathlib import Path

from PIL import Image

from clipadapt.data.images import load_image
from clipadapt.engine.card import RunCard, as_card
from clipadapt.engine.checkpoint import load_run
from clipadapt.errors import ClipAdaptError
from clipadapt.report.attention import explainable_methods, heatmap, mean_attention, model_view, overlay
from clipadapt.report.embed import photo_uri
from clipadapt.report.gallery import GalleryItem, rank_gallery, read_predictions, resolve_image
from clipadapt.report.sections import attribute_names, note, section
from clipadapt.run_files import RunFiles

THUMBNAIL = 160  # px: small enough for dozens per page, large enough to see the scene


def gallery_section(run_dir: Path, card: RunCard | dict, limit: int, results: Path | None = None) -> str:
    """Per attribute, up to `limit` test images ranked by `rank_gallery`, from the
    predictions.csv in `results` (default the run folder; `clipadapt eval` writes
    its own folder)."""
    title = "Test images: mistakes first"
    if limit == 0:
        return section("gallery", title, note("Gallery turned off (gallery = 0)."))
    predictions = Path(results or run_dir) / RunFiles.PREDICTIONS
    if not predictions.is_file():
        return section("gallery", title, note("No predictions.csv: the run had no test split or was not evaluated."))
    table = read_predictions(predictions)
    card = as_card(card)
    attributes = attribute_names(card)
    ranked = {name: rank_gallery(table, name, limit) for name in attributes}
    thumbs = _load_thumbnails(run_dir, {item.path for items in ranked.values() for item in items})
    attention, attention_note = _attention(run_dir, card, thumbs)

    parts = [note(attention_note)] if attention_note else []
    parts.append('<p>Wrong predictions come first, the most confident on top; then correct ones, the least '
                 'confident first. Probabilities are those of the predicted class.'
                 + (' Right of each image: the attention each patch receives in the adapter (heads averaged, '
                    'min-max normalised; bright = more attention).' if attention else '') + '</p>')
    for name in attributes:
        items = ranked[name]
        if not items:
            parts.append(f'<h3>{escape(name)}</h3>' + note(f"No labelled test predictions for {name}."))
            continue
        cards = "\n".join(_figure(item, name, thumbs.get(item.path), attention.get((item.path, name)))
                          for item in items)
        wrong = sum(item.wrong for item in items)
        parts.append(f'<section id="gallery-{escape(name)}" class="attribute">\n<h3>{escape(name)}</h3>\n'
                     f'<p>{len(items)} images shown, {wrong} of them wrong.</p>\n<div class="grid">\n{cards}\n</div>\n</section>')
    return section("gallery", title, "\n".join(parts))


def _load_thumbnails(run_dir: Path, paths: set[str]) -> dict[str, Image.Image]:
    """The model's view of each image, THUMBNAIL px; unreadable or missing images are
    left out (their figure says so)."""
    thumbs = {}
    for path in sorted(paths):
        found = resolve_image(path, run_dir)
        if found is None:
            continue
        try:
            thumbs[path] = model_view(load_image(found), THUMBNAIL)
        except ClipAdaptError:
            continue
    return thumbs


def _attention(run_dir: Path, card: RunCard, thumbs: dict[str, Image.Image]):
    """Attention overlays keyed by (path, attribute), and a note when there are none
    although the method has attention (weights unavailable, ...)."""
    if card.method not in explainable_methods() or not thumbs:
        return {}, None
    try:
        method, _ = load_run(run_dir)
    except ClipAdaptError as exc:
        return {}, f"Attention overlays left out: the model could not be loaded ({exc})"
    paths = list(thumbs)
    # Recomputed from the full-resolution file, so the model sees exactly its test view.
    images = [load_image(resolve_image(p, run_dir)) for p in paths]
    maps = mean_attention(method, images)
    overlays = {}
    for name, per_image in maps.items():
        for path, grid_map in zip(paths, per_image):
            overlays[(path, name)] = overlay(thumbs[path], heatmap(grid_map, (THUMBNAIL, THUMBNAIL)))
    return overlays, None


def _figure(item: GalleryItem, attribute: str, thumb: Image.Image | None, attention: Image.Image | None) -> str:
    verdict = "wrong" if item.wrong else "right"
    file_name = Path(item.path).name
    if thumb is None:
        pictures = f'<div class="missing">image not found or unreadable:<br>{escape(item.path)}</div>'
    else:
        pictures = (f'<img src="{photo_uri(thumb)}" width="{THUMBNAIL}" height="{THUMBNAIL}" '
                    f'alt="Test image {escape(file_name)}, true {escape(attribute)}: {escape(item.true)}">')
        if attention is not None:
            pictures += (f'<img src="{photo_uri(attention)}" width="{THUMBNAIL}" height="{THUMBNAIL}" '
                         f'alt="Adapter attention for {escape(attribute)} on {escape(file_name)}">')
    return (f'<figure class="item {verdict}" data-verdict="{verdict}">\n<div class="pictures">{pictures}</div>\n'
            f'<figcaption><strong class="verdict">{verdict}</strong> '
            f'true: <b>{escape(item.true)}</b><br>predicted: <b>{escape(item.predicted)}</b> '
            f'({100 * item.probability:.1f}%)<br><span class="path" title="{escape(item.path)}">{escape(file_name)}</span>'
            f'</figcaption>\n</figure>')
