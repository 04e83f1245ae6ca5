// ocr-daemon's page: upload files, follow each document live (Server-Sent Events read with
// fetch, so that the bearer token travels in a header), read its text, reprocess or cancel.
"use strict";

const TOKEN_KEY = "ocr-daemon-token";
const rows = new Map();      // id -> {tr, doc}
const following = new Set(); // ids with an open event stream
const $ = (sel, el = document) => el.querySelector(sel);

function headers(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, Authorization: "Bearer " + token } : extra;
}

async function api(path, options = {}) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const res = await fetch(path, { ...options, headers: headers(options.headers) });
    if (res.status !== 401) return res;
    const token = window.prompt("This ocr-daemon needs its API token:");
    if (!token) return res;
    sessionStorage.setItem(TOKEN_KEY, token.trim());
  }
  return fetch(path, { ...options, headers: headers(options.headers) });
}

async function problem(res) {
  try { const body = await res.json(); return `${body.code}: ${body.message}`; }
  catch { return `HTTP ${res.status}`; }
}

function notice(text, bad = false) {
  const el = $("#notice");
  el.textContent = text;
  el.className = "notice" + (bad ? " bad" : "");
}

// --- uploads ------------------------------------------------------------------------------
async function upload(files) {
  for (const file of files) {
    const form = new FormData();
    form.append("file", file, file.name);
    const engine = $("#engine").value;
    if (engine) form.append("engine", engine);
    notice(`uploading ${file.name}…`);
    const res = await api("/v1/documents", { method: "POST", body: form });
    if (!res.ok) { notice(`${file.name}: ${await problem(res)}`, true); continue; }
    const body = await res.json();
    notice(`${file.name}: ${body.status}`);
    await refreshOne(body.id);
  }
}

function setupDrop() {
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    upload([...e.dataTransfer.files]);
  });
  $("#file").addEventListener("change", (e) => { upload([...e.target.files]); e.target.value = ""; });
}

// --- the list -----------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function duration(doc) {
  const start = Date.parse(doc.created_at);
  const end = doc.finished_at ? Date.parse(doc.finished_at) : Date.now();
  if (!start) return "";
  const s = Math.max(0, (end - start) / 1000);
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function render(doc) {
  let row = rows.get(doc.id);
  if (!row) {
    const tr = el("tr", { "data-id": doc.id });
    const body = $("#docs tbody");
    const newer = [...body.children].find((r) => r.dataset.id < doc.id);
    body.insertBefore(tr, newer || null);
    row = { tr, doc };
    rows.set(doc.id, row);
  }
  row.doc = doc;
  const tr = row.tr;
  tr.className = doc.state;
  tr.dataset.state = doc.state;
  tr.dataset.ended = doc.ended ? "1" : "0";
  const pct = doc.progress_percentage ?? 0;
  const items = (doc.chunks && doc.chunks.items) || [];
  const chunkBars = items.length > 1
    ? el("div", { class: "chunks" }, ...items.map((c) => el("span", {
        class: c.state, title: `pages ${c.pages[0]}–${c.pages[1]}: ${c.state}` })))
    : null;
  const err = doc.error
    ? el("div", { class: "error" }, `${doc.error.code}: ${doc.error.message}`,
        el("small", {}, doc.error.hint || ""))
    : null;
  const actions = el("td", { class: "actions" });
  if (doc.ended && doc.state === "completed") {
    actions.append(el("a", { href: doc.links.text, class: "text-link",
      onclick: (e) => { e.preventDefault(); show(doc, "text"); } }, "text"));
    actions.append(el("a", { href: doc.links.result, class: "result-link",
      onclick: (e) => { e.preventDefault(); show(doc, "result"); } }, "result"));
  }
  if (doc.ended) {
    actions.append(el("button", { type: "button", class: "reprocess",
      onclick: () => act(doc, "reprocess") }, "reprocess"));
  } else {
    actions.append(el("button", { type: "button", class: "cancel",
      onclick: () => act(doc, "cancel") }, "cancel"));
  }
  tr.replaceChildren(
    el("td", { class: "name" }, doc.name || doc.id, el("small", {}, doc.id), err),
    el("td", {}, el("span", { class: "state " + doc.state }, doc.state)),
    el("td", {},
      el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0",
        "aria-valuemax": "100", "aria-valuenow": String(pct) },
        el("div", { style: `width: ${pct}%` })),
      el("span", { class: "pct" }, `${pct} %`), chunkBars),
    el("td", { class: "engine" }, (doc.engine || "") +
      (doc.page_engines && doc.page_engines.length && doc.page_engines.join() !== doc.engine
        ? ` → ${doc.page_engines.join(", ")}` : "")),
    el("td", {}, doc.source && doc.source.pages ? String(doc.source.pages) : ""),
    el("td", {}, duration(doc)),
    actions);
  $("#empty").hidden = rows.size > 0;
  if (!doc.ended) follow(doc.id);
}

async function refreshOne(id) {
  const res = await api(`/v1/documents/${id}`);
  if (res.ok) render(await res.json());
}

async function refreshList() {
  const res = await api("/v1/documents?limit=50");
  if (!res.ok) { notice(await problem(res), true); return; }
  const body = await res.json();
  for (const item of body.items.reverse()) {
    const known = rows.get(item.id);
    if (!known || (!known.doc.ended && !following.has(item.id))) await refreshOne(item.id);
  }
}

// --- live events ----------------------------------------------------------------------------
async function follow(id) {
  if (following.has(id)) return;
  following.add(id);
  try {
    const res = await api(`/v1/documents/${id}/events`, { headers: { Accept: "text/event-stream" } });
    if (!res.ok || !res.body) return;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).trimStart()).join("\n");
        if (data) {
          const doc = JSON.parse(data);
          following.add(id);
          render(doc);
        }
      }
    }
  } catch (e) {
    notice(`lost the events of ${id}: ${e}`, true);
  } finally {
    following.delete(id);
  }
  const row = rows.get(id);
  if (row && !row.doc.ended) setTimeout(() => follow(id), 1000);
}

// --- actions and the viewer ----------------------------------------------------------------
async function act(doc, what) {
  const res = await api(`/v1/documents/${doc.id}/${what}`, { method: "POST" });
  if (!res.ok) { notice(`${doc.name}: ${await problem(res)}`, true); return; }
  const body = await res.json();
  notice(`${doc.name}: ${what === "cancel" ? body.status : "queued again as " + body.id}`);
  await refreshOne(body.id || doc.id);
  if (body.id && body.id !== doc.id) await refreshOne(doc.id).catch(() => {});
}

async function show(doc, kind) {
  const res = await api(`/v1/documents/${doc.id}/${kind}`);
  const text = res.ok ? await res.text() : await problem(res);
  $("#viewer-title").textContent = `${doc.name} — ${kind}`;
  $("#viewer-text").textContent = kind === "result" && res.ok
    ? JSON.stringify(JSON.parse(text), null, 2) : text.replaceAll("\f", "\n\n— page break —\n\n");
  $("#viewer").hidden = false;
  $("#viewer").scrollIntoView({ behavior: "smooth" });
}

async function health() {
  const el = $("#health");
  try {
    const res = await fetch("/v1/health");
    const body = await res.json();
    el.className = "health " + (body.status === "ok" ? "ok" : body.status === "degraded" ? "degraded" : "down");
    const workers = body.workers ? body.workers.length : 0;
    el.textContent = `${body.status} · ${workers} worker${workers === 1 ? "" : "s"}`;
    const select = $("#engine");
    if (select.options.length === 1) {
      for (const name of body.upload_engines || []) select.append(new Option(name, name));
    }
  } catch {
    el.className = "health down";
    el.textContent = "unreachable";
  }
}

$("#viewer-close").addEventListener("click", () => { $("#viewer").hidden = true; });
setupDrop();
health();
refreshList();
setInterval(health, 10000);
setInterval(refreshList, 5000);
setInterval(() => { for (const { tr, doc } of rows.values()) if (!doc.ended) tr.children[5].textContent = duration(doc); }, 1000);
