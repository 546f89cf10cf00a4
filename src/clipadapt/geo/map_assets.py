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
svg#map { width: 100%; height: auto; border: 1px solid var(--line); background: #fafafa; display: block;
          touch-action: none; cursor: grab; }
/* strokes in screen pixels whatever the zoom; thinner than a tiny cell so it keeps its colour */
#cells path { stroke: #ffffff; stroke-width: var(--stroke, .6px); vector-effect: non-scaling-stroke; cursor: pointer; }
#cells path:hover, #cells path:focus { stroke: #000000; stroke-width: 2px; outline: none; }
/* zoomed far out, a cell is under a pixel: outline it in its own colour so it still shows */
svg#map.tiny #cells path { stroke: currentColor; stroke-width: 3px; }
.controls button { font-size: .9rem; padding: .2rem .6rem; }
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
      if (v === null) { p.setAttribute("fill", "#f3f3f3"); p.classList.add("nodata"); p.style.color = "#cccccc"; }
      else if (a.small[+p.dataset.g]) { p.setAttribute("fill", "url(#hatch)"); p.classList.add("small"); p.style.color = "#a0a0a0"; }
      else { p.setAttribute("fill", colour(v / scaleMax)); p.style.color = p.getAttribute("fill"); }
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
  // zoom and pan by rewriting the view box (the cells are vector paths: sharp at any zoom)
  var svg = document.getElementById("map"), zoomSel = document.getElementById("zoom");
  var hatch = document.getElementById("hatch");
  var home = svg.getAttribute("viewBox").split(" ").map(Number), view = home.slice(), drag = null;
  function setView(v) {
    view = v;
    svg.setAttribute("viewBox", v.map(function (x) { return x.toFixed(3); }).join(" "));
    var px = v[2] / svg.getBoundingClientRect().width, cellPx = data.cell_width / px;  // view units per pixel
    svg.style.setProperty("--stroke", Math.max(0, Math.min(0.6, cellPx / 12)).toFixed(3) + "px");
    svg.classList.toggle("tiny", cellPx < 2);
    hatch.setAttribute("width", 6 * px); hatch.setAttribute("height", 6 * px);  // 6 screen pixels at any zoom
    hatch.querySelector("rect").setAttribute("width", 6 * px); hatch.querySelector("rect").setAttribute("height", 6 * px);
    hatch.querySelector("line").setAttribute("y2", 6 * px); hatch.querySelector("line").setAttribute("stroke-width", 2 * px);
  }
  function fit(box) {  // box [x, y, w, h] in view box units, padded, at the map's aspect
    var aspect = home[3] / home[2], w = Math.max(box[2], box[3] / aspect, home[2] / 4096) * 1.15, h = w * aspect;
    setView([box[0] + box[2] / 2 - w / 2, box[1] + box[3] / 2 - h / 2, w, h]);
  }
  function toView(e) {
    var r = svg.getBoundingClientRect();
    return [view[0] + (e.clientX - r.left) / r.width * view[2], view[1] + (e.clientY - r.top) / r.height * view[3]];
  }
  svg.addEventListener("wheel", function (e) {
    e.preventDefault();
    var p = toView(e), f = Math.exp(Math.max(-1, Math.min(1, e.deltaY * 0.002)));
    var w = Math.max(home[2] / 4096, Math.min(home[2] * 2, view[2] * f)), s = w / view[2];
    setView([p[0] - (p[0] - view[0]) * s, p[1] - (p[1] - view[1]) * s, w, view[3] * s]);
  }, {passive: false});
  svg.addEventListener("pointerdown", function (e) { drag = {x: e.clientX, y: e.clientY, view: view.slice()}; });
  window.addEventListener("pointerup", function () { drag = null; });
  svg.addEventListener("pointermove", function (e) {
    if (!drag || !(e.buttons & 1)) { return; }
    var r = svg.getBoundingClientRect(), v = drag.view;
    setView([v[0] - (e.clientX - drag.x) / r.width * v[2], v[1] - (e.clientY - drag.y) / r.height * v[3], v[2], v[3]]);
  });
  document.getElementById("reset").addEventListener("click", function () {
    if (zoomSel) { zoomSel.value = ""; }
    setView(home.slice());
  });
  if (zoomSel) {
    zoomSel.addEventListener("change", function () {
      if (zoomSel.value) { fit(data.zoom.extents[zoomSel.value]); } else { setView(home.slice()); }
    });
  }
  setView(home.slice());

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
