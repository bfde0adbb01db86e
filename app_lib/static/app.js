// The page's behaviour: one state object (image, mask operations, undo/redo), the mask drawn on its own canvas
// layer at the image's own pixel size, and the calls to the /api/v1 API whose errors are shown in one line.

const HOLE_COLOR = "#ff2d6f";
const $ = (id) => document.getElementById(id);

const state = {
  model: null,        // GET /api/v1/model
  file: null,         // the image as opened (its bytes are what the server receives)
  name: "image",      // file stem, for download names
  width: 0, height: 0,
  bitmap: null,
  ops: [],            // mask operations, replayed to draw the mask: stroke | fill | clear
  redo: [],
  tool: "brush",
  brush: 32,          // brush diameter in screen pixels
  inputUrl: null,     // the last request's input (hole shown) for "hold to see input"
  urls: [],           // object URLs of the gallery, revoked when it is replaced
  busy: false,
};

// ---------------------------------------------------------------------------------------------------------------
// Messages.

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function setStatus(text) { $("status").textContent = text; }

async function apiError(response) {
  try {
    const body = await response.json();
    if (body && typeof body.detail === "string") return body.detail;
  } catch (_) { /* not JSON */ }
  return `HTTP ${response.status} ${response.statusText}`;
}

async function api(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new Error(`the server cannot be reached (${err.message})`);
  }
  if (!response.ok) throw new Error(await apiError(response));
  return response;
}

// ---------------------------------------------------------------------------------------------------------------
// The model and the controls it decides.

async function loadModel() {
  state.model = await (await api("/api/v1/model")).json();
  const m = state.model;
  $("model-info").textContent = m.name ? `${m.name} (${m.resolution}x${m.resolution})` : "no network loaded";
  const help = [m.network_error, m.help].filter(Boolean).join(" ");
  $("help").textContent = help;
  $("help").hidden = !help;
  const box = $("methods");
  for (const method of m.methods) {
    const label = document.createElement("label");
    label.innerHTML = `<input type="checkbox" checked> `;
    label.firstChild.value = method.id;
    label.append(method.label);
    box.append(label);
  }
  $("gan-options").hidden = !m.methods.some((x) => x.id === "gan");
  $("seed-count").max = m.max_seeds;
  for (const fit of m.fits) $("fit").append(new Option(fit, fit, fit === m.default_fit, fit === m.default_fit));
  for (const spec of m.mask_specs) $("mask-spec").append(new Option(spec, spec));
}

// ---------------------------------------------------------------------------------------------------------------
// Opening an image: the server checks it first (size limits, truncated files), then the page shows it.

function formOf(fields) {
  const form = new FormData();
  for (const [key, value] of Object.entries(fields)) {
    if (value instanceof Blob) form.append(key, value, key === "image" ? fileName(value, "image") : "mask.png");
    else form.append(key, String(value));
  }
  return form;
}

function fileName(blob, fallback) { return blob.name || `${fallback}.png`; }

async function openImage(file) {
  if (!file) return;
  showError("");
  try {
    const info = await (await api("/api/v1/inspect", { method: "POST", body: formOf({ image: file }) })).json();
    const bitmap = await createImageBitmap(file);
    if (bitmap.width !== info.width || bitmap.height !== info.height) {
      throw new Error(`image: the browser reads ${bitmap.width}x${bitmap.height}, the server ${info.width}x${info.height}`);
    }
    state.file = file;
    state.name = (file.name || "pasted").replace(/\.[^.]*$/, "") || "image";
    state.width = info.width;
    state.height = info.height;
    state.bitmap = bitmap;
    state.ops = [];
    state.redo = [];
    for (const canvas of [$("image-layer"), $("mask-layer")]) {
      canvas.width = info.width;
      canvas.height = info.height;
    }
    $("image-layer").getContext("2d").drawImage(bitmap, 0, 0);
    redrawMask();
    $("stage").classList.remove("empty");
    fitToWindow();
    $("inpaint").disabled = false;
    $("stage").dataset.ready = "1";
    setStatus(`${state.name}: ${info.width}x${info.height}`);
  } catch (err) {
    showError(err.message);
  }
}

function fitToWindow() {
  if (!state.bitmap) return;
  const stage = $("stage");
  const availW = $("workspace").clientWidth;
  // Most of the window below the stage's top, leaving the gallery's first row in sight.
  const availH = Math.max(200, 0.72 * (window.innerHeight - stage.getBoundingClientRect().top - 16));
  const scale = Math.min(availW / state.width, availH / state.height);
  const w = Math.max(1, Math.floor(state.width * scale));
  const h = Math.max(1, Math.floor(state.height * scale));
  for (const canvas of [$("image-layer"), $("mask-layer")]) {
    canvas.style.width = `${w}px`;
    canvas.style.height = `${h}px`;
    canvas.classList.toggle("pixelated", scale > 2 && Math.max(state.width, state.height) < 128);
  }
  stage.style.width = `${w}px`;
  stage.style.height = `${h}px`;
}

// ---------------------------------------------------------------------------------------------------------------
// The mask: operations replayed onto the mask layer; undo and redo move operations between two stacks.

function drawStroke(ctx, op, from = 0) {
  ctx.globalCompositeOperation = op.erase ? "destination-out" : "source-over";
  ctx.strokeStyle = ctx.fillStyle = HOLE_COLOR;
  ctx.lineWidth = 2 * op.radius;
  ctx.lineCap = ctx.lineJoin = "round";
  const pts = op.points;
  if (pts.length === 1) {
    ctx.beginPath();
    ctx.arc(pts[0][0], pts[0][1], op.radius, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  ctx.beginPath();
  ctx.moveTo(pts[Math.max(0, from - 1)][0], pts[Math.max(0, from - 1)][1]);
  for (let i = Math.max(1, from); i < pts.length; i++) ctx.lineTo(pts[i][0], pts[i][1]);
  ctx.stroke();
}

function redrawMask() {
  const ctx = $("mask-layer").getContext("2d");
  ctx.globalCompositeOperation = "source-over";
  ctx.clearRect(0, 0, state.width, state.height);
  for (const op of state.ops) {
    if (op.type === "stroke") drawStroke(ctx, op);
    else {
      ctx.globalCompositeOperation = "source-over";
      ctx.clearRect(0, 0, state.width, state.height);
      if (op.type === "fill") ctx.drawImage(op.canvas, 0, 0);
    }
  }
  ctx.globalCompositeOperation = "source-over";
}

function pushOp(op) {
  state.ops.push(op);
  state.redo = [];
}

function undo() {
  if (state.ops.length) state.redo.push(state.ops.pop());
  redrawMask();
}

function redo() {
  if (state.redo.length) state.ops.push(state.redo.pop());
  redrawMask();
}

function imagePoint(event) {
  const rect = $("mask-layer").getBoundingClientRect();
  return [(event.clientX - rect.left) * state.width / rect.width, (event.clientY - rect.top) * state.height / rect.height];
}

function brushRadius() {
  const rect = $("mask-layer").getBoundingClientRect();
  return Math.max(0.5, state.brush / 2 * state.width / rect.width);
}

function setupPainting() {
  const layer = $("mask-layer");
  const cursor = $("brush-cursor");
  let current = null;
  layer.addEventListener("pointerdown", (event) => {
    if (!state.bitmap || event.button !== 0) return;
    layer.setPointerCapture(event.pointerId);
    current = { type: "stroke", erase: state.tool === "erase", radius: brushRadius(), points: [imagePoint(event)] };
    pushOp(current);
    drawStroke(layer.getContext("2d"), current);
  });
  layer.addEventListener("pointermove", (event) => {
    const rect = $("stage").getBoundingClientRect();
    cursor.hidden = false;
    cursor.style.left = `${event.clientX - rect.left}px`;
    cursor.style.top = `${event.clientY - rect.top}px`;
    cursor.style.width = cursor.style.height = `${state.brush}px`;
    if (!current) return;
    current.points.push(imagePoint(event));
    drawStroke(layer.getContext("2d"), current, current.points.length - 1);
  });
  const end = () => {
    if (!current) return;
    current = null;
    redrawMask();  // the replayed stroke, so that undo and redo give back exactly what the user sees now
  };
  layer.addEventListener("pointerup", end);
  layer.addEventListener("pointercancel", end);
  layer.addEventListener("pointerleave", () => { cursor.hidden = true; });
}

function setTool(tool) {
  state.tool = tool;
  $("tool-brush").classList.toggle("active", tool === "brush");
  $("tool-erase").classList.toggle("active", tool === "erase");
}

function setBrush(size) {
  state.brush = Math.round(Math.min(200, Math.max(2, size)));
  $("brush-size").value = state.brush;
  $("brush-size-value").textContent = state.brush;
}

// A mask picture (white = hole) -> a canvas of the image's size with the hole in the layer's colour.
async function holeCanvas(blob) {
  const bitmap = await createImageBitmap(blob);
  const canvas = document.createElement("canvas");
  canvas.width = state.width;
  canvas.height = state.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0, state.width, state.height);
  const pixels = ctx.getImageData(0, 0, state.width, state.height);
  const d = pixels.data;
  for (let i = 0; i < d.length; i += 4) {
    const hole = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2] >= 128;
    d[i] = 0xff; d[i + 1] = 0x2d; d[i + 2] = 0x6f; d[i + 3] = hole ? 255 : 0;
  }
  ctx.putImageData(pixels, 0, 0);
  return canvas;
}

async function fillFromSpec() {
  if (!state.bitmap) return showError("open an image first");
  showError("");
  try {
    const q = new URLSearchParams({ spec: $("mask-spec").value, width: state.width, height: state.height,
      seed: $("mask-seed").value || "0" });
    const blob = await (await api(`/api/v1/mask?${q}`)).blob();
    pushOp({ type: "fill", canvas: await holeCanvas(blob) });
    redrawMask();
  } catch (err) {
    showError(err.message);
  }
}

async function uploadMask(file) {
  if (!file) return;
  if (!state.bitmap) return showError("open an image first");
  showError("");
  try {
    await api("/api/v1/inspect", { method: "POST", body: formOf({ image: state.file, mask: file }) });
    pushOp({ type: "fill", canvas: await holeCanvas(file) });
    redrawMask();
  } catch (err) {
    showError(err.message);
  }
}

// The mask as a file: white = hole on black, at the image's size.
function maskBlob() {
  const w = state.width, h = state.height;
  const white = document.createElement("canvas");
  white.width = w; white.height = h;
  const wctx = white.getContext("2d");
  wctx.drawImage($("mask-layer"), 0, 0);
  wctx.globalCompositeOperation = "source-in";
  wctx.fillStyle = "#fff";
  wctx.fillRect(0, 0, w, h);
  const out = document.createElement("canvas");
  out.width = w; out.height = h;
  const ctx = out.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, w, h);
  ctx.drawImage(white, 0, 0);
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

function download(url, name) {
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
}

async function downloadMask() {
  if (!state.bitmap) return showError("open an image first");
  const url = URL.createObjectURL(await maskBlob());
  download(url, `${state.name}_mask.png`);
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---------------------------------------------------------------------------------------------------------------
// Inpainting: one request per method, in turn, each with a token whose progress the page polls.

function seedsText() {
  const list = $("seed-list").value.trim();
  if (list) return list;
  const n = Number($("seed-count").value);
  return n === 1 ? "0" : `0-${n - 1}`;
}

function b64ToBlob(b64) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type: "image/png" });
}

function addResult(label, blob, fileTag) {
  const url = URL.createObjectURL(blob);
  state.urls.push(url);
  const fig = document.createElement("figure");
  const img = new Image();
  img.src = url;
  img.alt = label;
  img.classList.toggle("pixelated", Math.max(state.width, state.height) < 128);
  img.addEventListener("click", () => openViewer(url, label, fileTag));
  const cap = document.createElement("figcaption");
  const span = document.createElement("span");
  span.textContent = label;
  const a = document.createElement("a");
  a.href = url;
  a.download = `${state.name}-${fileTag}.png`;
  a.textContent = "PNG";
  a.className = "download";
  cap.append(span, a);
  fig.append(img, cap);
  $("gallery").append(fig);
}

function inputPreview() {
  // The input as the model sees it: the image with the hole painted white.
  const canvas = document.createElement("canvas");
  canvas.width = state.width; canvas.height = state.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(state.bitmap, 0, 0);
  const tmp = document.createElement("canvas");
  tmp.width = state.width; tmp.height = state.height;
  const tctx = tmp.getContext("2d");
  tctx.drawImage($("mask-layer"), 0, 0);
  tctx.globalCompositeOperation = "source-in";
  tctx.fillStyle = "#fff";
  tctx.fillRect(0, 0, state.width, state.height);
  ctx.drawImage(tmp, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

async function inpaint() {
  if (!state.bitmap || state.busy) return;
  const methods = [...$("methods").querySelectorAll("input:checked")].map((x) => x.value);
  if (!methods.length) return showError("choose at least one method");
  showError("");
  state.busy = true;
  $("inpaint").disabled = true;
  const progress = $("progress");
  progress.hidden = false;
  progress.value = 0;
  try {
    const mask = await maskBlob();
    const seeds = seedsText();
    if (state.inputUrl) URL.revokeObjectURL(state.inputUrl);
    state.inputUrl = URL.createObjectURL(await inputPreview());
    for (const url of state.urls) URL.revokeObjectURL(url);
    state.urls = [];
    $("gallery").replaceChildren();
    $("gallery").dataset.done = "0";
    progress.max = methods.length;
    for (let k = 0; k < methods.length; k++) {
      const method = methods[k];
      const token = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
      const fields = { image: state.file, mask, method, token, format: "json" };
      if (method === "gan") {
        Object.assign(fields, { seeds, truncation: $("truncation").value || "1", dropout: $("dropout").checked,
          fit: $("fit").value });
      }
      const label = state.model.methods.find((x) => x.id === method).label;
      const poll = setInterval(() => pollProgress(token, k, label), 250);
      let body;
      try {
        body = await (await api("/api/v1/inpaint", { method: "POST", body: formOf(fields) })).json();
      } finally {
        clearInterval(poll);
      }
      for (const r of body.results) {
        addResult(r.label, b64ToBlob(r.png), r.seed === null ? method : `${method}-seed${String(r.seed).padStart(4, "0")}`);
      }
      progress.value = k + 1;
    }
    setStatus(`done: ${$("gallery").children.length} results`);
    $("gallery").dataset.done = "1";
  } catch (err) {
    showError(err.message);
    setStatus("");
  } finally {
    state.busy = false;
    $("inpaint").disabled = false;
    progress.hidden = true;
  }
}

async function pollProgress(token, k, label) {
  try {
    const p = await (await fetch(`/api/v1/progress/${token}`)).json();
    if (p.state === "queued") setStatus(`${label}: waiting (${p.ahead} request(s) ahead)`);
    else if (p.state === "running") {
      setStatus(`${label}: ${p.total > 1 ? `${p.done}/${p.total} seeds` : "running"}`);
      if (p.total) $("progress").value = k + p.done / p.total;
    }
  } catch (_) { /* the request itself reports errors */ }
}

// ---------------------------------------------------------------------------------------------------------------
// The large view: click a result; hold the button (or Space) to see the input instead.

function openViewer(url, label, fileTag) {
  const img = $("viewer-img");
  img.src = url;
  img.dataset.result = url;
  img.classList.toggle("pixelated", Math.max(state.width, state.height) < 128);
  $("viewer-label").textContent = label;
  $("viewer-download").href = url;
  $("viewer-download").download = `${state.name}-${fileTag}.png`;
  $("viewer").hidden = false;
}

function showInput(on) {
  const img = $("viewer-img");
  if ($("viewer").hidden) return;
  img.src = on && state.inputUrl ? state.inputUrl : img.dataset.result;
  $("viewer-label").classList.toggle("input", on);
}

function setupViewer() {
  const button = $("viewer-input");
  button.addEventListener("pointerdown", () => showInput(true));
  for (const ev of ["pointerup", "pointerleave", "pointercancel"]) button.addEventListener(ev, () => showInput(false));
  $("viewer-close").addEventListener("click", () => { $("viewer").hidden = true; });
  $("viewer").addEventListener("click", (event) => { if (event.target.id === "viewer") $("viewer").hidden = true; });
}

// ---------------------------------------------------------------------------------------------------------------
// Wiring.

function setupInputs() {
  $("image-file").addEventListener("change", (e) => { openImage(e.target.files[0]); e.target.value = ""; });
  $("mask-file").addEventListener("change", (e) => { uploadMask(e.target.files[0]); e.target.value = ""; });
  const stage = $("stage");
  window.addEventListener("dragover", (e) => { e.preventDefault(); stage.classList.add("dragging"); });
  window.addEventListener("dragleave", () => stage.classList.remove("dragging"));
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    stage.classList.remove("dragging");
    if (e.dataTransfer.files.length) openImage(e.dataTransfer.files[0]);
  });
  window.addEventListener("paste", (e) => {
    const item = [...e.clipboardData.items].find((x) => x.kind === "file" && x.type.startsWith("image/"));
    if (item) openImage(item.getAsFile());
  });
  $("tool-brush").addEventListener("click", () => setTool("brush"));
  $("tool-erase").addEventListener("click", () => setTool("erase"));
  $("brush-size").addEventListener("input", (e) => setBrush(Number(e.target.value)));
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("clear").addEventListener("click", () => { pushOp({ type: "clear" }); redrawMask(); });
  $("mask-fill").addEventListener("click", fillFromSpec);
  $("mask-download").addEventListener("click", downloadMask);
  $("inpaint").addEventListener("click", inpaint);
  window.addEventListener("resize", fitToWindow);
  window.addEventListener("keydown", (e) => {
    if (e.target.matches("input[type=text], input[type=number]")) return;
    const key = e.key.toLowerCase();
    if ((e.ctrlKey || e.metaKey) && key === "z") { e.preventDefault(); if (e.shiftKey) redo(); else undo(); }
    else if ((e.ctrlKey || e.metaKey) && key === "y") { e.preventDefault(); redo(); }
    else if (e.key === "[") setBrush(state.brush / 1.25);
    else if (e.key === "]") setBrush(state.brush * 1.25);
    else if (key === "b") setTool("brush");
    else if (key === "e") setTool("erase");
    else if (e.key === "Escape") $("viewer").hidden = true;
    else if (e.key === " " && !$("viewer").hidden) { e.preventDefault(); showInput(true); }
  });
  window.addEventListener("keyup", (e) => { if (e.key === " ") showInput(false); });
}

setupInputs();
setupPainting();
setupViewer();
loadModel().then(() => { document.body.dataset.ready = "1"; }).catch((err) => showError(err.message));
