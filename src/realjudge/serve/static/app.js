"use strict";
// The realjudge page: send each image to v1/detect, then ask v1/explain for its heat map; or, with
// "score on this device" on, score it in the browser (local.js) without uploading it.
// URLs are relative so the page also works under a reverse proxy's sub-path.

const state = { models: {}, limits: null, routing: null };
const PARALLEL = 2;          // requests in flight from this page: the server's queue is shared
const MAX_RETRIES = 5;       // on 503, following Retry-After

const $ = (sel, root = document) => root.querySelector(sel);

function setStatus(text) { $("#status").textContent = text; }

async function readError(resp) {
  try {
    const body = await resp.json();
    return body.error || `HTTP ${resp.status}`;
  } catch (_) {
    return `HTTP ${resp.status} ${resp.statusText}`;
  }
}

// POST with the file as multipart, retrying while the server says it is busy.
async function post(url, file, onWait) {
  for (let attempt = 0; ; attempt++) {
    const form = new FormData();
    form.append("file", file, file.name || "pasted-image");
    const resp = await fetch(url, { method: "POST", body: form });
    if (resp.status !== 503 || attempt >= MAX_RETRIES) return resp;
    const wait = Math.min(30, parseInt(resp.headers.get("Retry-After") || "1", 10) || 1);
    onWait(wait);
    await new Promise((ok) => setTimeout(ok, wait * 1000));
  }
}

function query(extra) {
  const params = new URLSearchParams(extra);
  const model = $("#model").value;
  if (model) params.set("model", model);
  return params.toString();
}

function fmt(x, digits = 3) { return x === null || x === undefined ? "n/a" : Number(x).toFixed(digits); }

function addDetail(card, term, value) {
  if (value === null || value === undefined || value === "") return;
  const dl = $(".details", card);
  const dt = document.createElement("dt");
  const dd = document.createElement("dd");
  dt.textContent = term;
  dd.textContent = value;
  dl.append(dt, dd);
}

const MEANING = {
  fake: (r) => `P(fake) ${fmt(r.p_fake)} is at or above the threshold ${fmt(r.threshold)}: the model judges this image generated.`,
  real: (r) => `P(fake) ${fmt(r.p_fake)} is below the threshold ${fmt(r.threshold)}: the model judges this image a photograph.`,
  uncertain: (r, band) => `P(fake) ${fmt(r.p_fake)} lies in the calibrated uncertain band ${band ? `(${fmt(band[0])} to ${fmt(band[1])})` : ""}, ` +
    `where the model's verdicts are unreliable: treat it as "cannot tell".`,
};

const PROVENANCE_WORDS = {
  ai: "the file says it is AI-generated or AI-edited",
  camera: "the file says it comes from a camera",
  conflict: "the file's metadata contradicts itself",
  none: "no deciding provenance metadata (most uploads have none; this says nothing either way)",
};

function describeFinding(f) {
  const parts = Object.entries(f.detail || {})
    .filter(([, v]) => v !== null && v !== undefined && v !== "" && !(Array.isArray(v) && v.length === 0))
    .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(", ") : typeof v === "object" ? JSON.stringify(v) : v}`);
  return parts.join("; ");
}

function showProvenance(card, r) {
  if (r.provenance === null || r.provenance === undefined) return;
  const box = $(".provenance", card);
  const list = $(".evidence", box);
  const head = document.createElement("li");
  head.className = `evidence-verdict ${r.provenance_verdict}`;
  head.textContent = `provenance: ${r.provenance_verdict}: ${PROVENANCE_WORDS[r.provenance_verdict] || ""}`;
  list.append(head);
  for (const f of r.provenance) {
    const li = document.createElement("li");
    const label = document.createElement("span");
    label.className = `evidence-label ${f.strength}`;
    label.textContent = `${f.signal}: ${f.says} (${f.strength.replace("_", " ")})`;
    li.append(label, document.createTextNode(` ${describeFinding(f)}`));
    list.append(li);
  }
  if (r.verdict_source === "provenance") {
    const li = document.createElement("li");
    li.className = "evidence-override";
    li.textContent = `verdict set by provenance (combined mode); the pixels alone said ${r.pixel_verdict}`;
    list.append(li);
  }
  box.hidden = false;
}

function showRecord(card, r) {
  const model = state.models[r.model];
  const band = model ? model.uncertain_band : null;
  card.classList.remove("pending");
  if (r.error) {
    card.classList.add("error");
    $(".verdict", card).textContent = "could not score";
    $(".meaning", card).textContent = r.error;
    $(".bar", card).hidden = true;
    $(".scale", card).hidden = true;
    $(".heat", card).hidden = true;
    showProvenance(card, r);
    return false;
  }
  card.classList.add(r.verdict);
  $(".verdict", card).textContent = r.verdict;
  $(".pfake", card).textContent = `P(fake) ${fmt(r.p_fake)}`;
  const bar = $(".bar", card);
  bar.setAttribute("aria-label", `P(fake) ${fmt(r.p_fake)}, threshold ${fmt(r.threshold)}`);
  $(".needle", bar).style.left = `${(r.p_fake * 100).toFixed(2)}%`;
  $(".threshold", bar).style.left = `${(r.threshold * 100).toFixed(2)}%`;
  // The band only applies at the bundle's own threshold (see the detector's verdict rule).
  if (band && model && Math.abs(model.threshold - r.threshold) < 1e-9 && band[1] > band[0]) {
    const b = $(".band", bar);
    b.style.left = `${band[0] * 100}%`;
    b.style.width = `${(band[1] - band[0]) * 100}%`;
    b.hidden = false;
  } else {
    $(".band", bar).hidden = true;
  }
  $(".meaning", card).textContent = MEANING[r.verdict](r, band);
  showProvenance(card, r);
  const f = r.facts || {};
  addDetail(card, "model", r.model);
  addDetail(card, "image", [f.format, f.width && `${f.width}x${f.height}`, f.jpeg_quality && `JPEG q~${f.jpeg_quality}`]
    .filter(Boolean).join(", "));
  addDetail(card, "preprocessing", r.preprocess === "none" ? "none (native input size)" : r.preprocess);
  if (r.timings) addDetail(card, "time", `decode ${fmt(r.timings.decode_ms, 1)} ms, provenance ${fmt(r.timings.provenance_ms, 1)} ms, ` +
    `model ${fmt(r.timings.model_ms, 1)} ms`);
  return true;
}

async function showHeatmap(card, file) {
  const slot = $(".heat-slot", card);
  const caption = $(".heat-caption", card);
  const resp = await post(`v1/explain?${query({ format: "png" })}`, file,
    (s) => { caption.textContent = `server busy, retrying in ${s} s`; });
  if (!resp.ok) {
    slot.textContent = "";
    caption.textContent = `no heat map: ${await readError(resp)}`;
    card.classList.add("no-heat");
    return;
  }
  const img = document.createElement("img");
  img.className = "overlay";
  img.alt = "Grad-CAM heat map over the model's input";
  img.src = URL.createObjectURL(await resp.blob());
  slot.replaceChildren(img);
  const side = resp.headers.get("X-Realjudge-Target") || "the verdict";
  const part = resp.headers.get("X-Realjudge-Explained") || "";
  caption.textContent = `${resp.headers.get("X-Realjudge-Method") || "heat map"}: warm areas hold the evidence for "${side}"` +
    (part ? `; explained: ${part}` : "");
}

function newCard(file) {
  const card = $("#card").content.firstElementChild.cloneNode(true);
  const img = $(".original", card);
  // Small images are shown as blocks of pixels; large ones are smoothly scaled down.
  img.addEventListener("load", () => img.classList.toggle("small", img.naturalWidth < img.clientWidth));
  img.addEventListener("error", () => { img.replaceWith(Object.assign(document.createElement("div"),
    { className: "no-preview", textContent: "no preview" })); });
  img.src = URL.createObjectURL(file);
  $(".name", card).textContent = file.name || "pasted image";
  return card;
}

function onDevice() { return $("#on-device").checked; }

const ON_DEVICE = "scored on this device; the image was not uploaded";

// The same card as the server path, from a record made in this browser; nothing is sent anywhere.
async function judgeOnDevice(file, card) {
  let record;
  try {
    record = await RealjudgeLocal.score(file, $("#model").value, state.routing, state.limits && state.limits.max_pixels);
  } catch (err) {
    record = { error: `could not score on this device: ${err.message}` };
  }
  card.classList.add("on-device");
  card.dataset.scoredOn = "device";
  const note = document.createElement("p");
  note.className = "on-device-note";
  note.textContent = record.error ? "not scored; the image was not uploaded" : ON_DEVICE;
  $(".verdict-row", card).after(note);
  if (!showRecord(card, record)) return;
  card.dataset.pFake = String(record.p_fake);
  card.dataset.verdict = record.verdict;
  card.dataset.model = record.model;
  for (const w of record.warnings || []) addDetail(card, "warning", w);
  const t = record.device_timings;
  addDetail(card, "time", `decode ${fmt(t.decode_ms, 1)} ms, model ${fmt(t.model_ms, 1)} ms (${t.views} views), on this device`);
  addDetail(card, "provenance", "not read: the file's metadata is read on the server, and this image stayed here");
  addDetail(card, "heat map", "none: explanations run on the server, and this image stayed here");
  $(".heat", card).hidden = true;
  card.classList.add("no-heat");
}

async function judge(file, card) {
  if (onDevice()) { await judgeOnDevice(file, card); return; }
  const resp = await post(`v1/detect?${query({})}`, file,
    (s) => { $(".verdict", card).textContent = `server busy, retrying in ${s} s`; });
  let record;
  if (resp.ok || resp.status === 422) {
    const body = await resp.json().catch(() => null);
    record = body && body.results ? body.results[0] : null;
    if (!record) record = { error: body && body.error ? body.error : `HTTP ${resp.status}` };
  } else {
    record = { error: await readError(resp) };
  }
  if (showRecord(card, record)) await showHeatmap(card, file);
}

async function judgeAll(files) {
  const images = Array.from(files).filter((f) => !f.type || f.type.startsWith("image/"));
  if (!images.length) { setStatus("Those were not images."); return; }
  const plural = images.length > 1 ? "s" : "";
  setStatus(`Scoring ${images.length} image${plural}...`);
  // The newest batch goes on top, in the order the files were given.
  const cards = images.map(newCard);
  $("#results").prepend(...cards);
  let next = 0;
  const lane = async () => {
    while (next < images.length) {
      const i = next++;
      try {
        await judge(images[i], cards[i]);
      } catch (err) {
        showRecord(cards[i], { error: `network error: ${err.message}` });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, images.length) }, lane));
  setStatus(`Done: ${images.length} image${plural}.`);
}

// Model cards are Markdown. A small renderer that builds DOM nodes (text only, never HTML from the
// card): headings, paragraphs, lists, tables, `code` and **bold**.
function inline(text) {
  const out = [];
  for (const part of text.split(/(`[^`]+`|\*\*[^*]+\*\*)/)) {
    if (!part) continue;
    if (part.startsWith("`") && part.endsWith("`") && part.length > 1) out.push(el("code", "", part.slice(1, -1)));
    else if (part.startsWith("**") && part.endsWith("**") && part.length > 3) out.push(el("strong", "", part.slice(2, -2)));
    else out.push(document.createTextNode(part));
  }
  return out;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function renderMarkdown(md) {
  const nodes = [];
  const lines = md.replace(/\r/g, "").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i++; continue; }
    const h = /^(#{1,6})\s+(.*)$/.exec(line);
    if (h) { const e = el(`h${Math.min(6, h[1].length + 2)}`); e.append(...inline(h[2])); nodes.push(e); i++; continue; }
    if (/^\s*[-*]\s+/.test(line)) {
      const ul = el("ul");
      while (i < lines.length && /^\s*[-*]\s+/.test(lines[i])) {
        const li = el("li"); li.append(...inline(lines[i].replace(/^\s*[-*]\s+/, ""))); ul.append(li); i++;
      }
      nodes.push(ul); continue;
    }
    if (line.trim().startsWith("|")) {
      const table = el("table");
      while (i < lines.length && lines[i].trim().startsWith("|")) {
        const cells = lines[i].trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim());
        if (!cells.every((c) => /^:?-+:?$/.test(c))) {
          const tr = el("tr");
          for (const c of cells) { const td = el(table.rows.length ? "td" : "th"); td.append(...inline(c)); tr.append(td); }
          table.append(tr);
        }
        i++;
      }
      nodes.push(table); continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() && !/^(#{1,6}\s|\s*[-*]\s|\s*\|)/.test(lines[i])) para.push(lines[i++]);
    const p = el("p"); p.append(...inline(para.join(" "))); nodes.push(p);
  }
  return nodes;
}

function describeModels(body) {
  state.limits = body.limits;
  state.routing = body.routing;
  const select = $("#model");
  const auto = document.createElement("option");
  auto.value = "";
  auto.textContent = body.routing.default ? `${body.routing.default} (default)` : "automatic (by image size)";
  select.append(auto);
  const cards = $("#cards");
  for (const m of body.models) {
    state.models[m.name] = m;
    if (m.name !== body.routing.default) {
      const opt = document.createElement("option");
      opt.value = m.name;
      opt.textContent = m.name;
      select.append(opt);
    }
    const card = document.createElement("article");
    card.className = "model-card";
    card.append(...renderMarkdown(m.card || `# ${m.name}\n\nno model card`));
    cards.append(card);
  }
  $("#routing").textContent = body.routing.rule;
  const l = body.limits;
  $("#limits").textContent = `Up to ${(l.max_upload_bytes / 1048576).toFixed(0)} MiB and ` +
    `${(l.max_pixels / 1e6).toFixed(0)} megapixels per image.`;
}

function wire() {
  const drop = $("#drop");
  const input = $("#files");
  $("#choose").addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  input.addEventListener("change", () => { judgeAll(input.files); input.value = ""; });
  const local = $("#on-device");
  local.addEventListener("change", () => {
    $("#drop").classList.toggle("on-device", local.checked);
    $("#privacy").textContent = local.checked
      ? "Scored in this browser: images are not uploaded. Only the model is downloaded (once)."
      : "Images are scored in memory and never stored.";
    if (local.checked) {
      setStatus("Loading the model for this device...");
      RealjudgeLocal.warm(Object.keys(state.models))
        .then(() => setStatus("Ready: images are scored on this device."))
        .catch((err) => setStatus(`Scoring on this device is unavailable: ${err.message}`));
    } else {
      setStatus("");
    }
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => { e.preventDefault(); judgeAll(e.dataTransfer.files); });
  document.addEventListener("paste", (e) => {
    const files = Array.from(e.clipboardData.items).filter((i) => i.kind === "file").map((i) => i.getAsFile());
    if (files.length) judgeAll(files);
  });
}

async function start() {
  wire();
  try {
    const resp = await fetch("v1/models");
    if (!resp.ok) throw new Error(await readError(resp));
    describeModels(await resp.json());
  } catch (err) {
    setStatus(`Could not reach the server: ${err.message}`);
  }
}

start();
