// gusher's admin console: plain DOM, no build step, no dependency.
// Every value from the server is put in the page as text (textContent), never as HTML:
// channel names and user ids come from clients.
"use strict";

const POLL_MS = 2000;
const SAMPLES = 90; // three minutes of rates at one poll every 2 s
const APPS_EVERY = 5; // polls between two readings of the app list
const state = { csrf: "", app: "", samples: [], last: null, timer: 0, polls: 0 };

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function bytes(n) {
  if (!n) return "0";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function number(n) { return Number(n || 0).toLocaleString("en-US"); }

async function api(path, options = {}) {
  const init = { credentials: "same-origin", headers: {}, ...options };
  if (init.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(init.body);
  }
  if (init.method && init.method !== "GET") init.headers["X-Gusher-CSRF"] = state.csrf || "-";
  const response = await fetch(path, init);
  let body = {};
  try { body = await response.json(); } catch (_) { /* not JSON: an error page of a proxy */ }
  if (response.status === 401 && path !== "/ui/api/session") { showSignIn(); }
  if (!response.ok) {
    const error = new Error(body.error || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function showSignIn(reason) {
  clearInterval(state.timer);
  $("console").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = reason || "";
  $("token").focus();
}

function showConsole(mode) {
  $("sign-in").hidden = true;
  $("console").hidden = false;
  $("sign-out").hidden = mode !== "token";
  $("mode").textContent = mode === "token" ? "signed in" : "loopback access (no admin token set)";
  refresh();
  refreshApps();
  clearInterval(state.timer);
  state.timer = setInterval(refresh, POLL_MS);
}

async function start() {
  try {
    const session = await api("/ui/api/session");
    state.csrf = session.csrf;
    if (session.signed_in) showConsole(session.mode); else showSignIn();
  } catch (error) {
    document.body.replaceChildren(el("p", `The console is not available: ${error.message}`, "error"));
  }
}

async function signIn(event) {
  event.preventDefault();
  try {
    const answer = await api("/ui/api/session", { method: "POST", body: { token: $("token").value } });
    state.csrf = answer.csrf;
    $("token").value = "";
    showConsole("token");
  } catch (error) {
    $("sign-in-error").textContent = error.message;
  }
}

async function signOut() {
  try { await api("/ui/api/session", { method: "DELETE" }); } catch (_) { /* signed out either way */ }
  state.csrf = "";
  showSignIn("Signed out.");
}

function problem(message) {
  $("problem").hidden = !message;
  $("problem").textContent = message || "";
}

async function refresh() {
  try {
    const cluster = await api("/ui/api/cluster");
    problem("");
    renderCluster(cluster);
    state.polls += 1;
    if (state.polls % APPS_EVERY === 0) await refreshApps();
    if (state.app) await refreshApp();
  } catch (error) {
    if (error.status !== 401) problem(`Could not read the cluster: ${error.message}`);
  }
}

function renderCluster(cluster) {
  const totals = cluster.totals;
  $("total-slaves").textContent = number(cluster.slaves.length);
  $("total-workers").textContent = number(cluster.workers);
  $("total-connections").textContent = number(totals.connections);
  $("total-subscriptions").textContent = number(totals.subscriptions);
  const now = cluster.time;
  if (state.last && now > state.last.time) {
    const seconds = now - state.last.time;
    const rate = (name) => Math.max(0, (totals[name] - state.last.totals[name]) / seconds);
    const sample = { deliveries: rate("deliveries"), publications: rate("publications") };
    state.samples.push(sample);
    if (state.samples.length > SAMPLES) state.samples.shift();
    $("rate-deliveries").textContent = number(Math.round(sample.deliveries));
    $("rate-publications").textContent = number(Math.round(sample.publications));
    drawChart();
  }
  state.last = { time: now, totals };
  renderServers($("slaves"), cluster.slaves, (worker, server) => [
    worker.pid, number(worker.connections), number(worker.subscriptions), bytes(worker["usage-memory"]),
    number(worker.goroutines), number(worker.deliveries), server.version,
  ], "no slave has reported: start one with gunicorn -c gunicorn.conf.py wsgi_slave:app");
  renderServers($("masters"), cluster.masters, (worker, server) => [
    worker.pid, number(worker.pushes), number(worker.pushes_refused), number(worker.publications),
    bytes(worker["usage-memory"]), server.version,
  ], "no master has reported yet");
}

function renderServers(table, servers, cells, emptyText) {
  const body = table.tBodies[0];
  const rows = [];
  for (const server of servers) {
    server.workers.forEach((worker, index) => {
      const row = el("tr");
      row.append(el("td", index === 0 ? server.id : ""));
      for (const value of cells(worker, server)) row.append(el("td", value));
      rows.push(row);
    });
  }
  if (!rows.length) {
    const row = el("tr");
    const cell = el("td", emptyText, "empty");
    cell.colSpan = table.tHead.rows[0].cells.length;
    row.append(cell);
    rows.push(row);
  }
  body.replaceChildren(...rows);
}

function drawChart() {
  const svg = $("chart");
  const width = 600, height = 140, pad = 6;
  const top = Math.max(1, ...state.samples.map((s) => Math.max(s.deliveries, s.publications)));
  const line = (name) => {
    const count = state.samples.length;
    const points = state.samples.map((s, i) => {
      const x = width - ((count - 1 - i) / (SAMPLES - 1)) * width; // the newest at the right edge
      const y = height - pad - (s[name] / top) * (height - 2 * pad);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const polyline = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    polyline.setAttribute("class", name);
    polyline.setAttribute("points", points.join(" "));
    return polyline;
  };
  svg.replaceChildren(line("deliveries"), line("publications"));
  $("chart-max").textContent = `(top of the chart: ${number(Math.round(top))}/s)`;
}

async function refreshApps() {
  try {
    const { apps } = await api("/ui/api/apps");
    renderApps(apps);
  } catch (error) {
    if (error.status !== 401) problem(`Could not list the apps: ${error.message}`);
  }
}

function badge(text, good) { return el("span", text, `badge ${good ? "good" : "warn"}`); }

function renderApps(apps) {
  const rows = apps.map((app) => {
    const row = el("tr");
    row.dataset.app = app.key;
    if (app.key === state.app) row.className = "selected";
    const name = el("td");
    name.append(el("code", app.key));
    const pushes = el("td");
    pushes.append(badge(app.signed_pushes ? "signed" : "open: anyone may push", app.signed_pushes));
    const clients = el("td");
    clients.append(badge(app.jwt ? "JWT" : app.webhook ? "webhook" : "no auth", app.jwt || app.webhook));
    const origins = el("td", app.origins.length ? app.origins.join(", ") : "any");
    const action = el("td");
    const view = el("button", "View", "link");
    view.type = "button";
    view.addEventListener("click", () => selectApp(app.key));
    action.append(view);
    row.append(name, pushes, clients, origins, action);
    return row;
  });
  if (!rows.length) {
    const row = el("tr");
    const cell = el("td", "no apps yet: gusher apps add myapp --webhook https://…", "empty");
    cell.colSpan = 5;
    row.append(cell);
    rows.push(row);
  }
  $("apps").tBodies[0].replaceChildren(...rows);
  const select = $("push-app");
  const chosen = select.value || state.app;
  select.replaceChildren(...apps.map((app) => el("option", app.key)));
  if (chosen) select.value = chosen;
}

async function selectApp(key) {
  state.app = key;
  $("push-app").value = key;
  for (const row of $("apps").tBodies[0].rows) row.className = row.dataset.app === key ? "selected" : "";
  $("app-panel").hidden = false;
  $("app-name").textContent = key;
  await refreshApp();
}

async function refreshApp() {
  const key = state.app;
  try {
    const detail = await api(`/ui/api/apps/${encodeURIComponent(key)}`);
    if (key !== state.app) return;
    fillTable($("channels"), detail.channels.map((c) => [c.name, number(c.subscriptions), number(c.users)]),
      "no channel has a subscriber");
    fillTable($("users"), detail.users.map((u) => [u.id, number(u.connections)]), "nobody is online");
  } catch (error) {
    if (error.status !== 401) problem(`Could not read app ${key}: ${error.message}`);
  }
}

function fillTable(table, rows, emptyText) {
  const body = table.tBodies[0];
  if (!rows.length) {
    const cell = el("td", emptyText, "empty");
    cell.colSpan = table.tHead.rows[0].cells.length;
    const row = el("tr");
    row.append(cell);
    body.replaceChildren(row);
    return;
  }
  body.replaceChildren(...rows.map((cells) => {
    const row = el("tr");
    for (const value of cells) row.append(el("td", value));
    return row;
  }));
}

async function push(event) {
  event.preventDefault();
  const text = $("push-data").value;
  let data = text;
  try { data = JSON.parse(text); } catch (_) { /* plain text is sent as a string */ }
  const result = $("push-result");
  try {
    const answer = await api("/ui/api/push", {
      method: "POST",
      body: { app_key: $("push-app").value, channel: $("push-channel").value, event: $("push-event").value, data },
    });
    result.className = "ok";
    result.textContent = `Pushed ${answer.event} to ${answer.app_key} / ${answer.channel}.`;
  } catch (error) {
    result.className = "error";
    result.textContent = `Refused: ${error.message}`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("push-form").addEventListener("submit", push);
  start();
});
