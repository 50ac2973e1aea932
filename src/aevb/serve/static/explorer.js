// aevb explorer: the page side. Every decode runs on the server (POST /api/decode); this file only
// draws. The exact z behind the image on show is kept in #decoded-raw's data-z attribute.
"use strict";

const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const SLIDER_RANGE = 4;
const state = { info: null, points: null, z: [], label: null, range: 3, inFlight: false, queued: null, decodes: 0, sampleSeed: 0 };
const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const init = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, init);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function showError(e) {
  const box = $("error");
  box.textContent = e ? String(e.message || e) : "";
  box.hidden = !e;
}

// --- drawing data -------------------------------------------------------------------------------

function grey(v) { return Math.round(255 * Math.min(1, Math.max(0, v))); }

// Draw E[x|z] of an image model into `raw` at its own resolution, then scaled into `shown`. The values
// are grey (H, W) or channels first (C, H, W), C = 1 (grey) or 3 (red, green and blue planes).
function drawImage(x, raw, shown) {
  const shape = state.info.data_shape;
  const [h, w] = shape.slice(-2);
  const planes = shape.length === 3 && shape[0] === 3 ? [0, h * w, 2 * h * w] : [0, 0, 0];
  raw.width = w; raw.height = h;
  const ctx = raw.getContext("2d");
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let c = 0; c < 3; c++) img.data[4 * i + c] = grey(x[planes[c] + i]);
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  if (shown) {
    const s = shown.getContext("2d");
    s.imageSmoothingEnabled = false;
    s.clearRect(0, 0, shown.width, shown.height);
    const scale = Math.min(shown.width / w, shown.height / h);
    s.drawImage(raw, 0, 0, w * scale, h * scale);
  }
}

// Tables: one bar per feature, scaled to the test data's range, plus the values.
function drawFeatures(x, canvas, table) {
  const { feature_min: lo, feature_max: hi } = state.info;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const bw = canvas.width / x.length;
  x.forEach((v, i) => {
    const t = Math.min(1, Math.max(0, (v - lo[i]) / ((hi[i] - lo[i]) || 1)));
    ctx.fillStyle = "#1f77b4";
    ctx.fillRect(i * bw + 1, canvas.height * (1 - t), Math.max(1, bw - 2), canvas.height * t);
  });
  if (table) {
    table.innerHTML = "<table><tr><th>feature</th><th>E[x|z]</th><th>test range</th></tr>" +
      x.map((v, i) => `<tr><td>x${i + 1}</td><td>${v.toFixed(4)}</td><td>${lo[i].toFixed(2)} … ${hi[i].toFixed(2)}</td></tr>`).join("") + "</table>";
  }
}

function thumbnail(x, size) {
  const c = document.createElement("canvas");
  if (state.info.is_image) {
    const [h, w] = state.info.data_shape.slice(-2);
    const raw = document.createElement("canvas");
    const scale = Math.max(1, Math.floor(size / Math.max(h, w)));
    c.width = w * scale; c.height = h * scale;
    drawImage(x, raw, c);
  } else {
    c.width = size; c.height = size / 2;
    drawFeatures(x, c, null);
  }
  return c;
}

// --- the latent plane ---------------------------------------------------------------------------

function toPlane(z) {  // latent vector -> plane coordinates (u, v)
  const { center, components } = state.info.plane;
  return components.map((c) => c.reduce((s, ci, i) => s + ci * (z[i] - center[i]), 0));
}

function fromPlane(u, v) {  // plane coordinates -> latent vector z = center + u c1 + v c2
  const { center, components } = state.info.plane;
  return center.map((m, i) => m + u * components[0][i] + v * components[1][i]);
}

function drawPlane() {
  const canvas = $("plane"), ctx = canvas.getContext("2d"), R = state.range;
  const W = canvas.width, H = canvas.height;
  const px = (u) => (u / R + 1) * W / 2, py = (v) => (1 - v / R) * H / 2;
  ctx.clearRect(0, 0, W, H);
  ctx.strokeStyle = "#ddd";
  ctx.beginPath(); ctx.moveTo(px(0), 0); ctx.lineTo(px(0), H); ctx.moveTo(0, py(0)); ctx.lineTo(W, py(0)); ctx.stroke();
  const { points, labels } = state.points;
  points.forEach(([u, v], i) => {
    ctx.fillStyle = labels ? TAB10[((labels[i] % 10) + 10) % 10] : "#1f77b4";
    ctx.globalAlpha = 0.6;
    ctx.fillRect(px(u) - 1.5, py(v) - 1.5, 3, 3);
  });
  ctx.globalAlpha = 1;
  if (state.z.length) {
    const [u, v] = toPlane(state.z);
    ctx.strokeStyle = "#000"; ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.arc(px(u), py(v), 6, 0, 2 * Math.PI);
    ctx.moveTo(px(u) - 10, py(v)); ctx.lineTo(px(u) + 10, py(v)); ctx.moveTo(px(u), py(v) - 10); ctx.lineTo(px(u), py(v) + 10);
    ctx.stroke(); ctx.lineWidth = 1;
  }
}

function planeEvent(event) {
  const canvas = $("plane"), rect = canvas.getBoundingClientRect(), R = state.range;
  const x = (event.clientX - rect.left) * canvas.width / rect.width;
  const y = (event.clientY - rect.top) * canvas.height / rect.height;
  const u = (2 * x / canvas.width - 1) * R, v = (1 - 2 * y / canvas.height) * R;
  setZ(fromPlane(u, state.info.plane.kind === "latent-1d" ? 0 : v));
}

// --- the current point --------------------------------------------------------------------------

function setZ(z, fromSlider) {
  state.z = z.slice();
  if (!fromSlider) {
    state.z.forEach((v, i) => {
      $(`slider-${i}`).value = String(v);
      $(`slider-${i}-value`).textContent = v.toFixed(2);
    });
  }
  $("z-text").textContent = "[" + state.z.map((v) => v.toFixed(3)).join(", ") + "]";
  drawPlane();
  requestDecode(state.z);
}

// One request at a time; while one is in flight only the latest point waits, so dragging stays live.
function requestDecode(z) {
  if (state.inFlight) { state.queued = z.slice(); return; }
  state.inFlight = true;
  const body = state.label === null ? { z } : { z, label: state.label };
  api("/api/decode", body).then((r) => {
    showError(null);
    const raw = $("decoded-raw");
    if (state.info.is_image) drawImage(r.x, raw, $("decoded"));
    else drawFeatures(r.x, $("decoded"), $("decoded-table"));
    raw.dataset.z = JSON.stringify(r.z);
    raw.dataset.x = JSON.stringify(r.x);
    raw.dataset.label = JSON.stringify(r.label);
    state.decodes += 1;
    document.body.dataset.decodes = String(state.decodes);
  }).catch(showError).finally(() => {
    state.inFlight = false;
    if (state.queued) { const q = state.queued; state.queued = null; requestDecode(q); }
  });
}

function buildSliders() {
  const box = $("sliders");
  box.innerHTML = "";
  for (let i = 0; i < state.info.latent_dim; i++) {
    const row = document.createElement("div");
    row.className = "slider";
    row.innerHTML = `<label for="slider-${i}">z${i + 1}</label>` +
      `<input id="slider-${i}" type="range" min="${-SLIDER_RANGE}" max="${SLIDER_RANGE}" step="0.01" value="0">` +
      `<span id="slider-${i}-value">0.00</span>`;
    box.appendChild(row);
    const input = row.querySelector("input");
    input.addEventListener("input", () => {
      const z = state.z.slice();
      z[i] = parseFloat(input.value);
      $(`slider-${i}-value`).textContent = z[i].toFixed(2);
      setZ(z, true);
    });
  }
}

// --- interpolation, sampling, ranking -----------------------------------------------------------

async function interpolate() {
  try {
    const r = await api("/api/interpolate", {
      from: Number($("interp-from").value), to: Number($("interp-to").value), steps: Number($("interp-steps").value),
    });
    const strip = $("interp-strip");
    strip.innerHTML = "";
    r.x.forEach((x, i) => {
      const c = thumbnail(x, 64);
      c.title = `z = [${r.z[i].map((v) => v.toFixed(2)).join(", ")}]`;
      c.addEventListener("click", () => setZ(r.z[i]));
      strip.appendChild(c);
    });
    showError(null);
  } catch (e) { showError(e); }
}

async function sample() {
  try {
    const body = { n: 1, seed: state.sampleSeed };
    if (state.label !== null) body.label = state.label;
    const r = await api("/api/sample", body);
    state.sampleSeed += 1;
    setZ(r.z[0]);
  } catch (e) { showError(e); }
}

async function showItem(index) {
  try {
    const item = await api(`/api/items/${index}`);
    $("interp-from").value = String(index);
    if (state.label !== null) setLabel(item.label);  // a conditional run: the item's own class
    setZ(item.z);
  } catch (e) { showError(e); }
}

async function loadRanking() {
  const r = await api("/api/ranking?n=8");
  $("ranking-note").textContent = `log p(x) in nats, importance sampled with k = ${r.k} per item; ` +
    `${state.info.items} items of ${state.info.data}. Click a row to decode its posterior mean.`;
  for (const [id, rows] of [["most", r.most], ["least", r.least]]) {
    const body = $(id).querySelector("tbody");
    body.innerHTML = "";
    for (const row of rows) {
      const tr = document.createElement("tr");
      tr.dataset.index = String(row.index);
      tr.innerHTML = `<td>${row.index}</td><td>${row.label ?? "–"}</td><td>${row.log_likelihood.toFixed(2)}</td><td></td>`;
      tr.addEventListener("click", () => showItem(row.index));
      body.appendChild(tr);
      api(`/api/items/${row.index}`).then((item) => tr.lastChild.appendChild(thumbnail(item.x, 32))).catch(showError);
    }
  }
}

// A conditional run (info.classes > 0) decodes E[x | z, y] with the class chosen here.
function setLabel(label) {
  state.label = label;
  $("class").value = String(label);
}

function buildClassPicker(classes) {
  const select = $("class");
  for (let c = 0; c < classes; c++) select.add(new Option(String(c), String(c)));
  $("class-row").hidden = false;
  setLabel(0);
  select.addEventListener("change", () => { state.label = Number(select.value); requestDecode(state.z); });
}

async function main() {
  try {
    state.info = await api("/api/info");
    state.points = await api("/api/points");
    const info = state.info;
    $("run-info").textContent = `run ${info.run}: ${info.likelihood} likelihood, latent size ${info.latent_dim}, ` +
      `data ${info.data} (${info.items} items, binarisation ${info.binarize})`;
    const extent = state.points.points.reduce((m, [u, v]) => Math.max(m, Math.abs(u), Math.abs(v)), 0);
    state.range = Math.max(3, 1.05 * extent);
    $("plane").dataset.range = String(state.range);
    $("plane-axes").textContent = `horizontal: ${info.plane.axes[0]}; vertical: ${info.plane.axes[1]}; ` +
      `both from −${state.range.toFixed(2)} to ${state.range.toFixed(2)}` +
      (info.plane.kind === "pca" ? " (a PCA plane through the mean of the posterior means)" : "");
    if (!info.is_image) { $("decoded").height = 160; }
    buildSliders();
    if (info.classes > 0) buildClassPicker(info.classes);
    const plane = $("plane");
    plane.addEventListener("mousedown", (e) => { state.dragging = true; planeEvent(e); });
    plane.addEventListener("mousemove", (e) => { if (state.dragging) planeEvent(e); });
    window.addEventListener("mouseup", () => { state.dragging = false; });
    $("sample").addEventListener("click", sample);
    $("origin").addEventListener("click", () => setZ(new Array(info.latent_dim).fill(0)));
    $("interpolate").addEventListener("click", interpolate);
    setZ(new Array(info.latent_dim).fill(0));
    await loadRanking();
    document.body.dataset.ready = "true";
  } catch (e) { showError(e); }
}

document.addEventListener("DOMContentLoaded", main);
