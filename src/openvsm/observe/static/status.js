// The live status page: one EventSource on /status/events, no reload, no build step.
"use strict";
let lastUpdate = 0;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function duration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
  const m = Math.floor(s % 3600 / 60), r = s % 60;
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + r + "s";
}

function renderNode(n, now) {
  const box = el("div", undefined, "node " + n.state);
  box.dataset.role = n.role;
  box.dataset.state = n.state;
  box.appendChild(el("h3", n.name + " (" + n.role + ")"));
  const dl = el("dl");
  const add = (k, v, cls) => { dl.appendChild(el("dt", k)); dl.appendChild(el("dd", v, cls)); };
  add("state", n.state, "state");
  if (n.state === "unreachable" || n.state === "unknown") {
    add("reason", n.error, "err");
  } else {
    add("epoch", String(n.epoch));
    add("uptime", duration(n.uptime_s));
    add("in state for", duration(Math.max(0, now - n.state_since)));
    add("sync", n.sync_state + (n.mode_oper ? " (" + n.mode_oper + ")" : ""));
    add("peer seen as", n.peer_state || "-");
    add("degraded", n.degraded ? "yes" : "no");
    if (n.shared_address_held !== null) add("shared address", n.shared_address_held ? "held" : "-");
  }
  box.appendChild(dl);
  return box;
}

function drawGaps(nodes) {
  const c = document.getElementById("gaps"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const up = nodes.find(n => n.loss_interval_s > 0);
  if (!up) return;
  const limit = up.loss_interval_s, top = limit * 1.1, left = 92, right = c.width - 150;
  const now = Date.now() / 1000;
  let oldest = now;
  for (const n of nodes) for (const s of Object.values(n.gaps || {})) if (s.length) oldest = Math.min(oldest, s[0][0]);
  const span = Math.min(60, Math.max(10, now - oldest));
  const y = v => c.height - 14 - (Math.min(v, top) / top) * (c.height - 24);
  const x = t => left + (1 - (now - t) / span) * (right - left);
  g.font = "11px sans-serif";
  const hline = (v, color, text) => {
    g.strokeStyle = color; g.setLineDash([6, 4]); g.beginPath();
    g.moveTo(left, y(v)); g.lineTo(right, y(v)); g.stroke(); g.setLineDash([]);
    g.fillStyle = "#52606d"; g.fillText(text, 2, y(v) + 4);
  };
  hline(limit, "#e03131", "loss " + limit + " s");
  hline(limit / 2, "#f08c00", "degraded " + limit / 2 + " s");
  g.fillStyle = "#52606d"; g.fillText("0 s", 2, y(0) + 4);
  g.fillText("last " + Math.round(span) + " s", right - 50, c.height - 2);
  const colors = { control: "#1c7ed6", mgmt: "#2f9e44" };
  let row = 0;
  nodes.forEach((n, i) => {
    g.setLineDash(i ? [3, 2] : []);
    for (const [iface, samples] of Object.entries(n.gaps || {})) {
      g.strokeStyle = colors[iface] || "#555"; g.beginPath();
      let first = true;
      for (const [t, gap] of samples) {
        if (now - t > span) continue;
        if (first) { g.moveTo(x(t), y(gap)); first = false; } else g.lineTo(x(t), y(gap));
      }
      g.stroke();
      g.beginPath(); g.moveTo(right + 10, 20 + row * 16); g.lineTo(right + 30, 20 + row * 16); g.stroke();
      g.fillStyle = "#1d2733"; g.fillText(n.name + " " + iface, right + 34, 24 + row * 16);
      row++;
    }
  });
  g.setLineDash([]);
}

function fillTable(id, rows, cols) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows.map(r => {
    const tr = el("tr");
    for (const k of cols) tr.appendChild(el("td", String(r[k] ?? "")));
    return tr;
  }));
}

function render(view) {
  lastUpdate = Date.now();
  const banner = document.getElementById("banner");
  const actives = view.nodes.filter(n => n.state === "active").map(n => n.name);
  banner.className = "";
  banner.textContent = "served by " + view.served_by + " · active: " +
    (actives.length ? actives.join(", ") : "none") + " · " + new Date(view.time * 1000).toLocaleTimeString();
  document.getElementById("nodes").replaceChildren(...view.nodes.map(n => renderNode(n, view.time)));
  drawGaps(view.nodes);
  fillTable("modules", view.modules, ["module", "type", "status", "ports", "host"]);
  fillTable("trace", view.trace.slice().reverse(), ["time", "event"]);
}

function connect() {
  const es = new EventSource("/status/events");
  es.onmessage = ev => render(JSON.parse(ev.data));
  es.onerror = () => {
    const banner = document.getElementById("banner");
    banner.className = "stale";
    banner.textContent = "connection to this VSM lost; retrying… (last update " +
      (lastUpdate ? new Date(lastUpdate).toLocaleTimeString() : "never") + ")";
  };
}
connect();
