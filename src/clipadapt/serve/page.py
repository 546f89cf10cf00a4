"""The service's web page: drop or pick images, see every attribute's prediction with
probability bars and the attention overlays.

One self-contained document (inline CSS and JS, no CDN, no fonts to fetch), so it works
on a machine without internet access. The script builds the result with DOM calls and
`textContent` only: file names and class names never become HTML. When the service needs
an API key (/api/info answers 401) the page shows a key field and sends the key as
`Authorization: Bearer KEY`; the key stays in the page's memory (not stored anywhere).
"""

from __future__ import annotations

CSS = """
:root { --ink: #1b1b1b; --muted: #555; --line: #d0d0d0; --bar: #0072B2; --yes: #0072B2; --no: #999; --bad: #D55E00; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       max-width: 1100px; margin: 0 auto; padding: 1rem 1.5rem 3rem; line-height: 1.45; }
h1 { font-size: 1.5rem; margin: 0 0 .3rem; }
.muted { color: var(--muted); }
#drop { border: 2px dashed var(--line); border-radius: 8px; padding: 1.6rem; text-align: center; margin: 1rem 0; }
#drop.over { border-color: var(--bar); background: #eef6fb; }
#error { color: var(--bad); font-weight: 600; min-height: 1.4em; }
#keybox { border: 1px solid var(--line); border-radius: 6px; padding: .6rem .8rem; margin: .8rem 0; }
#keybox input { width: 22rem; max-width: 100%; }
.result { border: 1px solid var(--line); border-radius: 6px; padding: .8rem; margin: 1rem 0; }
.result h2 { font-size: 1.1rem; margin: 0 0 .6rem; word-break: break-all; }
.columns { display: flex; flex-wrap: wrap; gap: 1.2rem; align-items: flex-start; }
.preview { width: 180px; height: auto; max-height: 320px; object-fit: contain; border: 1px solid var(--line); }
.attribute { margin: 0 0 .8rem; min-width: 300px; }
.attribute h3 { font-size: .95rem; margin: 0 0 .2rem; }
.row { display: grid; grid-template-columns: 9rem 12rem 4.5rem; gap: .5rem; align-items: center; font-size: .85rem; }
.row.top .label { font-weight: 700; }
.track { background: #eee; height: .8rem; border-radius: 3px; overflow: hidden; }
.fill { background: var(--bar); height: 100%; }
.pct { text-align: right; font-variant-numeric: tabular-nums; }
.overlays { display: flex; flex-wrap: wrap; gap: .6rem; }
.overlays figure { margin: 0; font-size: .8rem; text-align: center; }
.overlays img { width: 224px; height: 224px; display: block; }
.legend { font-size: .8rem; color: var(--muted); }
.scale { display: inline-block; width: 120px; height: .7rem; vertical-align: middle;
         background: linear-gradient(90deg, #00224e, #434e6c, #7d7c78, #bcae6c, #fee838); }
"""

SCRIPT = """
const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; return e; };
const pct = (p) => (100 * p).toFixed(1) + '%';

let apiKey = '';
const authorised = () => (apiKey ? { Authorization: 'Bearer ' + apiKey } : {});

function askForKey(message) {
  $('keybox').hidden = false; $('keymsg').textContent = message; $('key').focus();
}

async function loadInfo() {
  try {
    const response = await fetch('api/info', { headers: authorised() });
    if (response.status === 401) {
      askForKey(apiKey ? 'That key was not accepted; check it and try again.' : 'This service needs an API key.');
      return;
    }
    const info = await response.json();
    $('keybox').hidden = true;
    const names = info.attributes.map((a) => a.name).join(', ');
    $('info').textContent = info.method + ' on ' + info.backbone.name + ' - predicts ' + names +
      (info.multilabel ? ' (multi-label, ' + (info.threshold === null ? 'a threshold per attribute'
        : 'threshold ' + info.threshold) + ')' : '');
    $('limits').textContent = 'Up to ' + info.limits.max_batch + ' images and ' + info.limits.max_upload_mb +
      ' MB per request.';
  } catch (err) { $('error').textContent = 'Could not reach the service: ' + err; }
}

function bar(label, p, top) {
  const row = el('div', 'row' + (top ? ' top' : ''));
  row.append(el('span', 'label', label));
  const track = el('div', 'track'); const fill = el('div', 'fill'); fill.style.width = pct(p);
  track.append(fill); row.append(track); row.append(el('span', 'pct', pct(p)));
  return row;
}

function attributeBlock(name, answer) {
  const box = el('div', 'attribute'); box.dataset.attribute = name;
  if ('probabilities' in answer) {
    box.append(el('h3', null, name + ': ' + answer.predicted));
    const ranked = Object.entries(answer.probabilities).sort((a, b) => b[1] - a[1]);
    for (const [cls, p] of ranked) box.append(bar(cls, p, cls === answer.predicted));
  } else {
    box.append(el('h3', null, name + ': ' + (answer.present ? 'yes' : 'no')));
    box.append(bar('present', answer.probability, answer.present));
  }
  return box;
}

function render(result, file) {
  const card = el('section', 'result'); card.dataset.name = result.name;
  card.append(el('h2', null, result.name));
  if (!result.ok) { card.append(el('p', 'error', result.error)); return card; }
  const cols = el('div', 'columns');
  const img = el('img', 'preview'); img.alt = 'uploaded image ' + result.name; img.src = URL.createObjectURL(file);
  cols.append(img);
  const answers = el('div', 'answers');
  for (const [name, answer] of Object.entries(result.attributes)) answers.append(attributeBlock(name, answer));
  cols.append(answers);
  card.append(cols);
  if (result.overlays && Object.keys(result.overlays).length) {
    card.append(el('h3', null, 'Where the model looked'));
    const row = el('div', 'overlays');
    for (const [label, uri] of Object.entries(result.overlays)) {
      const fig = el('figure'); const pic = el('img', 'overlay'); pic.src = uri;
      pic.alt = 'attention overlay: ' + label; fig.append(pic); fig.append(el('figcaption', null, label));
      row.append(fig);
    }
    card.append(row);
    const legend = el('p', 'legend', 'dark = little attention '); legend.append(el('span', 'scale'));
    legend.append(document.createTextNode(' bright = most attention (min-max per map; masks: bright = foreground)'));
    card.append(legend);
  }
  return card;
}

async function predict(files) {
  $('error').textContent = ''; $('results').replaceChildren(); $('status').textContent = 'predicting...';
  const form = new FormData();
  for (const f of files) form.append('image', f, f.name);
  try {
    const response = await fetch('api/predict?overlay=1', { method: 'POST', body: form, headers: authorised() });
    const answer = await response.json();
    if (response.status === 401) askForKey('This service needs an API key.');
    if (!response.ok) { $('error').textContent = answer.error || ('HTTP ' + response.status); return; }
    answer.predictions.forEach((r, i) => $('results').append(render(r, files[i])));
  } catch (err) { $('error').textContent = 'The request failed: ' + err;
  } finally { $('status').textContent = ''; }
}

const drop = $('drop');
$('file').addEventListener('change', (e) => { if (e.target.files.length) predict([...e.target.files]); });
['dragenter', 'dragover'].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add('over'); }));
['dragleave', 'drop'].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove('over'); }));
drop.addEventListener('drop', (e) => { if (e.dataTransfer.files.length) predict([...e.dataTransfer.files]); });
$('keyform').addEventListener('submit', (e) => { e.preventDefault(); apiKey = $('key').value.trim(); loadInfo(); });
loadInfo();
"""


def page_html() -> str:
    """The whole web page as one HTML string."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<title>clipadapt: predict an image</title>\n<style>{CSS}</style>\n</head>\n<body>\n'
        '<header><h1>clipadapt</h1><p id="info" class="muted">loading the model description...</p></header>\n'
        '<main>\n<div id="keybox" hidden><form id="keyform"><p id="keymsg"></p>'
        '<label>API key: <input type="password" id="key" autocomplete="off" spellcheck="false"></label> '
        '<button type="submit" id="keysend">Use key</button></form></div>\n'
        '<div id="drop"><p><strong>Drop images here</strong> or '
        '<label>pick files: <input type="file" id="file" accept="image/*" multiple></label></p>'
        '<p id="limits" class="muted"></p></div>\n'
        '<p id="status" class="muted" aria-live="polite"></p>\n<p id="error" role="alert"></p>\n'
        '<div id="results"></div>\n</main>\n'
        f'<script>{SCRIPT}</script>\n</body>\n</html>\n'
    )
