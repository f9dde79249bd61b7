// qubits dashboard: subscribe to this page's topics (server-sent events) and draw what arrives.
// Everything from the jobspace goes into the page as text (textContent), never as HTML.
"use strict";

const body = document.body;
const page = body.dataset.page, job = body.dataset.job, task = body.dataset.task;
const main = document.getElementById("main");
const live = document.getElementById("live");
const COLOURS = {succeeded: "#2e9e44", failed: "#d63a3a", lost: "#f08c00", parked: "#9bb7d4", released: "#9c5fd1",
  running: "#17a2b8", cancelled: "#e0c341", upstream_failed: "#8a1f1f", pending: "#bbb", committing: "#5c5"};

function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v; else if (k === "on") Object.entries(v).forEach(([e, f]) => node.addEventListener(e, f));
    else node.setAttribute(k, v);
  }
  for (const kid of kids) if (kid !== null && kid !== undefined) node.append(kid instanceof Node ? kid : String(kid));
  return node;
}
function svg(tag, attrs, ...kids) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  kids.forEach(k => node.append(k));
  return node;
}
function table(head, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, ...head.map(h => el("th", {text: h})))), el("tbody", {}, ...rows));
}
function state(s) { return el("span", {class: "state s-" + s, text: s}); }
function ago(t) {
  if (!t) return "";
  const s = Math.max(0, Date.now() / 1000 - t);
  return s < 90 ? `${s.toFixed(0)}s ago` : s < 5400 ? `${(s / 60).toFixed(0)}m ago` : `${(s / 3600).toFixed(1)}h ago`;
}
function secs(a, b) { return a && b ? `${(b - a).toFixed(2)}s` : ""; }
function clock(t) { return t ? new Date(t * 1000).toLocaleTimeString() : ""; }
function show(...nodes) { main.replaceChildren(...nodes); }
function jobLink(id, what, label) { return el("a", {href: `/jobs/${encodeURIComponent(id)}${what}`, text: label}); }

// -- confirmation and actions ----------------------------------------------------------------------------------
function confirmThen(text, act) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  const yes = document.getElementById("confirm-yes"), no = document.getElementById("confirm-no");
  yes.onclick = () => { dialog.close(); act(); };
  no.onclick = () => dialog.close();
  dialog.showModal();
}
async function post(path) {
  const r = await fetch(path, {method: "POST", headers: {"X-Qubits-Action": "1"}, credentials: "same-origin"});
  const data = await r.json().catch(() => ({error: `HTTP ${r.status}`}));
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}
function say(text, bad) {
  const m = document.getElementById("message");
  if (m) { m.textContent = text; m.className = "message" + (bad ? " bad" : ""); }
}

// -- pages --------------------------------------------------------------------------------------------------
function progress(j) {
  const part = n => `width:${j.total ? 100 * n / j.total : 0}%`;
  const bar = el("span", {class: "bar"}, el("i", {style: part(j.succeeded)}), el("i", {class: "fail", style: part(j.done - j.succeeded)}));
  return el("span", {}, bar, `${j.done}/${j.total}`);
}
let lastJobs = null;
setInterval(() => { if (page === "jobs" && lastJobs) drawJobs(lastJobs); }, 10000);  // ages move on between updates
setInterval(() => { if (page === "tasks" && taskData && !taskData.error && !taskData.finished) drawTasks(); }, 5000);  // running times too
function drawJobs(d) {
  lastJobs = d;
  const rows = d.jobs.map(j => el("tr", {"data-job": j.id, "data-done": j.done, "data-total": j.total, "data-state": j.state},
    el("td", {}, jobLink(j.id, "", j.id)), el("td", {text: j.name}), el("td", {}, state(j.state)), el("td", {class: "progress"}, progress(j)),
    el("td", {class: "num running", text: j.running}), el("td", {class: "num failed", text: j.failed}),
    el("td", {class: "num pending", text: j.pending}), el("td", {text: ago(j.created)}),
    el("td", {}, jobLink(j.id, "/dag", "dag"), " ", jobLink(j.id, "/timeline", "timeline"))));
  show(el("h1", {text: "Jobs"}),
    el("div", {class: "summary", id: "summary", text: `${d.jobs.length} job(s) · ${d.agents} agent(s) live · ${d.busy}/${d.slots} slots busy`}),
    d.jobs.length ? table(["job", "name", "state", "done", "run", "fail", "pend", "age", ""], rows) : el("p", {class: "muted", text: "no jobs yet"}));
}

function drawNodes(d) {
  const rows = d.nodes.map(n => el("tr", {"data-node": n.name},
    el("td", {text: n.name}), el("td", {text: n.host}),
    el("td", {}, state(n.state), n.paused && n.paused_until ? ` until ${clock(n.paused_until)}` : "", n.paused_reason === "in use" ? " (machine in use)" : ""),
    el("td", {class: "num", text: `${n.running.length}/${n.slots}`}), el("td", {text: n.running.join(", ")}),
    el("td", {text: n.capabilities.join(", ")}),
    el("td", {text: Object.entries(n.resources || {}).map(([k, v]) => `${k} ${v}`).join(", ")}),
    el("td", {class: n.skew ? "s-failed" : "", text: n.version + (n.skew ? " (skew)" : "")}), el("td", {text: `${n.last_seen_s}s ago`})));
  show(el("h1", {text: "Nodes"}),
    d.skew ? el("div", {class: "note", id: "skew", text: d.skew}) : "",
    d.nodes.length ? table(["node", "host", "state", "slots", "running", "capabilities", "resources", "version", "last seen"], rows)
      : el("p", {class: "muted", text: "no agent has published its presence"}),
    el("p", {class: "muted"}, "Pausing is done on the node itself, where its tasks run: ", el("code", {text: "qubits agent pause [--for 1h]"}),
      " and ", el("code", {text: "qubits agent resume"}), " on its host. The jobspace holds no pause request, so this page shows pauses but cannot make them."));
}

let taskData = null, filterState = "", search = "";
function taskSkeleton() {  // built once: the filter, the search box, the buttons and the message survive updates
  const select = el("select", {id: "filter", on: {change: e => { filterState = e.target.value; drawTasks(); }}});
  const box = el("input", {id: "search", type: "search", placeholder: "search name, node, error",
    on: {input: e => { search = e.target.value; drawTasks(); }}});
  const cancel = el("button", {id: "cancel", class: "danger",
    on: {click: () => confirmThen(`Cancel job ${job}? Running tasks are stopped; every task not yet decided is decided as cancelled.`,
      () => post(`/api/jobs/${encodeURIComponent(job)}/cancel`).then(r => say(`cancelled: ${r.decided} task(s) decided by this request; running ones stop on their agents`), e => say(e.message, true)))}}, "Cancel job");
  const retry = el("button", {id: "retry",
    on: {click: () => confirmThen(`Retry job ${job}? A new job is submitted with the tasks that did not succeed (and their dependents).`,
      () => post(`/api/jobs/${encodeURIComponent(job)}/retry`).then(r => { say(`submitted ${r.new_job}`); location.href = `/jobs/${encodeURIComponent(r.new_job)}`; }, e => say(e.message, true)))}}, "Retry what did not succeed");
  show(el("h1", {id: "jobtitle"}), el("div", {class: "summary", id: "counts"}), el("div", {class: "tools"}, select, box, cancel, retry),
    el("div", {id: "message", class: "message"}), el("div", {id: "partial"}), el("div", {id: "tasktable"}));
}
function drawTasks(d) {
  if (d) taskData = d;
  d = taskData;
  if (d.error) { show(el("p", {class: "message bad", text: d.error})); return; }
  if (!document.getElementById("tasktable")) taskSkeleton();
  const q = search.toLowerCase();
  const rows = d.rows.filter(r => (!filterState || r.state === filterState) &&
    (!q || [r.task, r.name, r.node, r.error || ""].some(s => String(s).toLowerCase().includes(q))));
  const states = [...new Set([...d.rows.map(r => r.state), filterState].filter(Boolean))].sort();
  document.getElementById("filter").replaceChildren(el("option", {value: "", text: "every state"}),
    ...states.map(s => el("option", {value: s, text: s, selected: s === filterState ? "" : null})));
  document.getElementById("cancel").disabled = d.finished;
  document.getElementById("retry").disabled = !d.finished || d.ok;
  const trs = rows.map(r => el("tr", {"data-task": r.task, "data-state": r.state},
    el("td", {}, el("a", {href: `/jobs/${encodeURIComponent(job)}/tasks/${encodeURIComponent(r.task)}/log`, text: r.name || r.task})),
    el("td", {}, state(r.state)), el("td", {class: "num", text: r.attempt || ""}), el("td", {text: r.node || ""}),
    el("td", {class: "num exit", text: r.exit_code ?? ""}), el("td", {text: clock(r.started)}), el("td", {class: "num", text: secs(r.started, r.finished || (r.state === "running" ? Date.now() / 1000 : null))}),
    el("td", {class: "err"}, r.error || "", r.attempts.length ? el("small", {class: "attempts",
      text: r.attempts.map(a => `attempt ${a.attempt} on ${a.node}: ${a.outcome}${a.error ? " (" + a.error + ")" : ""}`).join("; ")}) : null)));
  const counts = Object.entries(d.counts).filter(([, v]) => v).map(([k, v]) => `${k} ${v}`).join(" · ");
  document.getElementById("jobtitle").replaceChildren(`Job ${d.id} `, el("small", {text: d.name}));
  const summary = document.getElementById("counts");
  summary.dataset.done = d.done; summary.dataset.total = d.total;
  summary.replaceChildren(state(d.state), ` ${d.done}/${d.total} done · ${counts}`);
  document.getElementById("partial").replaceChildren(d.all_rows ? "" : el("div", {class: "note", text: `${d.total} tasks: only the unfinished and unsuccessful ones are listed`}));
  document.getElementById("tasktable").replaceChildren(table(["task", "state", "attempt", "node", "exit", "started", "took", "error"], trs));
}

function drawLog(d) {
  if (d.error && !d.attempts) { show(el("p", {class: "message bad", text: d.error})); return; }
  const head = d.finished ? [state(d.outcome), d.exit_code !== null ? ` · exit code ${d.exit_code}` : "", d.error ? ` · ${d.error}` : ""]
    : [state("running"), " · streaming…"];
  const parts = d.attempts.flatMap(a => [el("h2", {text: `attempt ${a.attempt}`}),
    el("div", {class: "muted", text: "stdout and stderr, as written"}), el("pre", {class: "output", text: a.output || ""}),
    el("details", {}, el("summary", {class: "muted", text: "stdout alone"}), el("pre", {class: "stdout", text: a.stdout || ""})),
    el("details", {}, el("summary", {class: "muted", text: "stderr alone"}), el("pre", {class: "stderr", text: a.stderr || ""}))]);
  show(el("h1", {}, "Log of ", jobLink(job, "", job), ` / ${d.name}`), el("div", {class: "summary", id: "outcome"}, ...head),
    ...(parts.length ? parts : [el("p", {class: "muted", text: "no output yet"})]));
  document.querySelectorAll("pre").forEach(p => { p.scrollTop = p.scrollHeight; });
}

function drawDag(d) {
  if (d.error) { show(el("p", {class: "message bad", text: d.error})); return; }
  const preds = new Map(d.nodes.map(n => [n.id, []]));
  d.edges.forEach(([a, b]) => preds.get(b).push(a));
  const depth = new Map(), visiting = new Set();
  const depthOf = id => {  // longest path from a task with no dependencies (a cycle counts as 0)
    if (depth.has(id)) return depth.get(id);
    if (visiting.has(id)) return 0;
    visiting.add(id);
    const v = Math.max(-1, ...preds.get(id).map(depthOf)) + 1;
    visiting.delete(id); depth.set(id, v); return v;
  };
  const columns = [];
  d.nodes.forEach(n => { const k = depthOf(n.id); (columns[k] = columns[k] || []).push(n); });
  const W = 200, H = 30, pos = new Map();
  columns.forEach((col, k) => col.forEach((n, i) => pos.set(n.id, [20 + k * (W + 60), 20 + i * (H + 10)])));
  const width = 40 + columns.length * (W + 60), height = 40 + Math.max(1, ...columns.map(c => c.length)) * (H + 10);
  const edges = d.edges.map(([a, b, dyn]) => {
    const [x1, y1] = pos.get(a), [x2, y2] = pos.get(b);
    return svg("path", {class: "edge" + (dyn ? " dynamic" : ""), "data-from": a, "data-to": b,
      d: `M${x1 + W},${y1 + H / 2} C${x1 + W + 30},${y1 + H / 2} ${x2 - 30},${y2 + H / 2} ${x2},${y2 + H / 2}`});
  });
  const nodes = d.nodes.map(n => {
    const [x, y] = pos.get(n.id);
    const link = svg("a", {href: `/jobs/${encodeURIComponent(job)}/tasks/${encodeURIComponent(n.id)}/log`},
      svg("rect", {x, y, width: W, height: H, rx: 4, fill: COLOURS[n.state] || "#bbb", stroke: n.dynamic ? "#17a" : "#555"}),
      svg("text", {x: x + 8, y: y + 19, fill: "#000", text: (n.name.length > 28 ? n.name.slice(0, 27) + "…" : n.name)}),
      svg("title", {text: `${n.name} · ${n.state}${n.dynamic ? " · found at run time" : ""}`}));
    return svg("g", {class: "node", "data-task": n.id, "data-state": n.state, "data-dynamic": n.dynamic}, link);
  });
  const dynamic = d.nodes.filter(n => n.dynamic).length;
  show(el("h1", {text: `DAG of job ${job}`}),
    el("div", {class: "summary", id: "dagsummary", text: `${d.nodes.length} task(s), ${d.edges.length} dependency edge(s), ${dynamic} task(s) found at run time` +
      (d.total > d.nodes.length ? ` (the first ${d.nodes.length} of ${d.total} drawn)` : "")}),
    el("div", {}, svg("svg", {width, height, id: "dag"}, ...edges, ...nodes)));
}

function drawTimeline(d) {
  if (d.error) { show(el("p", {class: "message bad", text: d.error})); return; }
  let frame = document.getElementById("timeline");
  // No scripts run in the frame (the page has none); same origin only so that an update keeps the scroll.
  if (!frame) { frame = el("iframe", {id: "timeline", class: "timeline", sandbox: "allow-same-origin", title: "timeline"}); show(frame); }
  const y = frame.contentWindow ? frame.contentWindow.scrollY : 0;
  frame.onload = () => frame.contentWindow.scrollTo(0, y);
  frame.srcdoc = d.html;
}

// -- wiring -----------------------------------------------------------------------------------------------------
const j = encodeURIComponent(job || "");
const TOPICS = {jobs: ["jobs"], nodes: ["nodes"], tasks: [`job/${job}`], dag: [`dag/${job}`], timeline: [`timeline/${job}`], log: [`log/${job}/${task}`]};
const DRAW = {jobs: drawJobs, nodes: drawNodes, tasks: drawTasks, log: drawLog, dag: drawDag, timeline: drawTimeline};
if (job) document.getElementById("jobnav").append(el("a", {href: `/jobs/${j}`, text: `Tasks of ${job}`}),
  el("a", {href: `/jobs/${j}/dag`, text: "DAG"}), el("a", {href: `/jobs/${j}/timeline`, text: "Timeline"}));
const events = new EventSource("/events?" + TOPICS[page].map(t => "topic=" + encodeURIComponent(t)).join("&"));
events.onopen = () => { live.textContent = "live"; live.className = "live on"; };
events.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
TOPICS[page].forEach(t => events.addEventListener(t, ev => DRAW[page](JSON.parse(ev.data))));
