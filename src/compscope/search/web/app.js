// compscope search web page: plain JS, talks to the REST API of the same server.
"use strict";
const $ = (id) => document.getElementById(id);
let offset = 0;
let lastMode = "topk";

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

function render(data) {
  const box = $("results");
  box.innerHTML = "";
  for (const h of data.hits) {
    const div = document.createElement("div");
    div.className = "hit";
    const props = ["mw", "logp", "hbd", "tpsa"].filter((p) => p in h).map((p) => `${p} ${h[p]}`).join(" · ");
    div.innerHTML = `<img alt="${esc(h.smiles)}" src="/api/depict?smiles=${encodeURIComponent(h.smiles)}">` +
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
    render(data);
  } catch (e) {
    $("results").innerHTML = "";
    $("status").className = "error";
    $("status").textContent = "Error: " + e.message;
  }
}

$("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); offset = 0; run(); });
$("next").addEventListener("click", () => { offset += Number($("limit").value) || 20; run(); });
$("prev").addEventListener("click", () => { offset = Math.max(0, offset - (Number($("limit").value) || 20)); run(); });

fetch("/api/info").then((r) => r.json()).then((i) => {
  $("info").textContent = `${i.n.toLocaleString()} molecules · ${i.fingerprint.kind} r=${i.fingerprint.radius} ${i.fingerprint.nbits} bits`;
});
