// filesvc's page: sign in, list files live (/api/v1/events), upload with progress bars fed
// by each upload's own event stream (/api/v1/transfers/{id}/events), not by the browser's
// upload counter: the bars show what the server has really received.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "filesvc.token";
const $ = (selector) => document.querySelector(selector);

// What the page saw, per upload: read by the browser test, handy in the console too.
window.filesvcProgress = {};

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

async function upload(file) {
  const view = uploadRow(file);
  const seen = (window.filesvcProgress[file.name] = { progress: 0, percents: [], state: "pending" });
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
      const data = JSON.parse(e.data);
      events.close();
      seen.state = "complete";
      view.row.classList.add("complete");
      view.row.querySelector("progress").value = 100;
      view.state("done");
      showFile(data.file, true);
      resolve();
    });
    events.addEventListener("failed", (e) => {
      const data = JSON.parse(e.data);
      events.close();
      seen.state = "failed";
      view.row.classList.add("failed");
      view.state(`failed: ${data.detail}`);
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
  request.onerror = () => { view.state("connection lost"); };
  request.send(body);
  await finished;
}

function uploadAll(files) {
  for (const file of files) upload(file);
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
