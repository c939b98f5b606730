// compscope search web page: plain JS, talks to the REST API of the same server.
"use strict";
const $ = (id) => document.getElementById(id);
let offset = 0;
let lastMode = "topk";
let lastQuery = null;  // [mode, request body] of the results on screen, for export
let editorApplet = null;  // the JSME applet once its script has loaded

function mode() { return document.querySelector("input[name=mode]:checked").value; }

function num(id) { const v = $(id).value.trim(); return v === "" ? null : Number(v); }

function filters() {
  const f = {};
  const add = (name, lo, hi) => { if (lo !== null || hi !== null) f[name] = [lo, hi]; };
  add("mw", num("mw-min"), num("mw-max"));
  add("logp", num("logp-min"), num("logp-max"));
  add("hbd", null, num("hbd-max"));
  add("tpsa", null, num("tpsa-max"));
  return Object.keys(f).length ? f : null;
}

function request(m) {
  const query = $("query").value.trim();
  const limit = Number($("limit").value) || 20;
  const metric = $("metric").value;
  if (m === "topk") return ["/api/topk", { query, k: Number($("k").value) || 10, metric, filters: filters() }];
  if (m === "similarity") return ["/api/similarity", { query, threshold: Number($("threshold").value), metric, filters: filters(), offset, limit }];
  if (m === "substructure") return ["/api/substructure", { query, offset, limit, filters: filters() }];
  return ["/api/exact", { query, by: /^[A-Z]{14}-[A-Z]{10}-[A-Z]$/.test(query) ? "inchikey" : "smiles" }];
}

function esc(s) { return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c])); }

// similarity 0..1 as a bar from red (0) through yellow to green (1)
function simbar(score) {
  const s = Math.max(0, Math.min(1, score));
  return `<div class="simbar" title="similarity ${s.toFixed(3)}"><span style="width:${(100 * s).toFixed(1)}%;` +
    `background:hsl(${Math.round(120 * s)},70%,45%)"></span></div>`;
}

function depictUrl(smiles, m, query) {
  let u = `/api/depict?smiles=${encodeURIComponent(smiles)}`;
  if (m === "substructure") u += `&highlight=${encodeURIComponent(query)}`;
  return u;
}

function render(data, m, query) {
  const box = $("results");
  box.innerHTML = "";
  for (const h of data.hits) {
    const div = document.createElement("div");
    div.className = "hit";
    const props = ["mw", "logp", "hbd", "tpsa"].filter((p) => p in h).map((p) => `${p} ${h[p]}`).join(" · ");
    div.innerHTML = `<img alt="${esc(h.smiles)}" src="${depictUrl(h.smiles, m, query)}">` +
      ("score" in h ? simbar(h.score) : "") +
      `<div><b class="id">${esc(h.id)}</b> ${"score" in h ? `<span class="score">${h.score.toFixed(3)}</span>` : ""}</div>` +
      `<div class="smiles">${esc(h.smiles)}</div><div class="props">${props}</div>`;
    box.appendChild(div);
  }
  let msg = data.kind === "count" ? `${data.count} matches` : `${data.n_hits} hits`;
  if (data.n_total !== undefined) msg += ` of ${data.n_total}`;
  if (data.partial) msg += " (partial: time limit reached)";
  msg += ` in ${data.elapsed_ms.toFixed(1)} ms`;
  $("status").className = "ok";
  $("status").textContent = msg;
  $("prev").disabled = offset === 0;
  $("next").disabled = data.next_offset === null || data.next_offset === undefined;
  $("page-label").textContent = data.hits.length ? `results ${offset + 1}–${offset + data.hits.length}` : "";
  $("export-csv").disabled = $("export-sdf").disabled = data.hits.length === 0;
}

async function run() {
  const m = mode();
  if (m !== lastMode) { offset = 0; lastMode = m; }
  const [url, body] = request(m);
  $("status").className = "";
  $("status").textContent = "searching…";
  try {
    const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const data = await r.json();
    if (!r.ok) {
      const d = data.detail;
      throw new Error(typeof d === "string" ? d : JSON.stringify(d));
    }
    lastQuery = [m, body];
    render(data, m, body.query);
  } catch (e) {
    lastQuery = null;
    $("export-csv").disabled = $("export-sdf").disabled = true;
    $("results").innerHTML = "";
    $("status").className = "error";
    $("status").textContent = "Error: " + e.message;
  }
}

$("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); offset = 0; run(); });
$("next").addEventListener("click", () => { offset += Number($("limit").value) || 20; run(); });
$("prev").addEventListener("click", () => { offset = Math.max(0, offset - (Number($("limit").value) || 20)); run(); });

// all hits of the query on screen (not just this page, up to the server's cap) as a file download
async function exportHits(format) {
  if (!lastQuery) return;
  const [m, body] = lastQuery;
  const all = { ...body };
  delete all.offset;
  delete all.limit;
  const r = await fetch(`/api/export?format=${format}&mode=${m}`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(all) });
  if (!r.ok) { $("status").className = "error"; $("status").textContent = "Export failed: " + (await r.text()); return; }
  const a = document.createElement("a");
  a.href = URL.createObjectURL(await r.blob());
  a.download = `hits.${format}`;
  document.body.appendChild(a);
  a.click();
  a.remove();
}
$("export-csv").addEventListener("click", () => exportHits("csv"));
$("export-sdf").addEventListener("click", () => exportHits("sdf"));

// the structure editor (JSME), served by this server from its install folder; GWT calls jsmeOnLoad when ready
window.jsmeOnLoad = function () {
  editorApplet = new JSApplet.JSME("jsme-container", "420px", "320px", { options: "query,hydrogens" });
  $("editor-note").textContent = "draw, then use it as the query";
};
function loadEditor(info) {
  if (!info.installed) {
    $("editor-note").textContent = `structure editor not installed: run \`${info.install}\` and restart the server`;
    $("use-drawing").disabled = $("load-query").disabled = true;
    return;
  }
  $("editor-note").textContent = "loading editor…";
  const s = document.createElement("script");
  s.src = info.script;
  document.head.appendChild(s);
}
$("toggle-editor").addEventListener("click", () => { $("editor-panel").hidden = !$("editor-panel").hidden; });
$("use-drawing").addEventListener("click", () => {
  if (!editorApplet) return;
  const smi = editorApplet.smiles();
  if (!smi) { $("status").className = "error"; $("status").textContent = "Error: the drawing is empty"; return; }
  $("query").value = smi;
  offset = 0;
  run();
});
$("load-query").addEventListener("click", () => { if (editorApplet) editorApplet.readGenericMolecularInput($("query").value.trim()); });

fetch("/api/info").then((r) => r.json()).then((i) => {
  $("info").textContent = `${i.n.toLocaleString()} molecules · ${i.fingerprint.kind} r=${i.fingerprint.radius} ${i.fingerprint.nbits} bits`;
  loadEditor(i.editor);
});
