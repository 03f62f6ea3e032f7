// The ragtune page: ask (streamed, side by side), see citations and passages, upload and watch ingestion.
// Plain browser JavaScript, no build step, no third-party code. Text from the server is inserted with
// textContent only, never as HTML.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const KEY = "ragtune_key";

function headers(extra = {}) {
  const key = localStorage.getItem(KEY);
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

// fetch + JSON; an OpenAI-style error body becomes an Error with its message.
async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.error && body.error.message) || `${response.status} ${response.statusText}`);
  return body;
}

function show(el, message) { el.textContent = message || ""; el.hidden = !message; }

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

// ---------- start-up ----------
async function start() {
  const keyInput = $("#api-key");
  keyInput.value = localStorage.getItem(KEY) || "";
  keyInput.addEventListener("change", () => {
    localStorage.setItem(KEY, keyInput.value.trim());
    document.cookie = `ragtune_key=${encodeURIComponent(keyInput.value.trim())}; path=/report; SameSite=Strict`;
    load();
  });
  $("#ask-form").addEventListener("submit", (e) => { e.preventDefault(); ask(); });
  $("#question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); ask(); }
  });
  $("#upload-form").addEventListener("submit", (e) => { e.preventDefault(); upload(); });
  $("#search-form").addEventListener("submit", (e) => { e.preventDefault(); search(); });
  $("#file-input").addEventListener("change", () => {
    const n = $("#file-input").files.length;
    $("#drop-text").textContent = n ? `${n} file${n > 1 ? "s" : ""} chosen` : "Choose or drop files";
  });
  await load();
}

async function load() {
  try {
    const health = await (await fetch("/healthz")).json();
    $("#key-box").hidden = !health.auth_required;
    const info = await api("/v1/info");
    $("#status").textContent = (info.contestant ? `answering as the bake-off's ${info.contestant}`
      : `${info.configurations.length} configuration(s)`) + (info.kb ? " · knowledge base" : "");
    $("#status").className = "pill ok";
    renderConfigs(info.configurations);
    $("#no-kb").hidden = info.kb;
    $("#kb-tools").hidden = !info.kb;
    $("#upload-hint").textContent = `${info.upload.types.join(" ")} · up to ${info.upload.max_mb} MB each`;
    $("#file-input").accept = info.upload.types.join(",");
    $("#report-link").hidden = !info.report;
    if (info.kb) { refreshSources(); refreshJobs(); }
  } catch (err) {
    $("#status").textContent = err.message;
    $("#status").className = "pill bad";
  }
}

const usesRag = {};  // configuration id -> whether it answers from the knowledge base

function renderConfigs(configs) {
  const box = $("#configs");
  configs.forEach((c) => { usesRag[c.id] = c.rag; });
  box.querySelectorAll("label").forEach((l) => l.remove());
  const firstRag = configs.find((c) => c.rag) || configs[0];
  for (const c of configs) {
    const input = el("input", { type: "checkbox", value: c.id, checked: c === firstRag });
    box.append(el("label", { title: c.description }, input, ` ${c.id}`));
  }
}

// ---------- asking ----------
async function ask() {
  const question = $("#question").value.trim();
  const chosen = [...document.querySelectorAll("#configs input:checked")].map((i) => i.value);
  show($("#ask-error"), !question ? "Type a question first." : !chosen.length ? "Choose at least one configuration." : "");
  if (!question || !chosen.length) return;
  const answers = $("#answers");
  answers.replaceChildren();
  answers.style.setProperty("--columns", Math.min(chosen.length, 3));
  $("#ask").disabled = true;
  // Every configuration streams at once; the server queues them per model.
  await Promise.all(chosen.map((config) => streamAnswer(config, question, newCard(config))));
  $("#ask").disabled = false;
}

function newCard(config) {
  const card = $("#answer-template").content.firstElementChild.cloneNode(true);
  card.dataset.config = config;
  $(".name", card).textContent = config;
  $(".badge", card).textContent = (usesRag[config] ?? config.includes("rag")) ? "RAG" : "model only";
  $(".state", card).textContent = "waiting…";
  $("#answers").append(card);
  return card;
}

async function streamAnswer(config, question, card) {
  const state = $(".state", card);
  let text = "";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ model: config, stream: true, messages: [{ role: "user", content: question }] }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || `${response.status}`);
    }
    state.textContent = "queued for the model…";  // the server runs one answer per model at a time
    for await (const chunk of sseChunks(response)) {
      if (chunk.error) throw new Error(chunk.error.message);
      const choice = chunk.choices && chunk.choices[0];
      if (!choice) continue;
      if (choice.delta && choice.delta.content) {
        if (!text) state.textContent = "answering…";
        text += choice.delta.content;
        renderText(card, text, []);
      }
      if (choice.finish_reason) {
        renderText(card, text, choice.delta.citations || []);
        renderSources(card, choice.delta.citations || [], choice.delta.passages || [], choice.delta.abstained);
      }
    }
    state.textContent = "done";
    card.classList.add("done");
  } catch (err) {
    state.textContent = "";
    card.append(el("p", { className: "error", textContent: err.message }));
  }
}

// Parse a text/event-stream body into the JSON objects of its `data:` lines, up to `data: [DONE]`.
async function* sseChunks(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

// The answer text, with each [n] that maps to a passage turned into a link to it.
function renderText(card, text, citations) {
  const box = $(".text", card);
  box.replaceChildren();
  const cited = new Set(citations.map((c) => c.n));
  let last = 0;
  for (const m of text.matchAll(/\[(\d+)\]/g)) {
    box.append(text.slice(last, m.index));
    const n = Number(m[1]);
    if (cited.has(n)) {
      const link = el("a", { href: `#`, className: "cite", textContent: `[${n}]`, title: "show the passage" });
      link.dataset.n = n;
      link.addEventListener("click", (e) => { e.preventDefault(); focusPassage(card, n); });
      box.append(link);
    } else {
      box.append(m[0]);
    }
    last = m.index + m[0].length;
  }
  box.append(text.slice(last));
}

function renderSources(card, citations, passages, abstained) {
  if (abstained) card.classList.add("abstained");
  const list = $(".citations", card);
  list.replaceChildren(...citations.map((c) => {
    const item = el("li", { value: c.n }, el("a", { href: "#", className: "source", textContent: c.source }));
    item.firstChild.addEventListener("click", (e) => { e.preventDefault(); focusPassage(card, c.n); });
    return item;
  }));
  $(".cited", card).hidden = !citations.length;
  $(".retrieved ol", card).replaceChildren(...passages.map((p) => passageItem(p)));
  $(".retrieved", card).hidden = !passages.length;
}

function passageItem(p) {
  const item = el("li", { value: p.n || 0 },
    el("div", { className: "meta" }, el("strong", { textContent: p.source }),
       el("span", { className: "muted", textContent: ` score ${Number(p.score).toFixed(3)}` })),
    el("div", { className: "passage", textContent: p.text }));
  if (p.n) item.dataset.n = p.n;
  return item;
}

function focusPassage(card, n) {
  const details = $(".retrieved", card);
  details.open = true;
  card.querySelectorAll(".retrieved li.focus").forEach((li) => li.classList.remove("focus"));
  const item = $(`.retrieved li[data-n="${n}"]`, card);
  if (item) { item.classList.add("focus"); item.scrollIntoView({ behavior: "smooth", block: "nearest" }); }
}

// ---------- knowledge base ----------
async function upload() {
  const files = $("#file-input").files;
  show($("#upload-error"), files.length ? "" : "Choose a file first.");
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("file", f, f.name);
  try {
    await api("/v1/kb/documents", { method: "POST", body: form });
    $("#file-input").value = "";
    $("#drop-text").textContent = "Choose or drop files";
    refreshJobs();
  } catch (err) {
    show($("#upload-error"), err.message);
  }
}

let polling = null;
let finishedSeen = null;  // ids of the jobs finished at the last poll: the sources list is refreshed when it changes
async function refreshJobs() {
  const jobs = (await api("/v1/kb/jobs").catch(() => ({ data: [] }))).data;
  const list = $("#jobs");
  if (jobs.length) {
    list.replaceChildren(...jobs.slice(0, 12).map((j) => {
      // Running: an indeterminate bar (the knowledge base reports no finer progress) and the step it is on.
      const bar = j.status === "running" ? el("progress") : el("progress", { max: 1, value: j.progress });
      const seconds = j.started ? ((j.finished || Date.now() / 1000) - j.started).toFixed(1) + " s" : "";
      const note = j.status === "failed" ? j.message : j.status === "running" ? `${j.message} · ${seconds}` : seconds;
      const item = el("li", { className: j.status }, el("span", { textContent: j.filename }), " ",
        el("span", { className: "status", textContent: j.status }), bar,
        el("div", { className: "muted small", textContent: note }));
      item.dataset.status = j.status;
      return item;
    }));
  }
  const busy = jobs.some((j) => j.status === "queued" || j.status === "running");
  const finished = jobs.filter((j) => j.status === "done" || j.status === "failed").map((j) => j.id).join();
  clearTimeout(polling);
  if (busy) polling = setTimeout(refreshJobs, 1000);
  if (finished !== finishedSeen) { finishedSeen = finished; refreshSources(); }
}

async function refreshSources() {
  try {
    const sources = (await api("/v1/kb/sources")).data;
    $("#source-count").textContent = `(${sources.length})`;
    $("#sources").replaceChildren(...sources.map((s) => {
      const remove = el("button", { className: "link", textContent: "remove", title: `remove ${s.source}` });
      remove.addEventListener("click", async () => {
        if (!confirm(`Remove ${s.source} from the knowledge base?`)) return;
        await api(`/v1/kb/sources/${s.source.split("/").map(encodeURIComponent).join("/")}`, { method: "DELETE" })
          .catch((err) => show($("#upload-error"), err.message));
        refreshSources();
      });
      return el("li", {}, el("span", { className: "source", textContent: s.source }), " ", remove);
    }));
  } catch (err) {
    show($("#upload-error"), err.message);
  }
}

async function search() {
  const query = $("#search-query").value.trim();
  if (!query) return;
  try {
    const hits = (await api("/v1/kb/search", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ query, k: 5 }),
    })).data;
    $("#search-results").replaceChildren(...hits.map((h, i) => passageItem({ ...h, n: i + 1 })));
  } catch (err) {
    show($("#upload-error"), err.message);
  }
}

// Drag and drop onto the file picker.
document.addEventListener("DOMContentLoaded", () => {
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    $("#file-input").files = e.dataTransfer.files;
    $("#file-input").dispatchEvent(new Event("change"));
  });
  start();
});
