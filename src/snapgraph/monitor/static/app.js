// The snapgraph web monitor: reads /api/* (JSON) and draws the page; it never sends anything but GETs.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const POLL_MS = 1000;
const monitor = { refreshes: 0, mode: null, selectedRun: null, selectedOperator: null, layout: null, layoutRun: undefined,
                  view: null, firstRender: null };

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

const fmt = {
  int: (n) => (n === null || n === undefined ? "–" : Math.round(n).toLocaleString("en-US")),
  rate: (n) => (n ? n.toFixed(n < 10 ? 1 : 0) + "/s" : "0/s"),
  share: (n) => (n === null || n === undefined ? "–" : (100 * n).toFixed(0) + " %"),
  ms: (s) => (s === null || s === undefined ? "–" : (1000 * s).toFixed(1) + " ms"),
  secs: (s) => (s === null || s === undefined ? "–" : s.toFixed(1) + " s"),
  bytes: (n) => {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  },
  time: (t) => (t ? new Date(t * 1000).toLocaleTimeString("en-GB") : "–"),
  date: (t) => (t ? new Date(t * 1000).toLocaleString("en-GB") : "–"),
};

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function runQuery() {
  return monitor.selectedRun ? "?run=" + encodeURIComponent(monitor.selectedRun) : "";
}

function table(target, headers, rows) {
  const head = el("tr", {}, ...headers.map(([label, cls]) => el("th", { class: cls }, label)));
  target.replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
}

function cells(values) {
  return values.map(([value, cls]) => el("td", { class: cls }, value));
}

// -- the picture --------------------------------------------------------------------------------
function edgeCounts(edge, operators, layout) {
  const target = operators[edge.target];
  const source = operators[edge.source];
  const fanIn = layout.edges.filter((e) => e.target === edge.target && e.target_port === edge.target_port).length;
  const port = fanIn === 1 && target ? target.inputs[edge.target_port] : source && source.outputs[edge.source_port];
  return port || null;
}

function drawPicture(layout, view) {
  const holder = document.getElementById("picture");
  if (!layout) { holder.replaceChildren(el("p", { class: "muted" }, "no picture: the graph file cannot be loaded")); return; }
  const operators = Object.fromEntries((view?.operators || []).map((op) => [op.name, op]));
  const svg = el("svg:svg", { viewBox: `0 0 ${layout.width} ${layout.height}`, width: layout.width,
                              height: layout.height, role: "img", "aria-label": "graph" });
  svg.append(el("svg:defs", {}, el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, el("svg:path", { d: "M0,0 L10,5 L0,10 z", fill: "#7d8698" }))));
  for (const group of layout.groups) {
    svg.append(el("svg:g", { class: "group", "data-group": group.name },
      el("svg:rect", { x: group.x, y: group.y, width: group.width, height: group.height, rx: 8 }),
      el("svg:text", { x: group.x + 8, y: group.y + 15 }, "group " + group.name)));
  }
  for (const edge of layout.edges) {
    const [[x1, y1], [x2, y2]] = edge.points;
    const bend = edge.back ? 80 : Math.max(30, (x2 - x1) / 2);
    const d = edge.back
      ? `M${x1},${y1} C${x1 + bend},${y1 - bend} ${x2 - bend},${y2 - bend} ${x2},${y2}`
      : `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`;
    const port = edgeCounts(edge, operators, layout);
    const label = port ? `${fmt.int(port.messages)} msgs · ${fmt.int(port.rows)} rows` : "";
    svg.append(el("svg:g", { class: "edge", "data-edge": `${edge.source}.${edge.source_port}->${edge.target}.${edge.target_port}` },
      el("svg:path", { d, "marker-end": "url(#arrow)" }),
      el("svg:text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 6, "text-anchor": "middle" }, label)));
  }
  for (const node of layout.nodes) {
    const op = operators[node.name];
    const state = op ? op.state : view && view.operators.length ? "unknown" : "stored";
    const g = el("svg:g", { class: "node" + (monitor.selectedOperator === node.name ? " selected" : ""),
                            "data-operator": node.name, "data-state": state });
    g.append(el("svg:title", {}, `${node.name} (${state})`));
    g.append(el("svg:rect", { class: "box", x: node.x, y: node.y, width: node.width, height: node.height, rx: 5 }));
    g.append(el("svg:rect", { class: "state s-" + state, x: node.x + 1, y: node.y + 1, width: node.width - 2, height: 22, rx: 4 }));
    g.append(el("svg:text", { class: "name", x: node.x + 8, y: node.y + 16 }, `${node.name} · ${state}`));
    for (const port of node.inputs) g.append(el("svg:text", { class: "port", x: port.x + 6, y: port.y + 4 }, "▸ " + port.name));
    for (const port of node.outputs) g.append(el("svg:text", { class: "port", x: port.x - 6, y: port.y + 4, "text-anchor": "end" }, port.name + " ▸"));
    g.addEventListener("click", () => selectOperator(node.name));
    svg.append(g);
  }
  holder.replaceChildren(svg);
}

// -- the sections --------------------------------------------------------------------------------
function drawSummary(view) {
  document.getElementById("graph-name").textContent = view.graph;
  const badge = document.getElementById("run-status");
  badge.textContent = view.status;
  badge.className = "badge s-" + view.status;
  const items = [["run", view.run || "(no snapshots)"], ["elapsed", fmt.secs(view.elapsed)],
    ["attempt", view.attempt], ["recoveries", view.recoveries], ["epochs completed", fmt.int(view.completed_epochs)],
    ["last epoch", view.last_completed_epoch || "–"], ["took", fmt.ms(view.last_epoch_seconds)],
    ["size", fmt.bytes(view.last_epoch_bytes)]];
  document.getElementById("summary").replaceChildren(
    ...items.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", { "data-field": k }, v))));
}

function selectOperator(name) {
  monitor.selectedOperator = monitor.selectedOperator === name ? null : name;
  render();
}

function drawOperators(view) {
  const headers = [["operator"], ["group"], ["state"], ["msgs in", "num"], ["msgs out", "num"], ["rows in", "num"],
    ["rows out", "num"], ["in/s", "num"], ["out/s", "num"], ["callback", "num"], ["blocked", "num"],
    ["state bytes", "num"], ["last epoch"]];
  const rows = view.operators.map((op) => {
    const row = el("tr", { class: "selectable" + (monitor.selectedOperator === op.name ? " selected" : ""),
                           "data-operator": op.name },
      ...cells([[op.name], [op.group], [el("span", { class: "badge s-" + op.state }, op.state)],
        [fmt.int(op.messages_in), "num"], [fmt.int(op.messages_out), "num"], [fmt.int(op.rows_in), "num"],
        [fmt.int(op.rows_out), "num"], [fmt.rate(op.messages_in_per_s), "num"], [fmt.rate(op.messages_out_per_s), "num"],
        [fmt.share(op.callback_share), "num"], [fmt.share(op.blocked_share), "num"], [fmt.bytes(op.state_bytes), "num"],
        [op.last_epoch || "–"]]));
    row.addEventListener("click", () => selectOperator(op.name));
    return row;
  });
  table(document.getElementById("operators"), headers, rows);
  const details = document.getElementById("operator-details");
  const op = view.operators.find((o) => o.name === monitor.selectedOperator);
  if (!op) { details.replaceChildren(); return; }
  const ports = [...Object.entries(op.inputs).map(([n, p]) => ["in", n, p]),
                 ...Object.entries(op.outputs).map(([n, p]) => ["out", n, p])];
  const portTable = el("table", { id: "ports" });
  table(portTable, [["port"], ["dir"], ["messages", "num"], ["rows", "num"], ["bytes", "num"], ["run messages", "num"],
    ["run rows", "num"], ["queued", "num"]], ports.map(([dir, n, p]) => el("tr", {}, ...cells([[n], [dir],
    [fmt.int(p.messages), "num"], [fmt.int(p.rows), "num"], [fmt.bytes(p.bytes), "num"], [fmt.int(p.run_messages), "num"],
    [fmt.int(p.run_rows), "num"], [dir === "in" ? fmt.int(p.queued) : "–", "num"]]))));
  details.replaceChildren(el("h3", {}, `${op.name} · ${op.instances} instance(s)`),
    el("p", {}, `callbacks ${fmt.int(op.callbacks)} (${fmt.secs(op.callback_seconds)}), waiting for room ${fmt.secs(op.send_seconds)}, ` +
      `snapshots ${fmt.int(op.snapshots)}; whole run: ${fmt.int(op.run_callbacks)} callbacks, ${fmt.secs(op.run_callback_seconds)}`),
    portTable);
}

function drawCheckpoints(view) {
  const headers = [["epoch"], ["attempt", "num"], ["status"], ["started"], ["duration", "num"], ["bytes", "num"],
    ["acks", "num"], ["per operator: alignment / serialize / persist · bytes"]];
  const rows = [...view.epochs].reverse().map((e) => {
    const per = Object.entries(e.operators).map(([name, t]) =>
      el("div", { "data-operator": name },
        `${name}: ${fmt.ms(t.alignment_seconds)} / ${fmt.ms(t.serialize_seconds)} / ${fmt.ms(t.persist_seconds)} · ${fmt.bytes(t.state_bytes)}`));
    return el("tr", { "data-epoch": e.epoch, "data-status": e.status }, ...cells([[e.epoch], [e.attempt ?? "–", "num"],
      [el("span", { class: "badge s-" + e.status }, e.status + (e.final ? " (final)" : ""))], [fmt.time(e.started_at)],
      [fmt.ms(e.seconds), "num"], [fmt.bytes(e.state_bytes), "num"], [e.acks ?? "–", "num"],
      [per.length ? el("details", {}, el("summary", {}, `${per.length} operator(s)`), ...per) : "–"]]));
  });
  table(document.getElementById("checkpoints"), headers, rows.length ? rows : [el("tr", {}, el("td", { colspan: 8, class: "muted" }, "no checkpoint yet"))]);
}

function drawRecoveries(view) {
  table(document.getElementById("attempts"), [["attempt", "num"], ["started"], ["restored from"], ["backend"], ["ended"], ["status"], ["reason"]],
    view.attempts.map((a) => el("tr", { "data-attempt": a.number }, ...cells([[a.number, "num"], [fmt.time(a.started_at)],
      [a.restored_from || "–"], [a.backend], [fmt.time(a.ended_at)], [a.status || "running"], [a.reason]]))));
  const failures = view.failures.map((f) => el("div", { class: "failure", "data-operator": f.operator },
    el("strong", {}, `attempt ${f.attempt} · ${f.operator} · ${f.phase}`), el("span", { class: "muted" }, " at " + fmt.time(f.at)),
    el("p", { class: "message" }, f.message), el("pre", { class: "traceback" }, f.traceback || "(no traceback)")));
  document.getElementById("failures").replaceChildren(...(failures.length ? failures : [el("p", { class: "muted" }, "no failure")]));
}

function drawRuns(runs) {
  const rows = runs.map((r) => {
    const selected = (monitor.selectedRun || monitor.view?.run) === r.run;
    const row = el("tr", { class: "selectable" + (selected ? " selected" : ""), "data-run": r.run || "" },
      ...cells([[r.run || "(live, no snapshots)"], [r.graph], [el("span", { class: "badge s-" + r.status }, r.status)],
        [r.attempts, "num"], [fmt.int(r.epochs), "num"], [r.newest_epoch || "–"], [fmt.date(r.created)], [fmt.date(r.updated)]]));
    row.addEventListener("click", () => { monitor.selectedRun = r.live ? null : r.run; monitor.selectedOperator = null; refresh(); });
    return row;
  });
  table(document.getElementById("runs"), [["run"], ["graph"], ["status"], ["attempts", "num"], ["epochs", "num"],
    ["newest epoch"], ["started"], ["updated"]], rows.length ? rows : [el("tr", {}, el("td", { colspan: 8, class: "muted" }, "no runs"))]);
}

function render() {
  const view = monitor.view;
  if (!view) return;
  drawSummary(view);
  drawPicture(monitor.layout, view);
  drawOperators(view);
  drawCheckpoints(view);
  drawRecoveries(view);
  if (monitor.firstRender === null) {
    monitor.firstRender = performance.now();
    document.body.dataset.rendered = "1";
  }
}

async function refresh() {
  try {
    // The run list, the run and (when the run shown changed) its picture are asked for at once. Only the
    // first refresh of a store's monitor learns from the run list which run to show, and asks again.
    const asked = monitor.selectedRun;
    const query = runQuery();
    const ticket = ++monitor.refreshes;
    const [runs, layout, view] = await Promise.all([
      getJSON("/api/runs"),
      monitor.layoutRun !== asked ? getJSON("/api/layout" + query).catch(() => null) : monitor.layout,
      getJSON("/api/run" + query).catch(() => null),
    ]);
    if (ticket !== monitor.refreshes) return;  // a newer refresh (a click on a run) is on its way
    monitor.mode = runs.mode;
    if (runs.mode === "store" && !asked && runs.runs.length) {
      monitor.selectedRun = runs.runs[0].run;
      return refresh();
    }
    monitor.layout = layout;
    monitor.layoutRun = asked;
    monitor.view = runs.runs.length ? view : null;
    drawRuns(runs.runs);
    render();
    document.getElementById("footer").textContent = `read-only · ${runs.mode} · updated ${new Date().toLocaleTimeString("en-GB")}`;
  } catch (err) {
    document.getElementById("footer").textContent = "monitor unreachable: " + err.message;
  }
}

refresh();
setInterval(refresh, POLL_MS);
