// filesvc's page: sign in, list files live (/api/v1/events), upload with progress bars fed
// by each upload's own event stream (/api/v1/transfers/{id}/events), not by the browser's
// upload counter: the bars show what the server has really received.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "filesvc.token";
const $ = (selector) => document.querySelector(selector);

// What the page saw, per upload: read by the browser test, handy in the console too.
window.filesvcProgress = {};
// How many uploads run now, and the most that ever ran at once (the queue's bound).
window.filesvcUploads = { running: 0, mostRunning: 0 };

let token = sessionStorage.getItem(TOKEN_KEY);
let fileEvents = null;

function withToken(url) {
  return `${url}${url.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(token)}`;
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${token}`, ...(options.headers || {}) };
  const response = await fetch(API + path, { ...options, headers });
  if (response.status === 401) {
    signOut();
    throw new Error("signed out");
  }
  return response;
}

function formatBytes(n) {
  if (n == null) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function formatSeconds(s) {
  if (s == null || !isFinite(s)) return "";
  if (s < 60) return `${Math.ceil(s)} s left`;
  return `${Math.floor(s / 60)} min ${Math.ceil(s % 60)} s left`;
}

// --- signing in -------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const error = $("#sign-in-error");
  error.hidden = true;
  const response = await fetch(`${API}/auth/token`, {
    method: "POST",
    body: new URLSearchParams(form),
  });
  if (!response.ok) {
    error.textContent = "Wrong user name or password.";
    error.hidden = false;
    return;
  }
  token = (await response.json()).access_token;
  sessionStorage.setItem(TOKEN_KEY, token);
  await start();
}

function signOut() {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  if (fileEvents) fileEvents.close();
  $("#app").hidden = true;
  $("#who").hidden = true;
  $("#sign-in").hidden = false;
}

async function start() {
  const me = await api("/users/me");
  if (!me.ok) return signOut();
  $("#username").textContent = (await me.json()).username;
  $("#sign-in").hidden = true;
  $("#who").hidden = false;
  $("#app").hidden = false;
  await loadFiles();
  watchFiles();
}

// --- the file list, kept live -----------------------------------------------------------

async function loadFiles() {
  const response = await api("/files?limit=200");
  const page = await response.json();
  $("#files").replaceChildren();
  for (const file of page.items.reverse()) showFile(file, false);
  updateEmpty();
}

function updateEmpty() {
  $("#empty").hidden = $("#files").children.length > 0;
}

function showFile(file, highlight) {
  const existing = document.querySelector(`.file[data-id="${CSS.escape(file.id)}"]`);
  const item = existing || $("#file-template").content.firstElementChild.cloneNode(true);
  item.dataset.id = file.id;
  item.querySelector(".name").textContent = file.name;
  item.querySelector(".details").textContent =
    `${formatBytes(file.size)} · ${file.visibility} · ${new Date(file.created_at).toLocaleString()}`;
  const download = item.querySelector(".download");
  download.href = withToken(file.content_url);
  download.setAttribute("download", file.name);
  item.querySelector(".delete").onclick = () => deleteFile(file);
  if (!existing) $("#files").prepend(item);
  if (highlight) item.classList.add("new");
  updateEmpty();
}

function removeFile(id) {
  const item = document.querySelector(`.file[data-id="${CSS.escape(id)}"]`);
  if (item) item.remove();
  updateEmpty();
}

async function deleteFile(file) {
  if (!confirm(`Delete ${file.name}?`)) return;
  const response = await api(`/files/${file.id}`, { method: "DELETE" });
  if (response.ok) removeFile(file.id);
}

function watchFiles() {
  if (fileEvents) fileEvents.close();
  // EventSource reconnects by itself and sends Last-Event-ID: missed events are replayed.
  fileEvents = new EventSource(withToken(`${API}/events`));
  fileEvents.onopen = () => $("#live").classList.add("on");
  fileEvents.onerror = () => $("#live").classList.remove("on");
  fileEvents.addEventListener("file.created", (e) => showFile(JSON.parse(e.data), true));
  fileEvents.addEventListener("file.updated", (e) => showFile(JSON.parse(e.data), false));
  fileEvents.addEventListener("file.deleted", (e) => removeFile(JSON.parse(e.data).id));
}

// --- uploads ----------------------------------------------------------------------------

function uploadRow(file) {
  const row = $("#upload-template").content.firstElementChild.cloneNode(true);
  row.querySelector(".name").textContent = file.name;
  $("#uploads").prepend(row);
  return {
    row,
    state: (text) => { row.querySelector(".state").textContent = text; },
    show(data) {
      const bar = row.querySelector("progress");
      if (data.percent != null) bar.value = data.percent;
      row.querySelector(".numbers").textContent =
        `${formatBytes(data.bytes)} of ${formatBytes(data.total)}` +
        (data.percent != null ? ` · ${data.percent.toFixed(1)}%` : "");
      row.querySelector(".speed").textContent = data.rate
        ? `${formatBytes(data.rate)}/s · ${formatSeconds(data.eta)}` : "";
    },
  };
}

function opened(source, timeoutMs) {
  return new Promise((resolve) => {
    source.addEventListener("open", resolve, { once: true });
    setTimeout(resolve, timeoutMs);
  });
}

// Runs one queued upload: reserve a transfer, open its event stream, send the bytes.
async function upload(file, view, seen) {
  seen.state = "pending";
  view.state("starting");
  const reserved = await (await api("/transfers", { method: "POST" })).json();
  const events = new EventSource(withToken(reserved.events_url));
  const finished = new Promise((resolve) => {
    events.addEventListener("progress", (e) => {
      const data = JSON.parse(e.data);
      if (data.state !== "receiving") return;
      seen.progress += 1;
      seen.percents.push(data.percent);
      view.state("uploading");
      view.show(data);
    });
    events.addEventListener("complete", (e) => {
      events.close();
      markComplete(view, seen, JSON.parse(e.data).file);
      resolve();
    });
    events.addEventListener("failed", (e) => {
      events.close();
      markFailed(view, seen, JSON.parse(e.data).detail);
      resolve();
    });
  });
  await opened(events, 2000);

  const body = new FormData();
  body.append("visibility", $("#visibility").value);
  body.append("file", file, file.name);
  const request = new XMLHttpRequest();
  request.open("POST", `${API}/files`);
  request.setRequestHeader("Authorization", `Bearer ${token}`);
  request.setRequestHeader("X-Transfer-Id", reserved.id);
  const sent = new Promise((resolve) => {
    request.onload = () => resolve(request.status);
    request.onerror = () => resolve(0);
  });
  request.send(body);
  const status = await sent;
  if (await settlesWithin(finished, FINAL_EVENT_GRACE_MS)) return;
  // The stream's final event never came (lost by the event broker, or the stream broke):
  // say what the request said, and close the stream so that it frees its connection.
  events.close();
  if (status >= 200 && status < 300) {
    markComplete(view, seen, JSON.parse(request.responseText));
  } else {
    markFailed(view, seen, status ? `HTTP ${status}` : "connection lost");
  }
}

function markComplete(view, seen, file) {
  seen.state = "complete";
  view.row.classList.add("complete");
  view.row.querySelector("progress").value = 100;
  view.state("done");
  showFile(file, true);
}

function markFailed(view, seen, detail) {
  seen.state = "failed";
  view.row.classList.add("failed");
  view.state(`failed: ${detail}`);
}

function settlesWithin(promise, timeoutMs) {
  return Promise.race([
    promise.then(() => true),
    new Promise((resolve) => setTimeout(() => resolve(false), timeoutMs)),
  ]);
}

// Browsers open at most 6 HTTP/1.1 connections per host. A running upload holds two (its
// event stream and its request) and /events holds one, so uploads run at most
// MAX_RUNNING_UPLOADS at a time; the others wait in the queue, their bars saying "queued".
// Without the queue, 5 event streams would take every connection and the uploads they wait
// for could never be sent.
const MAX_RUNNING_UPLOADS = 2;
// How long a finished request waits for its stream's final event before giving up on it.
const FINAL_EVENT_GRACE_MS = 10_000;
const queuedUploads = [];
let runningUploads = 0;

function uploadAll(files) {
  for (const file of files) {
    const view = uploadRow(file);
    view.state("queued");
    const seen = { progress: 0, percents: [], state: "queued" };
    window.filesvcProgress[file.name] = seen;
    queuedUploads.push({ file, view, seen });
  }
  startQueuedUploads();
}

function startQueuedUploads() {
  while (runningUploads < MAX_RUNNING_UPLOADS && queuedUploads.length > 0) {
    const { file, view, seen } = queuedUploads.shift();
    runningUploads += 1;
    window.filesvcUploads.running = runningUploads;
    window.filesvcUploads.mostRunning = Math.max(window.filesvcUploads.mostRunning, runningUploads);
    upload(file, view, seen)
      .catch((error) => markFailed(view, seen, error.message))
      .finally(() => {
        runningUploads -= 1;
        window.filesvcUploads.running = runningUploads;
        startQueuedUploads();
      });
  }
}

// --- wiring -----------------------------------------------------------------------------

function wire() {
  $("#sign-in-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", signOut);
  const input = $("#file-input");
  input.addEventListener("change", () => { uploadAll([...input.files]); input.value = ""; });
  const drop = $("#drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => { e.preventDefault(); uploadAll([...e.dataTransfer.files]); });
  if (token) start().catch(signOut);
}

wire();
