// Small DOM and formatting helpers shared by every page.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** h("a", {href: "#/", class: "x"}, "text", child) -> an HTML element. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** The same for SVG elements (they need the SVG namespace). */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** Numbers as people read them: 6 significant digits, exponent only when tiny or huge. */
export function fmtNum(v, digits = 6) {
  if (v === null || v === undefined || v === "") return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "∞" : "−∞";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-4) return v.toExponential(Math.max(digits - 3, 2)).replace("e+", "e");
  return String(Number(v.toPrecision(digits)));
}

/** Step counts with thin separators: 1000000 -> "1,000,000". */
export function fmtInt(v) {
  if (v === null || v === undefined) return "–";
  return Number(v).toLocaleString("en-US");
}

export function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  const time = d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return sameDay ? time : `${d.toISOString().slice(0, 10)} ${time}`;
}

export function fmtDuration(fromIso, toIso) {
  if (!fromIso) return "–";
  const ms = (toIso ? new Date(toIso) : new Date()) - new Date(fromIso);
  if (!Number.isFinite(ms) || ms < 0) return "–";
  const sec = ms / 1000;
  if (sec < 60) return `${sec.toFixed(1)} s`;
  if (sec < 3600) return `${Math.floor(sec / 60)} min ${Math.round(sec % 60)} s`;
  return `${Math.floor(sec / 3600)} h ${Math.round((sec % 3600) / 60)} min`;
}

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
export const ACTIVE = new Set(["queued", "running"]);

/** A coloured status label; `live` marks the job's current state (a running one pulses). */
export function statusBadge(status, live = false) {
  return h("span", { class: `badge status-${status}${live ? " live" : ""}`, "data-status": status }, status);
}

/** The number of steps a spec asks for, when it says so directly (epochs depend on the data size). */
export function plannedSteps(job) {
  if (job.total_steps) return job.total_steps;
  const spec = job.spec || {};
  return Number.isInteger(spec.steps) ? spec.steps : null;
}

export function progressBar(done, total) {
  const pct = total ? Math.min(100, (100 * done) / total) : 0;
  return h("span", { class: "progress", title: total ? `${fmtInt(done)} of ${fmtInt(total)} steps` : "" },
    h("span", { class: "progress-fill", style: { width: `${pct}%` } }));
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
