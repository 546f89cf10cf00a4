"""The map page's inline CSS and JavaScript (no file, font or tile is ever fetched)."""

from __future__ import annotations

# viridis: sequential, perceptually even, readable in grey and by colour-blind readers
PALETTE = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725")

CSS = """
:root { --ink: #1b1b1b; --muted: #555; --line: #d0d0d0; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       max-width: 1100px; margin: 0 auto; padding: 1rem 1.5rem 2rem; line-height: 1.45; }
h1 { font-size: 1.5rem; margin: 0 0 .3rem; }
.summary, .note { color: var(--muted); font-size: .9rem; margin: .2rem 0; }
.controls { display: flex; flex-wrap: wrap; gap: 1rem; margin: .8rem 0; align-items: end; }
.controls label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); }
.controls select { font-size: 1rem; padding: .15rem .3rem; }
svg#map { width: 100%; height: auto; border: 1px solid var(--line); background: #fafafa; display: block; }
#cells path { stroke: #ffffff; stroke-width: .6; cursor: pointer; }
#cells path:hover, #cells path:focus { stroke: #000000; stroke-width: 2; outline: none; }
#cells path.nodata { stroke: #bbbbbb; stroke-dasharray: 2 2; }
.legend { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: center; margin: .6rem 0; font-size: .85rem; }
.legend .swatch { display: inline-block; width: 18px; height: 12px; vertical-align: middle; margin-right: .3rem;
                  border: 1px solid #999; }
#tooltip { position: fixed; pointer-events: none; background: #ffffff; border: 1px solid #888; border-radius: 4px;
           padding: .4rem .6rem; font-size: .85rem; box-shadow: 0 2px 6px rgba(0,0,0,.2); max-width: 340px; }
#tooltip[hidden] { display: none; }
#tooltip .cell { font-weight: 600; }
#tooltip .chosen { font-weight: 700; }
#tooltip .small-flag { color: #a33; }
"""

JS = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("map-data").textContent);
  var PALETTE = %(palette)s;
  var paths = Array.prototype.slice.call(document.querySelectorAll("#cells path"));
  var attrSel = document.getElementById("attribute"), classSel = document.getElementById("class");
  var estSel = document.getElementById("estimator"), tip = document.getElementById("tooltip");
  var level = Math.round(100 * data.confidence) + "%%";
  var scaleMax = 1;

  function rgb(hex) { return [1, 3, 5].map(function (i) { return parseInt(hex.substr(i, 2), 16); }); }
  function colour(t) {
    t = Math.max(0, Math.min(1, t)) * (PALETTE.length - 1);
    var i = Math.min(Math.floor(t), PALETTE.length - 2), f = t - i, a = rgb(PALETTE[i]), b = rgb(PALETTE[i + 1]);
    return "rgb(" + a.map(function (v, j) { return Math.round(v + f * (b[j] - v)); }).join(",") + ")";
  }
  function pct(v) { return (100 * v).toFixed(1) + "%%"; }
  function attribute() { return data.attributes[attrSel.value]; }

  function fillClasses() {
    var a = attribute();
    classSel.innerHTML = "";
    a.classes.forEach(function (name, k) {
      var option = document.createElement("option");
      option.value = String(k); option.textContent = name; classSel.appendChild(option);
    });
  }

  function draw() {
    var a = attribute(), k = +classSel.value, values = a.values[k][estSel.value];
    var max = 0;
    values.forEach(function (v, g) { if (v !== null && !a.small[g]) { max = Math.max(max, v); } });
    scaleMax = max > 0 ? max : 1;
    paths.forEach(function (p, g) {
      var v = values[+p.dataset.g];
      p.classList.remove("small", "nodata");
      if (v === null) { p.setAttribute("fill", "#f3f3f3"); p.classList.add("nodata"); }
      else if (a.small[+p.dataset.g]) { p.setAttribute("fill", "url(#hatch)"); p.classList.add("small"); }
      else { p.setAttribute("fill", colour(v / scaleMax)); }
    });
    document.getElementById("legend-low").textContent = pct(0);
    document.getElementById("legend-mid").textContent = pct(scaleMax / 2);
    document.getElementById("legend-high").textContent = pct(scaleMax);
    document.getElementById("legend-title").textContent =
      (estSel.value === "expected" ? "expected share" : "top-class share") + " of " +
      a.classes[k] + " (" + attrSel.value + ")";
  }

  function line(label, field, value, chosen) {
    return "<div" + (chosen ? " class=\\"chosen\\"" : "") + ">" + label + ": <span data-field=\\"" + field + "\\">" +
      value + "</span></div>";
  }
  function share(a, k, g, est, label) {
    var v = a.values[k][est][g], lo = a.values[k][est + "_low"][g], hi = a.values[k][est + "_high"][g];
    return "<div" + (estSel.value === est ? " class=\\"chosen\\"" : "") + ">" + label + ": <span data-field=\\"" +
      est + "_share\\">" + pct(v) + "</span> (" + level + ": <span data-field=\\"" + est + "_low\\">" + pct(lo) +
      "</span> to <span data-field=\\"" + est + "_high\\">" + pct(hi) + "</span>)</div>";
  }
  function escapeHtml(s) {
    return String(s).replace(/[&<>"]/g, function (c) { return {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\\"": "&quot;"}[c]; });
  }
  function show(g, x, y) {
    var a = attribute(), k = +classSel.value, group = data.groups[g];
    var html = "<div class=\\"cell\\" data-field=\\"cell\\">" + escapeHtml(group.cell) + "</div>";
    Object.keys(group.keys).forEach(function (key) { html += line(escapeHtml(key), key, escapeHtml(group.keys[key])); });
    html += line(escapeHtml(attrSel.value), "class", escapeHtml(a.classes[k]));
    if (a.n[g] === null) {
      html += "<div>no images for this attribute</div>";
    } else {
      html += line("images", "n", String(a.n[g]));
      if (a.small[g]) { html += "<div class=\\"small-flag\\">small group (under " + data.small_below + " images)</div>"; }
      html += share(a, k, g, "expected", "expected share") + share(a, k, g, "top", "top-class share");
    }
    tip.innerHTML = html;
    tip.hidden = false;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    tip.style.left = Math.min(x + 14, window.innerWidth - w - 8) + "px";
    tip.style.top = Math.min(y + 14, window.innerHeight - h - 8) + "px";
  }
  function hide() { tip.hidden = true; }

  paths.forEach(function (p) {
    var g = +p.dataset.g;
    p.addEventListener("mousemove", function (e) { show(g, e.clientX, e.clientY); });
    p.addEventListener("mouseleave", hide);
    p.addEventListener("focus", function () { var r = p.getBoundingClientRect(); show(g, r.right, r.top); });
    p.addEventListener("blur", hide);
  });
  attrSel.addEventListener("change", function () { fillClasses(); draw(); });
  classSel.addEventListener("change", draw);
  estSel.addEventListener("change", draw);
  fillClasses();
  draw();
  document.body.dataset.ready = "1";
})();
"""


def script() -> str:
    """The page's JavaScript with the palette filled in."""
    import json

    return JS % {"palette": json.dumps(list(PALETTE))}
