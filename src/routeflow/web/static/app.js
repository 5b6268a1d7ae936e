// rfweb live page: one server-sent event stream (/api/stream) carries a full
// snapshot whenever anything changes; the graph and the tables redraw from it.
// No framework and no build step: cytoscape (vendored by scripts/setup.sh) draws the graph.
"use strict";

const rfweb = { cy: null, snapshot: null, updates: 0 };
window.rfweb = rfweb;

const STATE_COLOURS = {
  up: "#2e8b57", active: "#2e8b57", associated: "#d4a017",
  idle_client: "#e67e22", idle_datapath: "#e67e22", down: "#c0392b", unknown: "#999",
};

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function stateBadge(code, text) {
  return el("span", { class: `state ${code}`, title: text || code }, text || code);
}

function fmt(n) {
  return Number(n).toLocaleString("en-US");
}

function ago(t) {
  if (t === null || t === undefined) return "never";
  const s = Math.max(0, Date.now() / 1000 - t);
  return s < 90 ? `${s.toFixed(0)} s ago` : `${(s / 60).toFixed(0)} min ago`;
}

function replaceRows(table, rows) {
  const tbody = document.querySelector(`${table} tbody`);
  tbody.replaceChildren(...rows);
}

// --- graph ------------------------------------------------------------------

function graphStyle() {
  return [
    { selector: "node", style: {
        label: "data(label)", "font-size": 11, "text-valign": "center", "text-halign": "center",
        color: "#fff", "text-outline-width": 0, "border-width": 3,
        "border-color": (n) => STATE_COLOURS[n.data("state")] || "#999" } },
    { selector: 'node[kind = "switch"]', style: {
        shape: "round-rectangle", width: 64, height: 34, "background-color": "#3b6ea5" } },
    { selector: 'node[kind = "vm"]', style: {
        shape: "ellipse", width: 70, height: 36, "background-color": "#8e6bbf" } },
    { selector: 'node[kind = "host"]', style: {
        shape: "rectangle", width: 30, height: 20, "background-color": "#777",
        "text-valign": "bottom", "text-margin-y": 4, color: "#333", "font-size": 10 } },
    { selector: 'node[state = "down"]', style: { "border-style": "dashed", opacity: 0.75 } },
    { selector: "edge", style: {
        width: 2, "curve-style": "bezier", "line-color": "#888",
        "font-size": 9, color: "#555", "text-background-color": "#fff",
        "text-background-opacity": 0.8, "text-background-padding": 1 } },
    { selector: 'edge[kind = "link"]', style: { width: 3, "line-color": "#4a5a6a" } },
    { selector: 'edge[kind = "link"][state = "down"]', style: {
        "line-color": STATE_COLOURS.down, "line-style": "dashed" } },
    { selector: 'edge[kind = "link"][state = "one-way"]', style: {
        "line-color": STATE_COLOURS.idle_client, "line-style": "dotted" } },
    { selector: 'edge[kind = "link"][discovered = "no"]', style: { "line-style": "dotted" } },
    { selector: 'edge[kind = "host"]', style: { width: 1.5, "line-color": "#aaa" } },
    { selector: 'edge[kind = "host"][state = "down"]', style: {
        "line-color": STATE_COLOURS.down, "line-style": "dashed" } },
    { selector: 'edge[kind = "association"]', style: {
        "line-style": "dashed", label: "data(label)",
        "line-color": (e) => STATE_COLOURS[e.data("state")] || "#999" } },
  ];
}

// Switches on a circle; each switch's VMs and hosts just outside it, so a lab
// reads the way it was drawn and the picture does not move between updates.
function positions(topo) {
  const pos = {};
  const sws = topo.nodes.filter((n) => n.kind === "switch");
  const R = Math.max(140, 38 * sws.length);
  const angle = {};
  sws.forEach((n, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, sws.length);
    angle[n.id] = a;
    pos[n.id] = { x: R * Math.cos(a), y: R * Math.sin(a) };
  });
  const around = {};
  for (const e of topo.edges) {
    if ((e.kind === "association" || e.kind === "host") && e.target in angle) {
      (around[e.target] = around[e.target] || []).push(e.source);
    }
  }
  for (const [sw, list] of Object.entries(around)) {
    const uniq = [...new Set(list)].filter((id) => !(id in pos));
    const spread = Math.min(0.5, 1.2 / Math.max(1, sws.length));
    uniq.forEach((id, k) => {
      const off = uniq.length === 1 ? 0 : spread * ((2 * k) / (uniq.length - 1) - 1);
      const a = angle[sw] + off;
      const r = R + (id.startsWith("vm-") ? 110 : 95);
      pos[id] = { x: r * Math.cos(a), y: r * Math.sin(a) };
    });
  }
  let x = -R;
  for (const n of topo.nodes) {
    if (!(n.id in pos)) {
      pos[n.id] = { x, y: R + 200 };
      x += 90;
    }
  }
  return pos;
}

function elementsOf(topo) {
  const pos = positions(topo);
  const nodes = topo.nodes.map((n) => ({ group: "nodes", data: { ...n }, position: pos[n.id] }));
  const edges = topo.edges.map((e) => ({ group: "edges", data: { ...e } }));
  return nodes.concat(edges);
}

function drawGraph(topo) {
  const box = document.getElementById("graph");
  if (typeof cytoscape === "undefined") {
    if (!box.querySelector(".error")) {
      box.replaceChildren(el("p", { class: "error" },
        "cytoscape.min.js is missing: run scripts/setup.sh (it vendors it from npm)."));
    }
    return;
  }
  const key = topo.nodes.map((n) => n.id).join(",") + "|" + topo.edges.map((e) => e.id).join(",");
  if (!rfweb.cy) {
    rfweb.cy = cytoscape({
      container: box, elements: elementsOf(topo), style: graphStyle(),
      layout: { name: "preset", fit: true, padding: 30 },
    });
    rfweb.graphKey = key;
  } else if (rfweb.graphKey !== key) {
    rfweb.cy.elements().remove();
    rfweb.cy.add(elementsOf(topo));
    rfweb.cy.fit(undefined, 30);
    rfweb.graphKey = key;
  } else {
    rfweb.cy.batch(() => {
      for (const item of topo.nodes.concat(topo.edges)) {
        rfweb.cy.getElementById(item.id).data(item);
      }
    });
  }
  // Node ids and states in the DOM too: for tests, scripts and screen readers.
  const list = document.getElementById("graph-nodes");
  list.replaceChildren(...topo.nodes.map((n) =>
    el("li", { "data-id": n.id, "data-kind": n.kind, "data-state": n.state }, n.label)));
}

// --- tables --------------------------------------------------------------------

function drawSummary(s, topo) {
  document.getElementById("lab-name").textContent = s.lab || topo.name || "";
  const set = (id, text) => { document.getElementById(id).textContent = text; };
  set("sum-switches", `${s.switches_registered}/${s.switches}`);
  set("sum-vms", `${s.vms_connected}/${s.vms}`);
  set("sum-assoc", `${s.associations_by_state.active}/${s.associations}`);
  set("sum-routes", fmt(s.routes));
  set("sum-fib", fmt(s.fib_entries));
  set("sum-nexthops", fmt(s.nexthops));
  const fp = document.getElementById("flow-packets");
  fp.textContent = fmt(s.flow_packets);
  fp.setAttribute("data-packets", s.flow_packets);
  set("sum-relay", `${fmt(s.relayed_to_vm)} / ${fmt(s.relayed_to_dp)}`);
  set("sum-messages", `${fmt(s.messages_received)} / ${fmt(s.messages_sent)}`);
}

function drawAssociations(rows) {
  replaceRows("#assoc-table", rows.map((r) => el("tr",
    { "data-vm": r.vm_id, "data-vm-port": r.vm_port, "data-state": r.state_code },
    el("td", {}, r.vm_id ?? "-"), el("td", {}, r.vm_port ?? "-"),
    el("td", {}, r.vm_ifname || ""),
    el("td", {}, r.dp_id ?? "-"), el("td", {}, r.dp_port ?? "-"),
    el("td", { title: r.vs_id ? `virtual switch ${r.vs_id}` : "" }, r.vs_port ?? "-"),
    el("td", {}, r.hwaddress || ""),
    el("td", {}, stateBadge(r.state_code, r.state)))));
}

function fillSelect(id, values) {
  const sel = document.getElementById(id);
  const have = [...sel.options].map((o) => o.value).slice(1).join(",");
  if (have === values.join(",")) return;
  const keep = sel.value;
  sel.replaceChildren(el("option", { value: "" }, "all"),
    ...values.map((v) => el("option", { value: v }, v)));
  sel.value = values.includes(keep) ? keep : "";
}

function drawRoutes(rows) {
  fillSelect("route-vm", [...new Set(rows.map((r) => r.vm_id))]);
  const vm = document.getElementById("route-vm").value;
  replaceRows("#routes-table", rows.filter((r) => !vm || r.vm_id === vm).map((r) => el("tr",
    { "data-vm": r.vm_id, "data-prefix": r.prefix },
    el("td", {}, r.vm_id), el("td", {}, r.prefix), el("td", {}, r.kind),
    el("td", { class: "wrap" }, r.nexthops.map((n) =>
      `${n.gateway || "direct"} port ${n.vm_port}${n.weight !== 1 ? ` w${n.weight}` : ""}`)
      .join(", ")),
    el("td", {}, r.installed ? "yes" : "no"))));
}

// flow key -> its counters at its switch's last two stats samples. A row "grew" when the
// latest sample counted more packets than the one before; a redraw for anything else
// (a route, an event) arrives with the same sample and keeps the mark.
const samples = new Map();

function flowKey(r) {
  return `${r.dp_id}|${r.table}|${r.priority}|${r.match}`;
}

function grewSinceLastSample(key, r) {
  const s = samples.get(key);
  if (s === undefined) {
    samples.set(key, { time: r.stats_time, packets: r.packets, before: undefined });
    return false;
  }
  if (s.time !== r.stats_time) {
    s.before = s.packets;
    s.time = r.stats_time;
    s.packets = r.packets;
  }
  return s.before !== undefined && s.packets > s.before;
}

function drawFlows(rows) {
  fillSelect("flow-switch", [...new Set(rows.map((r) => r.dp_id))]);
  const dp = document.getElementById("flow-switch").value;
  const fibOnly = document.getElementById("flow-fib-only").checked;
  const grew = new Map(rows.map((r) => {
    const key = flowKey(r);
    return [key, grewSinceLastSample(key, r)];
  }));
  for (const key of samples.keys()) if (!grew.has(key)) samples.delete(key);  // flows gone
  const shown = rows.filter((r) => (!dp || r.dp_id === dp) && (!fibOnly || r.table === 1));
  replaceRows("#flows-table", shown.map((r) => {
    const key = flowKey(r);
    return el("tr", { "data-flow": key, "data-packets": r.packets,
                      class: grew.get(key) ? "grew" : "" },
      el("td", {}, r.dp_id), el("td", {}, r.table), el("td", {}, r.priority),
      el("td", { class: "wrap" }, r.match), el("td", {}, r.actions),
      el("td", { class: "num" }, fmt(r.packets)), el("td", { class: "num" }, fmt(r.bytes)));
  }));
}

function drawControllers(rows) {
  replaceRows("#controllers-table", rows.map((c) => el("tr", { "data-ct": c.ct_id },
    el("td", {}, c.ct_id),
    el("td", {}, stateBadge(c.connected ? "up" : "down", c.connected ? "connected" : "down")),
    el("td", {}, c.peer || ""), el("td", {}, c.sessions),
    el("td", { class: "wrap" }, c.switches.join(" ")), el("td", {}, ago(c.last_stats_time)))));
}

function drawEvents(items) {
  const list = document.getElementById("events");
  list.replaceChildren(...items.slice().reverse().map((e) => el("li", {},
    el("time", {}, new Date(e.time * 1000).toLocaleTimeString()),
    el("span", { class: "kind" }, e.kind), e.text)));
}

function render(snap) {
  rfweb.snapshot = snap;
  drawSummary(snap.summary, snap.topology);
  drawGraph(snap.topology);
  drawAssociations(snap.associations);
  drawFlows(snap.flows);
  drawRoutes(snap.routes);
  drawControllers(snap.controllers);
  drawEvents(snap.events);
  rfweb.updates += 1;
  document.body.setAttribute("data-updates", rfweb.updates);
}

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/stream");
  source.addEventListener("snapshot", (ev) => {
    live.textContent = "live";
    live.className = "live on";
    render(JSON.parse(ev.data));
  });
  source.onerror = () => {
    live.textContent = "reconnecting";
    live.className = "live off";
  };
}

// --- tenants tab (GET /api/tenant: rfweb reads the tenant server's API) -------------

function drawTenants(t) {
  const status = document.getElementById("tenant-status");
  if (!t.configured) {
    status.textContent = "No tenant server: start rfserver with --tenant-api URL " +
      "(and --tenant-token-file) to see tenant networks here.";
  } else if (t.error) {
    status.textContent = t.error;
  } else {
    const n = (k, word) => `${k} ${word}${k === 1 ? "" : "s"}`;
    status.textContent = `from ${t.source}: ${n(t.networks.length, "network")}, ` +
      `${n(t.routers.length, "router")}, ${n(t.nodes.length, "node")}`;
  }
  status.className = t.error ? "error" : "";
  replaceRows("#tenant-networks", t.networks.map((n) => el("tr", { "data-id": n.id },
    el("td", {}, n.project_id), el("td", {}, n.name + (n.external ? " (external)" : "")),
    el("td", {}, n.cidrs.join(" ")), el("td", {}, n.vni ?? ""),
    el("td", { class: "num" }, n.ports))));
  replaceRows("#tenant-routers", t.routers.map((r) => el("tr", { "data-id": r.id },
    el("td", {}, r.project_id), el("td", {}, r.name),
    el("td", { class: "wrap" }, r.interfaces.join(", ")),
    el("td", {}, r.gateway.join(" ") + (r.snat ? " (SNAT)" : "")))));
  replaceRows("#tenant-fips", t.floating_ips.map((f) => el("tr", { "data-id": f.id },
    el("td", {}, f.address), el("td", {}, f.fixed), el("td", {}, f.port_id.slice(0, 8)),
    el("td", {}, f.status))));
  document.getElementById("tenant-nodes").replaceChildren(...t.nodes.map((n) =>
    el("div", { class: "tenant-node", "data-node": n.node },
      el("h3", {}, `${n.node} `,
        el("small", {}, `${n.ports.length} port${n.ports.length === 1 ? "" : "s"}`)),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "port"), el("th", {}, "network"),
        el("th", {}, "addresses"), el("th", {}, "MAC"), el("th", {}, "status"))),
      el("tbody", {}, ...n.ports.map((p) => el("tr", { "data-id": p.id },
        el("td", {}, p.name), el("td", {}, p.network), el("td", {}, p.ips.join(" ")),
        el("td", {}, p.mac),
        el("td", {}, stateBadge(p.status === "ACTIVE" ? "up" : "down", p.status)))))))));
  rfweb.tenantUpdates = (rfweb.tenantUpdates || 0) + 1;
  document.body.setAttribute("data-tenant-updates", rfweb.tenantUpdates);
}

async function pollTenants() {
  if (document.getElementById("view-tenants").hidden) return;
  try {
    const resp = await fetch("/api/tenant");
    drawTenants(await resp.json());
  } catch (err) {
    document.getElementById("tenant-status").textContent = `rfweb did not answer: ${err}`;
  }
}

function showTab(name) {
  for (const b of document.querySelectorAll("#tabs button")) {
    b.setAttribute("aria-selected", String(b.dataset.tab === name));
  }
  document.getElementById("view-network").hidden = name !== "network";
  document.getElementById("view-tenants").hidden = name !== "tenants";
  if (name === "tenants") pollTenants();
  if (name === "network" && rfweb.cy) rfweb.cy.resize();
}

for (const b of document.querySelectorAll("#tabs button")) {
  b.addEventListener("click", () => {
    history.replaceState(null, "", b.dataset.tab === "network" ? "#" : `#${b.dataset.tab}`);
    showTab(b.dataset.tab);
  });
}
showTab(location.hash === "#tenants" ? "tenants" : "network");
setInterval(pollTenants, 2000);

for (const id of ["route-vm", "flow-switch", "flow-fib-only"]) {
  document.getElementById(id).addEventListener("change", () => {
    if (rfweb.snapshot) render(rfweb.snapshot);
  });
}
connect();
