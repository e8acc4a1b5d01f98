// strategy-rollouts dashboard: hash-routed pages over /api, live through one EventSource (/api/events).
"use strict";

const KIND_LABEL = { strategyrollouts: "StrategyRollout", shadowruns: "ShadowRun", paritychecks: "ParityCheck" };
const state = { page: null, rows: {}, readOnly: true, charts: [], detailTimer: null };
// For tests and the benchmark: counts, and when each object's change was last shown.
window.__dash = { updates: 0, renders: 0, last: null, shown: {} };

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const num = (v, d = 1) => (v === null || v === undefined ? "-" : Number(v).toFixed(d));
const pct = (v, d = 1) => (v === null || v === undefined ? "-" : (v * 100).toFixed(d) + "%");
const cls = (prefix, v) => (v ? `${prefix}-${esc(v)}` : "dim");
const ago = (t) => {
  if (!t) return "-";
  const s = Math.round((Date.now() - new Date(t).getTime()) / 1000);
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
};
const link = (r) => `#/${r.kind}/${encodeURIComponent(r.namespace)}/${encodeURIComponent(r.name)}`;
const rowKey = (r) => `${r.kind}/${r.namespace}/${r.name}`;

// Local mode: the token of the printed URL, kept in this tab only and sent as a header. sessionStorage
// is per origin, port included: unlike a cookie of 127.0.0.1, no other local port ever receives it.
const TOKEN_KEY = "strategy-dashboard-token";
(() => {
  const q = new URLSearchParams(location.search);
  if (!q.has("token")) return;
  sessionStorage.setItem(TOKEN_KEY, q.get("token"));
  const page = q.get("page");
  history.replaceState(null, "", "/" + (page ? `#${page}` : location.hash));
})();
const token = () => sessionStorage.getItem(TOKEN_KEY);

async function api(path, opts) {
  const o = Object.assign({ credentials: "same-origin" }, opts || {});
  if (token()) o.headers = Object.assign({ Authorization: `Bearer ${token()}` }, o.headers || {});
  const res = await fetch(path, o);
  if (res.status === 401) {
    // In the cluster: signed out, or the token expired or was revoked: the server names its sign-in page.
    const signIn = res.headers.get("X-Sign-In");
    if (signIn) { location.assign(signIn); throw new Error("401: sign in again"); }
    sessionStorage.removeItem(TOKEN_KEY);
    throw new Error("401: no valid token: open the URL `kubectl strategy dashboard` printed");
  }
  if (!res.ok) throw new Error(`${res.status}: ${(await res.text()).trim()}`);
  return res.json();
}

// ---- list page ---------------------------------------------------------------------------------

function gatesCell(gates) {
  if (!gates || !gates.length) return '<span class="dim">-</span>';
  return gates.map((g) => `<span class="${cls("result", g.result)}" title="${esc(g.result || "")}">${esc(g.name)} ${num(g.value)}</span>`).join("<br>");
}

const COLUMNS = {
  strategyrollouts: ["Namespace", "Name", "Strategy", "Phase", "Stage", "Step", "Weight", "Canary", "Gates", "Requests"],
  shadowruns: ["Namespace", "Name", "Strategy", "Phase", "Verdict", "Match", "Compared", "Mismatches"],
  paritychecks: ["Namespace", "Name", "Strategy", "Phase", "Level", "TE bps", "Actions"],
};

function rowCells(r) {
  const head = [esc(r.namespace), `<a href="${link(r)}">${esc(r.name)}</a>`, esc(r.strategy)];
  if (r.kind === "strategyrollouts") {
    return head.concat([
      `<span class="${cls("phase", r.phase)}">${esc(r.phase)}</span>${r.reason ? ` <span class="dim">${esc(r.reason)}</span>` : ""}`,
      esc(r.stage || "-"), esc(r.step), r.weight === null ? "-" : `${r.weight}%`, esc(r.canary || "-"),
      gatesCell(r.gates), r.pending ? `${r.pending} pending` : "-",
    ]);
  }
  if (r.kind === "shadowruns") {
    return head.concat([`<span class="${cls("phase", r.phase)}">${esc(r.phase)}</span>`,
      `<span class="${cls("verdict", r.verdict)}">${esc(r.verdict || "-")}</span>`, pct(r.matchRate, 2), esc(r.compared ?? "-"), esc(r.mismatches || "-")]);
  }
  return head.concat([`<span class="${cls("phase", r.phase)}">${esc(r.phase)}</span>`,
    `<span class="${cls("level", r.level)}">${esc(r.level || "-")}</span>`, num(r.trackingErrorBps), esc(r.actions)]);
}

function rowHtml(r) {
  return `<tr data-key="${esc(rowKey(r))}" data-rv="${esc(r.resourceVersion)}" data-phase="${esc(r.phase)}">${rowCells(r).map((c) => `<td>${c}</td>`).join("")}</tr>`;
}

async function listPage() {
  const data = await api("/api/overview");
  state.readOnly = data.readOnly;
  $("#who").innerHTML = `${esc(data.user)}${data.readOnly ? " (read-only)" : ""}${data.signOut ? ' <a href="/logout" id="sign-out">sign out</a>' : ""}`;
  let html = "";
  for (const kind of Object.keys(KIND_LABEL)) {
    const rows = data[kind] || [];
    for (const r of rows) state.rows[rowKey(r)] = r;
    html += `<h2>${KIND_LABEL[kind]}s <span class="dim">(${rows.length})</span></h2>`;
    html += `<table id="table-${kind}"><thead><tr>${COLUMNS[kind].map((c) => `<th>${c}</th>`).join("")}</tr></thead><tbody>`;
    html += rows.length ? rows.map(rowHtml).join("") : `<tr class="empty"><td colspan="${COLUMNS[kind].length}" class="dim">none</td></tr>`;
    html += "</tbody></table>";
  }
  const errors = Object.entries(data.errors || {});
  if (errors.length) html = `<p class="error">watch errors: ${esc(errors.map((e) => e.join(": ")).join(", "))}</p>` + html;
  $("#main").innerHTML = html;
  window.__dash.renders++;
  if (!performance.getEntriesByName("dash:list").length) performance.mark("dash:list");
}

function listChange(ch) {
  const key = `${ch.kind}/${ch.namespace}/${ch.name}`;
  const body = $(`#table-${ch.kind} tbody`);
  if (!body) return;
  const old = body.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
  if (ch.deleted) { if (old) old.remove(); return; }
  const tmp = document.createElement("tbody");
  tmp.innerHTML = rowHtml(ch.row);
  const fresh = tmp.firstElementChild;
  if (old) old.replaceWith(fresh);
  else {
    const empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    const after = [...body.children].find((tr) => tr.dataset.key > key);
    body.insertBefore(fresh, after || null);
  }
}

// ---- charts ------------------------------------------------------------------------------------

function destroyCharts() { for (const c of state.charts) c.destroy(); state.charts = []; }

// lines: [{label, points: [[t, v], ...], color, dash}]; a constant line is {label, value, color}
function chart(el, title, lines, opts) {
  const xs = [...new Set(lines.flatMap((l) => (l.points || []).map((p) => p[0])))].sort((a, b) => a - b);
  el.dataset.points = String(lines.filter((l) => l.points).reduce((n, l) => n + l.points.length, 0));
  if (!xs.length) { el.innerHTML = `<div class="dim">${esc(title)}: no data yet${opts && opts.note ? " (" + esc(opts.note) + ")" : ""}</div>`; return; }
  const data = [xs];
  const series = [{}];
  for (const l of lines) {
    if (l.points) {
      const m = new Map(l.points);
      data.push(xs.map((x) => (m.has(x) ? m.get(x) : null)));
    } else {
      data.push(xs.map(() => l.value));
    }
    const points = l.marker ? { show: true, size: 12, fill: l.color } : { show: false };
    series.push({ label: l.label, stroke: l.color, width: l.marker ? 0 : l.width || 2, dash: l.dash, spanGaps: true, points });
  }
  el.innerHTML = "";
  const width = Math.max(320, el.clientWidth || 480);
  const u = new uPlot({ title, width, height: 220, series, scales: { x: { time: true } }, axes: [{}, { size: 60 }] }, data, el);
  state.charts.push(u);
}

function bars(rows, unit) {
  const max = Math.max(1e-9, ...rows.map((r) => Math.abs(r.value || 0)));
  return `<table class="bars">${rows.map((r) => `<tr><td>${esc(r.label)}</td><td><div class="bar ${r.value < 0 ? "neg" : ""}" style="width:${(Math.abs(r.value || 0) / max) * 100}%"></div></td><td>${num(r.value, 2)} ${esc(unit)}</td></tr>`).join("")}</table>`;
}

function table(columns, rows) {
  if (!rows.length) return '<p class="dim">none</p>';
  return `<table><thead><tr>${columns.map((c) => `<th>${esc(c)}</th>`).join("")}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("")}</tbody></table>`;
}

// ---- one rollout -------------------------------------------------------------------------------

function symbolMap(targets) {
  if (!targets.length) return '<p class="dim">no routing yet</p>';
  const legend = `<div class="legend">${["stable", "canary", "draining", "none"].map((o) => `<span><span class="swatch owner-${o}"></span>${o}</span>`).join("")}</div>`;
  return legend + targets.map((t) => `<div class="card target" data-namespace="${esc(t.namespace)}">
    <div><b>${esc(t.namespace)}</b> <span class="dim">configmap ${esc(t.configMap)}, revision ${t.revision}, weight ${t.weight}%${t.drainingUntil ? ", draining until " + esc(t.drainingUntil) : ""}${t.segmented ? `, ${t.segmented.keys} keys as ${t.segmented.segments} segments of their hash order` : ""}</span></div>
    <div class="keys">${t.keys.map((k) => `<span class="key owner-${esc(k.owner)}" data-key="${esc(k.key)}" data-owner="${esc(k.owner)}" title="${esc(k.version || k.owner)}${k.next ? " → " + esc(k.next) : ""}">${esc(k.key)}${k.next ? " → " + esc(k.next) : ""}</span>`).join("")}</div></div>`).join("");
}

function rolloutHtml(d) {
  const tl = d.timeline.map((s) => `<div class="stage ${s.state}"><b>${esc(s.name)}</b> <span class="dim">${esc(s.namespace)}${s.promotion === "manual" ? ", manual" : ""}</span><br>${s.steps.map((st) => `<span class="step ${st.state}">${esc(st.label)}</span>`).join("")}</div>`).join("");
  const rb = d.riskBudget && d.riskBudget.maxPercent !== undefined
    ? `<span class="meter"><div style="width:${Math.min(100, ((d.riskBudget.usedPercent || 0) / d.riskBudget.maxPercent) * 100)}%"></div></span> ${num(d.riskBudget.usedPercent, 2)}% of ${num(d.riskBudget.maxPercent, 2)}%`
    : '<span class="dim">no risk budget on this stage</span>';
  const ap = d.approvals.required ? `<p>${d.approvals.given.length} of ${d.approvals.required} approvals${d.approvals.message ? " (" + esc(d.approvals.message) + ")" : ""}</p>` + table(["When", "By", "Reason"], d.approvals.given.map((a) => [ago(a.at), esc(a.by), esc(a.reason)])) : '<p class="dim">this stage needs no approvals</p>';
  const actions = d.readOnly ? "" : `<div class="actions card">${["promote", "pause", "resume", "approve", "abort"].map((a) => `<button data-action="${a}" class="${a === "abort" ? "danger" : ""}">${a}</button>`).join("")}</div>`;
  const gates = d.gateStatus.map((g) => [esc(g.name), num(g.value, 3), `<span class="${cls("result", g.result)}">${esc(g.result || "-")}</span>`, esc(g.failures), esc(g.inconclusives), ago(g.evaluatedAt), esc(g.message)]);
  return `<h2>StrategyRollout ${esc(d.namespace)}/${esc(d.name)} <span class="${cls("phase", d.phase)}" id="phase">${esc(d.phase)}</span></h2>
  <p>${esc(d.reason || "")} ${esc(d.message || "")}</p>
  <p>strategy <b>${esc(d.strategy)}</b>: stable ${esc(d.stable)} → canary ${esc(d.canary)}, stage ${esc(d.stage || "-")}, step ${esc(d.step)}, weight ${d.weight === null ? "-" : d.weight + "%"}</p>
  ${actions}
  <h2>Stages</h2><div class="timeline">${tl}</div>
  <h2>Symbol map</h2><div id="symbols">${symbolMap(d.symbolMap)}</div>
  <h2>Gates</h2><div class="grid" id="gate-charts">${d.gateLines.map((g, i) => `<div class="card chart" id="gate-${i}" data-gate="${esc(g.name)}"></div>`).join("")}</div>
  ${table(["Gate", "Value", "Result", "Failures", "Inconclusive", "Evaluated", "Message"], gates)}
  ${keysHtml(d)}
  <h2>Risk budget</h2><p>${rb}</p>
  <h2>Approvals</h2>${ap}
  <h2>Requests</h2>${requestsHtml(d.requests)}
  <h2>History</h2>${table(["When", "Version", "Outcome", "By", "Reason"], d.history.map((h) => [ago(h.at), esc(h.version), esc(h.outcome), esc(h.by || "-"), esc(h.reason)]))}`;
}

// Per-key gates (docs/keys.md): each gate's scoreboard, worst key first, and the quarantined keys.
function keysHtml(d) {
  const boards = d.gateStatus.filter((g) => g.keys && g.keys.length).map((g) =>
    `<h3>Keys of gate ${esc(g.name)}</h3>` + table(["Key", "Canary", "Stable", "Result"],
      g.keys.map((k) => [esc(k.key), num(k.canary, 3), num(k.stable, 3), `<span class="${cls("result", k.result)}">${esc(k.result)}</span>`])));
  const q = d.quarantined.length
    ? `<h3>Quarantined keys</h3>` + table(["Key", "Gate", "Value", "Since"], d.quarantined.map((k) => [esc(k.key), esc(k.gate), num(k.value, 3), ago(k.at)]))
    : "";
  return boards.length || q ? `<h2>Keys</h2><div id="keys">${boards.join("")}${q}</div>` : "";
}

function requestsHtml(r) {
  const pending = r.pending.map((q) => [ago(q.at), esc(q.action), esc(q.by), '<span class="outcome-Superseded">Pending</span>', esc(q.reason), ""]);
  const handled = r.handled.map((h) => [ago(h.at), esc(h.action), esc(h.by), `<span class="outcome-${esc(h.outcome)}">${esc(h.outcome)}</span>`, esc(h.reason), esc(h.message)]);
  return table(["When", "Action", "By", "Outcome", "Reason", "Message"], pending.concat(handled));
}

// A webhook gate has no series: its results over time as the dashboard saw them, one tick each.
function resultTimeline(el, title, got) {
  const tl = got.timeline || [];
  el.dataset.points = String(tl.length);
  const ticks = tl.map(([t, r, v]) => `<span class="tick ${cls("result", r)}" title="${esc(new Date(t * 1000).toLocaleTimeString())}: ${esc(r)}${v === null ? "" : " (" + esc(v) + ")"}"></span>`).join("");
  el.innerHTML = `<div class="chart-title"><b>${esc(title)}</b></div>${tl.length ? `<div class="ticks">${ticks}</div>` : ""}<div class="dim">${esc(got.note)}${tl.length ? `: ${tl.length} since ${esc(new Date(tl[0][0] * 1000).toLocaleTimeString())}` : " (none yet)"}</div>`;
}

// A sequential judge: its confidence sequence for canary - stable narrowing over the step, with zero and
// the margin as lines and the decision marked where (and when) it was made.
function sequenceChart(el, title, got) {
  const q = got.sequence;
  const at = (ys) => q.t.map((t, i) => [t, ys[i]]);
  const lines = [
    { label: "upper bound", points: at(q.upper), color: "#3b6fd8" },
    { label: "lower bound", points: at(q.lower), color: "#3b6fd8" },
    { label: "canary - stable", points: at(q.effect), color: "#e8891b" },
    { label: "0", value: 0, color: "#555555", dash: [2, 3] },
  ];
  if (q.margin !== null && q.margin !== undefined) lines.push({ label: `margin ${num(q.margin, 3)}`, value: q.margin, color: "#d93025", dash: [6, 4] });
  const when = q.decidedAt === null ? "" : ` at ${new Date(q.decidedAt * 1000).toLocaleTimeString()}`;
  if (q.decidedAt !== null) {
    const i = q.t.indexOf(q.decidedAt);
    lines.push({ label: `${q.result}${when}`, points: [[q.decidedAt, i >= 0 ? q.effect[i] : 0]], color: q.result === "Fail" ? "#d93025" : "#188038", marker: true });
  }
  el.dataset.decision = q.result;
  el.dataset.sequence = String(q.t.length);
  const errors = ["stable", "canary"].filter((k) => got[k] && got[k].error).map((k) => `${k}: ${got[k].error}`);
  chart(el, `${title}: sequential judge, worse when ${got.worseWhen}: ${q.result}${when}`, lines, { note: errors.concat(q.t.length ? [] : [q.message]).join("; ") });
}

const seriesOf = (d) => api(`/api/${d.kind}/${encodeURIComponent(d.namespace)}/${encodeURIComponent(d.name)}/series`);

function rolloutCharts(d, s) {
  d.gateLines.forEach((g, i) => {
    const el = document.getElementById(`gate-${i}`);
    if (!el) return;
    const got = (s.gates || {})[g.name];
    if (!got) { el.dataset.points = "0"; el.innerHTML = `<div class="dim">${esc(g.name)}: nothing to plot (see the table)</div>`; return; }
    el.dataset.kind = got.resolvedKind || got.kind;
    const title = got.template ? `${g.name} (${got.template})` : g.name;
    if (got.timeline) { resultTimeline(el, title, got); return; }
    if (got.sequence) { sequenceChart(el, title, got); return; }
    if (got.stable || got.canary) {  // a judge: both versions over its window
      const lines = [
        { label: `stable ${d.stable}`, points: (got.stable || {}).points || [], color: "#3b6fd8" },
        { label: `canary ${d.canary}`, points: (got.canary || {}).points || [], color: "#e8891b" },
      ];
      const errors = ["stable", "canary"].filter((k) => got[k] && got[k].error).map((k) => `${k}: ${got[k].error}`);
      chart(el, `${title}: judge over ${got.window}, worse when ${got.worseWhen}`, lines, { note: errors.join("; ") });
      return;
    }
    if (!got.value) { el.dataset.points = "0"; el.innerHTML = `<div class="dim">${esc(title)}: ${esc(got.note || "nothing to plot")}</div>`; return; }
    const threshold = got.threshold ?? g.threshold, op = got.op ?? g.op, more = got.maxIncreasePercent ?? g.maxIncreasePercent;
    const lines = [{ label: g.name, points: got.value.points, color: "#e8891b" }];
    if (threshold !== null && threshold !== undefined) lines.push({ label: `threshold ${op} ${threshold}`, value: threshold, color: "#d93025", dash: [6, 4] });
    if (got.baseline) {
      lines.push({ label: "baseline", points: got.baseline.points, color: "#3b6fd8" });
      if (more !== undefined && more !== null) {
        lines.push({ label: `baseline +${more}%`, points: got.baseline.points.map(([t, v]) => [t, v * (1 + more / 100)]), color: "#d93025", dash: [6, 4] });
      }
    }
    chart(el, title, lines, { note: got.value.error });
  });
}

// ---- one shadow run / parity check -------------------------------------------------------------

function shadowHtml(d) {
  const mm = d.decisions ? Object.entries(d.decisions.mismatches || {}).map(([k, v]) => ({ label: k, value: v })) : [];
  const ex = d.worstExamples.map((e) => [esc(e.kind), esc(e.key.join(" ")), esc(e.live ? `${e.live.side} ${e.live.quantity}@${e.live.price}` : "-"), esc(e.shadow ? `${e.shadow.side} ${e.shadow.quantity}@${e.shadow.price}` : "-"), num(e.priceBps, 2), num(e.quantityPercent, 2)]);
  const lat = Object.entries(d.latencyProfile).map(([stage, s]) => [esc(stage), num((s.live || {}).p95, 2), num((s.shadow || {}).p95, 2), num(s.budgetP95, 2), num(s.regressionPercent, 1) + "%", `<span class="${cls("result", s.result)}">${esc(s.result || "-")}</span>`]);
  return `<h2>ShadowRun ${esc(d.namespace)}/${esc(d.name)} <span class="${cls("phase", d.phase)}">${esc(d.phase)}</span> verdict <span id="verdict" class="${cls("verdict", d.verdict)}">${esc(d.verdict || "-")}</span></h2>
  <p>${esc(d.message || "")}</p>
  <h2>Reasons</h2>${d.reasons.length ? `<ul>${d.reasons.map((r) => `<li>${esc(r)}</li>`).join("")}</ul>` : '<p class="dim">none yet</p>'}
  <h2>Decisions</h2><p>${d.decisions ? `${pct(d.decisions.matchRate, 2)} matched of ${d.decisions.compared} compared (${d.decisions.pending} pending, ${d.decisions.malformed} malformed)` : '<span class="dim">no decisions compared</span>'}</p>
  <div class="card chart" id="match-chart"></div>
  <h2>Mismatches</h2>${mm.length ? bars(mm, "") : '<p class="dim">none</p>'}
  <h2>Worst examples</h2>${table(["Kind", "Key", "Live", "Shadow", "Price bps", "Qty %"], ex)}
  <h2>Latency per stage (p95) vs budget</h2><div id="latency-bars">${lat.length ? bars(Object.entries(d.latencyProfile).flatMap(([stage, s]) => [{ label: `${stage} live`, value: (s.live || {}).p95 }, { label: `${stage} shadow`, value: (s.shadow || {}).p95 }, { label: `${stage} budget`, value: s.budgetP95 }]), "") : ""}</div>
  ${table(["Stage", "Live p95", "Shadow p95", "Budget p95", "Regression", "Result"], lat)}
  <h2>KPIs</h2>${table(["KPI", "Value", "Result", "Message"], d.kpis.map((k) => [esc(k.name), num(k.value, 3), `<span class="${cls("result", k.result)}">${esc(k.result || "-")}</span>`, esc(k.message)]))}`;
}

function shadowCharts(d, s) {
  const points = s.points && s.points.length ? s.points : d.watchedMatchRate;
  const lines = [{ label: "match rate", points, color: "#1967d2" }];
  if (d.minMatchRate !== null) lines.push({ label: `min ${d.minMatchRate}`, value: d.minMatchRate, color: "#d93025", dash: [6, 4] });
  chart($("#match-chart"), "match rate", lines, { note: s.error });
}

function parityHtml(d) {
  const attr = Object.entries(d.attribution).map(([k, v]) => ({ label: k, value: v }));
  const acts = d.actionsTaken.map((a) => [ago(a.at), esc(a.action), `<span class="${cls("level", a.level)}">${esc(a.level)}</span>`, esc(a.state), esc(a.target || "-"), esc(a.message || a.reason || "")]);
  return `<h2>ParityCheck ${esc(d.namespace)}/${esc(d.name)} <span class="${cls("phase", d.phase)}">${esc(d.phase)}</span> level <span class="${cls("level", d.level)}">${esc(d.level || "-")}</span></h2>
  <p>tracking error ${num(d.trackingErrorBps)} bps; next run ${esc(d.nextRunAt || "-")}. ${esc(d.message || "")}</p>
  <div class="card chart" id="te-chart"></div>
  <h2>Attribution (last run, bps)</h2>${attr.length ? bars(attr, "bps") : '<p class="dim">none</p>'}
  <h2>Actions taken</h2><p>in force: ${esc(d.activeActions.join(", ") || "none")}</p>${table(["When", "Action", "Level", "State", "Target", "Message"], acts)}
  <h2>Requests</h2>${requestsHtml(d.requests)}`;
}

function parityCharts(d) {
  const pts = d.runs.filter((r) => r.te !== null).map((r) => [r.at, r.te]);
  const t = d.thresholds;
  chart($("#te-chart"), "tracking error (bps)", [
    { label: "tracking error", points: pts, color: "#1967d2" },
    { label: `warning ${t.warning}`, value: t.warning, color: "#f9ab00", dash: [6, 4] },
    { label: `critical ${t.critical}`, value: t.critical, color: "#d93025", dash: [6, 4] },
    { label: `emergency ${t.emergency}`, value: t.emergency, color: "#7b1fa2", dash: [2, 2] },
  ]);
}

// ---- detail pages ------------------------------------------------------------------------------

// [page html, charts drawn into it, the series they need (fetched before the page is replaced: no blank charts)]
const DETAIL = {
  strategyrollouts: [rolloutHtml, rolloutCharts, seriesOf],
  shadowruns: [shadowHtml, shadowCharts, seriesOf],
  paritychecks: [parityHtml, parityCharts, null],
};

async function detailPage(kind, ns, name) {
  const d = await api(`/api/${kind}/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`);
  state.readOnly = d.readOnly;
  const [html, charts, load] = DETAIL[kind];
  const s = load ? await load(d) : null;
  destroyCharts();
  $("#main").innerHTML = html(d);
  window.__dash.renders++;
  for (const b of document.querySelectorAll("button[data-action]")) b.addEventListener("click", () => act(d, b.dataset.action));
  charts(d, s);
}

async function act(d, action) {
  const dlg = $("#confirm");
  $("#confirm-title").textContent = `${action} ${d.namespace}/${d.name}?`;
  $("#confirm-text").textContent = `This asks the operator to ${action} (a request in status.requests, by you).`;
  $("#confirm-reason").value = "";
  $("#confirm-reason").required = action === "abort" || action === "approve";
  dlg.returnValue = "";
  dlg.showModal();
  await new Promise((resolve) => dlg.addEventListener("close", resolve, { once: true }));
  if (dlg.returnValue !== "ok") return;
  try {
    await api(`/api/strategyrollouts/${encodeURIComponent(d.namespace)}/${encodeURIComponent(d.name)}/requests`, {
      method: "POST", headers: { "Content-Type": "application/json", "X-Dashboard": "1" },
      body: JSON.stringify({ action, reason: $("#confirm-reason").value }),
    });
  } catch (e) {
    alert(`${action} failed: ${e.message}`);
  }
}

// ---- routing and live updates ------------------------------------------------------------------

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  destroyCharts();
  state.page = parts.length === 3 && DETAIL[parts[0]] ? { kind: parts[0], namespace: parts[1], name: parts[2] } : null;
  const load = state.page ? detailPage(state.page.kind, state.page.namespace, state.page.name) : listPage();
  load.catch((e) => { $("#main").innerHTML = `<p class="error">${esc(e.message)}</p>`; });
}

function onChange(ev) {
  const ch = JSON.parse(ev.data);
  window.__dash.updates++;
  window.__dash.last = { key: `${ch.kind}/${ch.namespace}/${ch.name}`, rv: ch.row ? ch.row.resourceVersion : null, at: Date.now() };
  if (!state.page) {
    listChange(ch);
    window.__dash.shown[window.__dash.last.key] = { rv: window.__dash.last.rv, at: Date.now() };
    return;
  }
  const p = state.page;
  if (p.kind === ch.kind && p.namespace === ch.namespace && p.name === ch.name) {
    clearTimeout(state.detailTimer);
    state.detailTimer = setTimeout(() => detailPage(p.kind, p.namespace, p.name).catch(() => {}), 100);
  }
}

function connect() {
  // an EventSource cannot send a header: the local token goes in its URL (no log, no history keeps it)
  const es = new EventSource("/api/events" + (token() ? `?token=${encodeURIComponent(token())}` : ""));
  es.addEventListener("hello", () => $("#live").className = "live on");
  es.addEventListener("change", onChange);
  // the token stopped being valid while the stream was open (in the cluster): back to the sign-in page
  es.addEventListener("signedOut", () => { es.close(); $("#live").className = "live off"; location.assign("/"); });
  es.onerror = () => { $("#live").className = "live off"; };
}

window.addEventListener("hashchange", route);
route();
connect();
