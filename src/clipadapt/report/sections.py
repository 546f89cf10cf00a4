"""The report's sections built from a run folder's files: summary, metrics table,
per-class accuracy, confusion matrices, curves and the run card.

Each function returns an HTML fragment. A missing or unreadable file gives a short
note in place of the section's content, never an exception: a report of a partial
run is still worth having.
"""

from __future__ import annotations

import json
import tempfile
from html import escape
from pathlib import Path

from clipadapt.engine.card import RunCard, as_card
from clipadapt.errors import ClipAdaptError
from clipadapt.metrics.classification import MEAN_KEYS
from clipadapt.metrics.plots import plot_confusion, plot_curves
from clipadapt.metrics.table import METRICS
from clipadapt.report.embed import png_file_uri, png_uri
from clipadapt.report.figures import per_class_accuracy_png, reliability_png
from clipadapt.run_files import RunFiles

# The metric table's headers, in the order of the cells (MEAN_KEYS); the report has room
# to spell out what the terminal abbreviates.
METRIC_HEADERS = {key: METRICS[key].header for key in MEAN_KEYS} | {
    "balanced_accuracy": "balanced accuracy (chance-adjusted)"}


def percent(value) -> str:
    """A score in percent with two decimals; n/a where it is undefined (None)."""
    return "n/a" if value is None else f"{100 * float(value):.2f}"


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}" aria-labelledby="{section_id}-title">\n' \
           f'<h2 id="{section_id}-title">{escape(title)}</h2>\n{body}\n</section>'


def img(uri: str, alt: str, css: str = "figure") -> str:
    return f'<img class="{css}" src="{uri}" alt="{escape(alt)}">'


def read_json(path: Path) -> tuple[object | None, str | None]:
    """(data, None), or (None, why not) for a missing or broken file."""
    if not path.is_file():
        return None, f"{path.name} is missing"
    try:
        return json.loads(path.read_text()), None
    except (OSError, json.JSONDecodeError) as exc:
        return None, f"{path.name} could not be read ({exc})"


# ------------------------------------------------------------------ summary
def summary(card: RunCard | dict, run_dir: Path) -> str:
    """What was run: a definition list of the card's main facts."""
    card = as_card(card)
    backbone = card.backbone or {}
    data, selection = card.data or {}, card.selection or {}
    trainable = card.trainable_parameters
    facts = [
        ("run folder", str(run_dir)),
        ("method", card.method or "?"),
        ("method settings", json.dumps(card.params or {}, sort_keys=True)),
        ("backbone", f"{backbone.get('name', '?')} (weights: {backbone.get('pretrained') or 'random'})"),
        ("trainable parameters", f"{trainable:,}" if trainable is not None else None),
        ("attributes", ", ".join(attribute_names(card))),
        ("seed", card.seed),
        ("images (train / val / test)", " / ".join(str(data.get(k, "?")) for k in ("train", "val", "test")) if data else None),
        ("selected epoch", f"{selection.get('best_epoch')} of {selection.get('epochs_run')} (monitor: {selection.get('monitor')})"
         if selection.get("best_epoch") is not None else None),
    ]
    rows = "\n".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts if v not in (None, ""))
    return f'<dl class="facts">\n{rows}\n</dl>'


def attribute_names(card: RunCard) -> list[str]:
    """The names of the card's attributes, in the task's order."""
    return [a["name"] for a in (card.task or {}).get("attributes", [])]


def warnings_banner(card: RunCard | dict, metrics: dict | None) -> str:
    """The run's warnings (a run that did not learn or is at chance, classes its text cannot
    tell apart or whose words the backbone never learned), first on the page, so that nobody
    reads its scores as a result. A card with `at_chance` but no warning (majority, at chance
    by construction) gets no banner."""
    card = as_card(card)
    messages = list(dict.fromkeys([*(card.warnings or []), *((metrics or {}).get("warnings") or [])]))
    if card.no_progress and not messages:
        messages = ["This run did not learn: its scores are those of an untrained model (see history.json)."]
    items = "".join(f"<p><strong>Warning:</strong> {escape(str(m))}</p>" for m in messages)
    return f'<div class="banner" role="alert">{items}</div>' if items else ""


# ------------------------------------------------------------------ metrics
def metrics_section(metrics: dict | None, why_missing: str | None) -> str:
    """The test metrics table: one row per attribute and a mean row."""
    if metrics is None:
        return section("metrics", "Test metrics", note(
            f"No test metrics ({why_missing}): the run had no test split or was not evaluated. "
            "`clipadapt eval RUN_DIR` evaluates it."))
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in ("attribute", *METRIC_HEADERS.values(), "n"))
    rows = []
    for name, m in metrics.get("attributes", {}).items():
        cells = "".join(f'<td class="num">{percent(m.get(k))}</td>' for k in MEAN_KEYS)
        rows.append(f'<tr><th scope="row">{escape(name)}</th>{cells}<td class="num">{m.get("n", "")}</td></tr>')
    mean = metrics.get("mean", {})
    cells = "".join(f'<td class="num">{percent(mean.get(k))}</td>' for k in MEAN_KEYS)
    rows.append(f'<tr class="mean"><th scope="row">mean over attributes</th>{cells}<td class="num"></td></tr>')
    table = (f'<table>\n<caption>Scores in percent on the test split; balanced accuracy is 0 at chance and '
             f'100 when perfect; n = labelled test images.</caption>\n<thead><tr>{head}</tr></thead>\n'
             f'<tbody>\n' + "\n".join(rows) + '\n</tbody>\n</table>')
    if isinstance(metrics.get("loss"), (int, float)):
        table += f'\n<p>Test loss (cross-entropy, summed over attributes): {metrics["loss"]:.4f}</p>'
    if isinstance(mean.get("ece"), (int, float)):
        fitted = metrics.get("calibration") or {}
        before = fitted.get("mean") or {}
        how = "Platt scaling" if fitted.get("method") == "platt" else "temperature scaling"
        scaled = (f" (before {how}: {percent(before.get('ece_before'))}%, NLL {_number(before.get('nll_before'))})"
                  if before else "")
        table += (f'\n<p>Calibration, mean over attributes: ECE {percent(mean["ece"])}%, NLL {_number(mean.get("nll"))}'
                  f'{escape(scaled)}; see <a href="#calibration">Calibration</a>.</p>')
    return section("metrics", "Test metrics", table)


def _number(value) -> str:
    return "n/a" if value is None else f"{float(value):.4f}"


def calibration_section(metrics: dict | None, card: RunCard | dict) -> str:
    """ECE and NLL per attribute (before / after temperature or Platt scaling when the run
    was calibrated) and a reliability diagram per attribute, from metrics.json."""
    if metrics is None or not any("reliability" in m for m in metrics.get("attributes", {}).values()):
        return section("calibration", "Calibration", note(
            "No calibration figures: the metrics predate them or the run was not evaluated. "
            "`clipadapt eval RUN_DIR` recomputes them."))
    card = as_card(card)
    binary = bool((card.task or {}).get("multilabel"))
    scaled = (metrics.get("calibration") or {}).get("attributes") or {}
    platt = (metrics.get("calibration") or {}).get("method") == "platt"
    head = ["attribute", "ECE (%)", "NLL", "n"]
    if scaled:
        head = ["attribute", "temperature", *(["bias"] if platt else []), "ECE before (%)", "ECE after (%)",
                "NLL before", "NLL after", "n"]
    rows, charts = [], []
    for name, m in metrics.get("attributes", {}).items():
        row = scaled.get(name)
        cells = ([f"{row['temperature']:.3f}", *([f"{row.get('bias', 0.0):+.3f}"] if platt else []),
                  percent(row["ece_before"]), percent(row["ece_after"]),
                  _number(row["nll_before"]), _number(row["nll_after"])] if row
                 else ([""] * (len(head) - 2) if scaled else [percent(m.get("ece")), _number(m.get("nll"))]))
        rows.append(f'<tr><th scope="row">{escape(name)}</th>' + "".join(f'<td class="num">{c}</td>' for c in cells)
                    + f'<td class="num">{m.get("n", "")}</td></tr>')
        table = m.get("reliability")
        if not table or not sum(table["count"]):
            charts.append(note(f"{name}: no labelled test images, no reliability diagram."))
            continue
        uri = png_uri(reliability_png(name, table, binary, m.get("ece"), row["ece_before"] if row else None))
        charts.append(f'<figure>{img(uri, f"Reliability diagram of {name}: observed accuracy per confidence bin against the diagonal of perfect calibration.")}'
                      f'<figcaption>{escape(name)}: bars = observed {"frequency of present" if binary else "accuracy"} '
                      f'per bin (row count above), dots = mean confidence, dashed = perfect calibration.</figcaption></figure>')
    fitted = card.calibration or {}
    what = ("15 equal-width bins of p(present) per attribute" if binary
            else "15 equal-width bins of the probability of the predicted class")
    caption = f"Test split. ECE: {what}; NLL: mean negative log-likelihood of the true label."
    if fitted.get("val"):
        v = fitted["val"]
        fitted_what = "Platt scales and biases" if fitted.get("method") == "platt" else "Temperatures"
        caption += (f" {fitted_what} fitted on the validation split (mean ECE there {percent(v.get('ece_before'))}% -> "
                    f"{percent(v.get('ece_after'))}%, NLL {_number(v.get('nll_before'))} -> {_number(v.get('nll_after'))}).")
    table_html = (f'<table>\n<caption>{escape(caption)}</caption>\n<thead><tr>'
                  + "".join(f'<th scope="col">{escape(h)}</th>' for h in head)
                  + '</tr></thead>\n<tbody>\n' + "\n".join(rows) + '\n</tbody>\n</table>')
    return section("calibration", "Calibration", table_html + '\n<div class="grid">' + "\n".join(charts) + "</div>")


def per_class_section(metrics: dict | None) -> str:
    """A bar chart of per-class accuracy per attribute."""
    if metrics is None:
        return section("per-class", "Per-class accuracy", note("No test metrics, so no per-class accuracy."))
    charts = []
    for name, m in metrics.get("attributes", {}).items():
        per_class = m.get("per_class_accuracy") or {}
        if not per_class or not m.get("n"):
            charts.append(note(f"{name}: no labelled test images."))
            continue
        support = {c: r.get("support", 0) for c, r in (m.get("report") or {}).items()}
        uri = png_uri(per_class_accuracy_png(name, per_class, support))
        charts.append(img(uri, f"Per-class accuracy of {name}: " + ", ".join(
            f"{c} {percent(v)}%" for c, v in per_class.items())))
    return section("per-class", "Per-class accuracy", "\n".join(charts))


# ------------------------------------------------------------------ figures from files
def confusion_section(run_dir: Path, card: RunCard | dict, metrics: dict | None) -> str:
    """The row-normalised confusion matrices: the run's PNGs, or drawn from metrics.json
    when a PNG is missing (e.g. metrics copied without their figures)."""
    parts = []
    for attr in (as_card(card).task or {}).get("attributes", []):
        name = attr["name"]
        uri = png_file_uri(run_dir / RunFiles.confusion(name, "png"))
        entry = (metrics or {}).get("attributes", {}).get(name)
        if uri is None and entry and entry.get("n"):
            uri = _drawn(lambda p: plot_confusion(entry["confusion_matrix"], attr["classes"], p,
                                                  title=f"{name} (row-normalised)"))
        if uri is None:
            parts.append(note(f"{name}: no confusion matrix (no test split evaluated)."))
        else:
            parts.append(f'<figure>{img(uri, f"Row-normalised confusion matrix of {name}: rows are true classes, columns predicted classes.")}'
                         f'<figcaption>{escape(name)}: rows = true class, columns = predicted class, cells = share of the row.</figcaption></figure>')
    return section("confusion", "Confusion matrices", "\n".join(parts) or note("The run card lists no attributes."))


def curves_section(run_dir: Path) -> str:
    """Training and validation curves: curves.png, or drawn from history.json."""
    uri = png_file_uri(run_dir / RunFiles.CURVES)
    if uri is None:
        history, _why = read_json(run_dir / RunFiles.HISTORY)
        if isinstance(history, list) and history:
            uri = _drawn(lambda p: plot_curves(history, p))
    if uri is None:
        body = note("No training curves: the method was not trained by gradient descent (e.g. zero-shot, "
                    "majority class) or the history is missing.")
    else:
        body = img(uri, "Training loss, validation loss and validation macro-F1 per epoch.")
    return section("curves", "Training and validation curves", body)


def _drawn(draw) -> str | None:
    """Draw a figure into a temporary PNG and return its data URI (None if it cannot be drawn)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "figure.png"
        try:
            draw(path)
        except (ClipAdaptError, ValueError, KeyError, TypeError):
            return None
        return png_file_uri(path)


def card_section(card: dict) -> str:
    """The whole run card, collapsed: everything needed to rebuild the model."""
    body = (f'<details>\n<summary>card.json (method, backbone, task, prompts, preprocessing, versions)</summary>\n'
            f'<pre><code>{escape(json.dumps(as_card(card).to_dict(), indent=2, sort_keys=False, default=str))}</code></pre>\n</details>')
    return section("card", "Run card", body)


THRESHOLD_SCORES = {"mA": "mA", "mean_attribute_f1": "mean attribute F1", "f1_mean_of_samples": "F1 (mean of samples)",
                    "f1_of_means": "F1 (of means)"}


def thresholds_section(metrics: dict | None, card: RunCard | dict) -> str:
    """A multi-label run's decision thresholds per attribute (train.thresholds) and the test
    scores at the fixed and at the tuned thresholds; empty for other runs."""
    entry = as_card(card).thresholds or {}
    if not entry.get("values"):
        return ""
    setting = entry.get("setting", "fixed")
    rows = []
    for name, value in entry["values"].items():
        row = (entry.get("attributes") or {}).get(name) or {}
        cells = [f"{value:.3f}", f"{(entry.get('fixed') or {}).get(name, value):.3f}",
                 percent(row.get("val_score_fixed")), percent(row.get("val_score"))]
        rows.append(f'<tr><th scope="row">{escape(name)}</th>' + "".join(f'<td class="num">{c}</td>' for c in cells)
                    + f'<td class="num">{row.get("positives", "")}</td></tr>')
    score = entry.get("score") or "score"
    head = ["attribute", "threshold", "fixed threshold", f"val {score} fixed (%)", f"val {score} tuned (%)",
            "val positives"]
    caption = (f"train.thresholds={setting}: "
               + ("train.threshold for every attribute" if setting == "fixed" else
                  f"each attribute's threshold maximises its {score} on the validation split (never test)")
               + "; thresholds apply to the calibrated probabilities and decide as the fixed / tuned cut did "
                 "before calibration.")
    html = (f'<table>\n<caption>{escape(caption)}</caption>\n<thead><tr>'
            + "".join(f'<th scope="col">{escape(h)}</th>' for h in head) + '</tr></thead>\n<tbody>\n'
            + "\n".join(rows) + '\n</tbody>\n</table>')
    compared = (metrics or {}).get("thresholds")
    if compared:
        cells = "".join(f'<tr><th scope="row">{escape(title)}</th><td class="num">{percent(compared["fixed"].get(key))}</td>'
                        f'<td class="num">{percent(compared["tuned"].get(key))}</td></tr>'
                        for key, title in THRESHOLD_SCORES.items())
        html += ('\n<table>\n<caption>Test split, % : the same probabilities decided at the fixed thresholds and at '
                 'the tuned ones.</caption>\n<thead><tr><th scope="col">score</th><th scope="col">fixed</th>'
                 f'<th scope="col">tuned</th></tr></thead>\n<tbody>\n{cells}\n</tbody>\n</table>')
    return section("thresholds", "Decision thresholds", html)
