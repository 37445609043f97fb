"""An HTML gallery of a results table: every galaxy as the model saw it, to look at and to correct.

:func:`write_gallery` writes one static page (``OUT.html``) and a folder of thumbnails beside it
(``OUT_thumbnails/``, one small JPEG of the crop each galaxy was classified from, at the model's
input size). The page opens from the disk in any browser, with no server and nothing fetched from
the network: the table is inside it, the only outside links are the SkyServer explore pages. It
sorts by probability or confidence, filters by class, ``uncertain``, ``failed`` and (an evaluate
page) "disagrees with its label", says how many galaxies it shows, and draws only the rows in view,
so 20,000 galaxies scroll as smoothly as 20.

On an evaluate page each galaxy's label can be marked wrong (spiral, elliptical, or "not sure:
leave out"); the marks live in the browser's local storage (they survive a reload) and a button
downloads them as ``label_corrections.csv`` (file, objid, old_label, new_label), which the trainer's
``--label-corrections`` applies.
"""

import html
import json
import shutil
from pathlib import Path

import numpy as np

from galaxy_classification.data import storage

THUMBNAIL_QUALITY = 85
CORRECTIONS_FILE = "label_corrections.csv"
CHUNK = 64


def gallery_paths(out):
    """The page and its thumbnail folder for a results table written to ``out``."""
    out = Path(out)
    return out.with_suffix(".html"), out.with_name(f"{out.stem}_thumbnails")


def write_thumbnails(images, crops, image_size, folder, first=0, readable=None):
    """Save the model's view of every frame of ``images`` (its crop, at ``image_size``) as
    ``folder/NNNNNN.jpg``, numbered from ``first``; return the file names in order ('' where
    ``readable`` is False: a frame that could not be read has no view)."""
    from PIL import Image

    from galaxy_classification.data import input_pipeline

    readable = np.ones(len(images), bool) if readable is None else np.asarray(readable, bool)
    crops = np.broadcast_to(np.asarray(crops, dtype=np.float64), (len(images),))
    names = [f"{first + index:06d}.jpg" if ok else "" for index, ok in enumerate(readable)]
    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(images), CHUNK):
        chunk = np.flatnonzero(readable[start:start + CHUNK]) + start
        if len(chunk) == 0:
            continue
        views = input_pipeline.preprocess_rows(images, chunk, crops, image_size)
        for index, view in zip(chunk, views):
            Image.fromarray(view).save(folder / names[index], quality=THUMBNAIL_QUALITY)
    return names


def staging_folder(folder):
    """A fresh folder beside ``folder`` to write thumbnails into before they replace the old ones."""
    import tempfile

    folder.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))


def write_gallery(table, thumbnails, path, title, kind="predict", page_key=None):
    """Write the gallery page of ``table`` to ``path`` (the thumbnails are already in their folder).

    Parameters
    ----------
    table : pandas.DataFrame
        A results table (source, p_spiral, p_elliptical, predicted, [status, reason], [objid,
        explore_url]; an evaluate table also has label).
    thumbnails : list of str
        Each row's thumbnail file name inside the thumbnail folder ('' for none).
    path : str or Path
        The page, ``OUT.html``.
    title : str
        What the page shows, e.g. the model and the data.
    kind : str
        ``predict`` (classify and predict) or ``evaluate`` (labels, and marking them wrong).
    page_key : str, optional
        Keys the corrections kept in the browser (default: the page's file name).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    folder = gallery_paths(path)[1].name
    rows = [_row(record, thumbnail) for record, thumbnail in zip(table.to_dict("records"), thumbnails)]
    data = json.dumps({"kind": kind, "title": title, "thumbnails": folder, "key": page_key or path.name,
                       "rows": rows}, separators=(",", ":"))
    page = PAGE.replace("__TITLE__", html.escape(title)).replace("__DATA__", data.replace("</", "<\\/"))
    storage.write_text_atomic(path, page)
    return path


def replace_folder(temporary, folder):
    """Put a freshly written thumbnail folder in the place of the old one."""
    if folder.exists():
        shutil.rmtree(folder)
    temporary.rename(folder)


def _row(record, thumbnail):
    def text(name):
        value = record.get(name)
        return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)

    p_elliptical = record.get("p_elliptical")
    known = p_elliptical is not None and not (isinstance(p_elliptical, float) and np.isnan(p_elliptical))
    row = {"t": thumbnail, "s": text("source"), "p": round(float(p_elliptical), 4) if known else None,
           "c": text("predicted"), "st": text("status") or "ok", "r": text("reason"), "o": text("objid"),
           "u": text("explore_url")}
    if "label" in record:
        row["l"] = int(record["label"])
    return row


PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2430; background: #f6f7f9; }
  header { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid #d8dce3;
           padding: 10px 16px; display: flex; flex-wrap: wrap; gap: 10px 18px; align-items: center; }
  h1 { font-size: 16px; margin: 0; flex-basis: 100%; }
  label { white-space: nowrap; }
  #count { font-weight: 600; }
  #list { position: relative; overflow-y: auto; height: calc(100vh - 110px); }
  #spacer { position: relative; }
  .row { position: absolute; left: 0; right: 0; height: 76px; display: flex; align-items: center; gap: 14px;
         padding: 0 16px; border-bottom: 1px solid #e6e9ee; background: #fff; }
  .row img, .row .blank { width: 64px; height: 64px; image-rendering: pixelated; background: #000; flex: none; }
  .source { width: 30%; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; color: #51607a; }
  .class { width: 92px; font-weight: 600; }
  .spiral { color: #1f5fbf; } .elliptical { color: #b5532b; } .uncertain { color: #7a7a7a; } .failed { color: #b00020; }
  .prob { width: 150px; font-variant-numeric: tabular-nums; }
  .label { width: 200px; }
  .disagrees { background: #fff6e5; }
  .marked { outline: 2px solid #6a4fd6; outline-offset: -2px; }
  button { font: inherit; }
</style>
</head>
<body>
<header>
  <h1>__TITLE__</h1>
  <label>Sort <select id="sort">
    <option value="table">table order</option>
    <option value="p-desc">p(elliptical), high first</option>
    <option value="p-asc">p(elliptical), low first</option>
    <option value="conf-asc">confidence, low first</option>
    <option value="conf-desc">confidence, high first</option>
  </select></label>
  <label>Show <select id="filter">
    <option value="all">all</option>
    <option value="spiral">spiral</option>
    <option value="elliptical">elliptical</option>
    <option value="uncertain">uncertain</option>
    <option value="failed">failed</option>
    <option value="disagrees" class="evaluate-only">disagrees with its label</option>
    <option value="marked" class="evaluate-only">labels marked wrong</option>
  </select></label>
  <span id="count"></span>
  <span class="evaluate-only"><span id="marks"></span>
    <button id="download" type="button">Download label_corrections.csv</button></span>
</header>
<div id="list"><div id="spacer"></div></div>
<script id="gallery-data" type="application/json">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("gallery-data").textContent);
const ROW_HEIGHT = 76, NAMES = ["spiral", "elliptical"], CHOICES = {keep: "keep label", "0": "spiral",
  "1": "elliptical", leave: "not sure: leave out"};
const STORE = "galaxy-classification:corrections:" + DATA.key;
const evaluate = DATA.kind === "evaluate";
const list = document.getElementById("list"), spacer = document.getElementById("spacer");
let marks = {};
try { marks = JSON.parse(localStorage.getItem(STORE) || "{}"); } catch (error) { marks = {}; }
let shown = [];

document.querySelectorAll(".evaluate-only").forEach(node => { if (!evaluate) node.remove(); });
DATA.rows.forEach((row, index) => {
  row.i = index;
  row.conf = row.p === null ? -1 : Math.max(row.p, 1 - row.p);
  row.kind = row.st === "failed" ? "failed" : row.c;
  row.disagrees = evaluate && row.p !== null && (row.p >= 0.5 ? 1 : 0) !== row.l;
});

function keyOf(row) { return row.o || row.s; }

function choose() {
  const filter = document.getElementById("filter").value, sort = document.getElementById("sort").value;
  shown = DATA.rows.filter(row => filter === "all" || row.kind === filter ||
    (filter === "disagrees" && row.disagrees) || (filter === "marked" && keyOf(row) in marks));
  const by = {"p-desc": r => -(r.p ?? -1), "p-asc": r => r.p ?? 2, "conf-asc": r => r.conf < 0 ? 2 : r.conf,
              "conf-desc": r => -r.conf, table: r => r.i}[sort];
  shown.sort((a, b) => by(a) - by(b) || a.i - b.i);
  document.getElementById("count").textContent = shown.length + " of " + DATA.rows.length + " galaxies shown";
  spacer.style.height = shown.length * ROW_HEIGHT + "px";
  list.scrollTop = 0;
  draw(true);
  countMarks();
}

function cell(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawRow(row, position) {
  const node = cell("div", "row" + (row.disagrees ? " disagrees" : "") + (keyOf(row) in marks ? " marked" : ""));
  node.style.top = position * ROW_HEIGHT + "px";
  node.dataset.index = row.i;
  if (row.t) {
    const image = cell("img");
    image.loading = "lazy"; image.alt = "the model's view of " + row.s;
    image.src = DATA.thumbnails + "/" + row.t;
    node.append(image);
  } else node.append(cell("div", "blank"));
  node.append(cell("div", "class " + row.kind, row.st === "failed" ? "failed" : row.c));
  node.append(cell("div", "prob", row.p === null ? row.r : "p(elliptical) " + row.p.toFixed(3)));
  if (evaluate) {
    const label = cell("div", "label", "label: " + NAMES[row.l] + " ");
    const select = cell("select");
    select.className = "correction";
    for (const [value, text] of Object.entries(CHOICES)) {
      const option = cell("option", null, text); option.value = value; select.append(option);
    }
    select.value = marks[keyOf(row)] ?? "keep";
    select.addEventListener("change", () => mark(row, select.value));
    label.append(select);
    node.append(label);
  }
  const source = cell("div", "source", row.s);
  source.title = row.s + (row.r ? " — " + row.r : "");
  node.append(source);
  if (row.o && row.u) {
    const link = cell("a", null, row.o); link.href = row.u; link.target = "_blank"; link.rel = "noopener";
    node.append(link);
  } else if (row.o) node.append(cell("span", null, row.o));
  return node;
}

let drawn = [-1, -1];
function draw(force) {
  const first = Math.max(0, Math.floor(list.scrollTop / ROW_HEIGHT) - 10);
  const last = Math.min(shown.length, Math.ceil((list.scrollTop + list.clientHeight) / ROW_HEIGHT) + 10);
  if (!force && first === drawn[0] && last === drawn[1]) return;
  drawn = [first, last];
  const rows = [];
  for (let position = first; position < last; position++) rows.push(drawRow(shown[position], position));
  spacer.replaceChildren(...rows);
}

function mark(row, value) {
  if (value === "keep" || Number(value) === row.l) delete marks[keyOf(row)];
  else marks[keyOf(row)] = value;
  localStorage.setItem(STORE, JSON.stringify(marks));
  draw(true);
  countMarks();
}

function countMarks() {
  if (!evaluate) return;
  document.getElementById("marks").textContent = Object.keys(marks).length + " label(s) marked";
}

function csvField(text) { return /[",\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text; }

function download() {
  const lines = ["file,objid,old_label,new_label"];
  for (const row of DATA.rows) {
    const value = marks[keyOf(row)];
    if (value === undefined) continue;
    const changed = value === "leave" ? "leave out" : NAMES[Number(value)];
    lines.push([row.s, row.o, NAMES[row.l], changed].map(csvField).join(","));
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], {type: "text/csv"}));
  link.download = "label_corrections.csv";
  document.body.append(link); link.click(); link.remove();
}

list.addEventListener("scroll", () => requestAnimationFrame(() => draw(false)), {passive: true});
window.addEventListener("resize", () => draw(true));
document.getElementById("sort").addEventListener("change", choose);
document.getElementById("filter").addEventListener("change", choose);
if (evaluate) document.getElementById("download").addEventListener("click", download);
choose();
window.galleryReady = performance.now();
</script>
</body>
</html>
"""
