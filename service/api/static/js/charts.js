// Line charts on uPlot (vendored, loaded as the global `uPlot`): lines with optional min/max bands,
// a linear/log toggle, drag-to-zoom that asks the page to re-query, click-to-pick a step.

import { clear, fmtInt, fmtNum, h } from "./dom.js";

export const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

export function alpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
}

/** A value the plot can draw: numbers stay, NaN/missing become gaps, and on a log axis so do values <= 0. */
function drawable(v, log) {
  if (typeof v !== "number" || !Number.isFinite(v)) return null;
  return log && v <= 0 ? null : v;
}

/** Step numbers short enough for an axis: 950, 12,500, 250k, 1.5M. */
export function fmtStep(n) {
  const a = Math.abs(n);
  if (a >= 1e6) return `${Number((n / 1e6).toPrecision(3))}M`;
  if (a >= 1e5) return `${Number((n / 1e3).toPrecision(3))}k`;
  return fmtInt(n);
}

/** uPlot's own padding, except that a flat series gets a small band around it (uPlot would show
 * 0..100 for a loss that sits at exactly 0). */
function linearRange(u, min, max) {
  if (min === null || max === null) return [0, 1];
  if (min === max) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    return [min >= 0 && min - pad < 0 ? 0 : min - pad, max + pad];
  }
  return uPlot.rangeNum(min, max, 0.1, true);
}

const AXIS = { stroke: "#334155", font: "13px system-ui, sans-serif", grid: { stroke: "#e2e8f0", width: 1 },
  ticks: { stroke: "#cbd5e1", width: 1 } };

export class Chart {
  /**
   * options: title, log (initial), logToggle (show the linear/log switch), height,
   * onZoom(lo, hi) when a step range is dragged, onPick(step) on click, onReset() on double click.
   */
  constructor(parent, options) {
    this.o = { height: 240, log: false, logToggle: false, ...options };
    this.log = this.o.log;
    this.plot = null;
    this.signature = "";
    this.lines = [];
    this.xs = [];
    this.picks = [];
    this.xRange = null;

    this.readout = h("div", { class: "chart-readout" });
    this.legend = h("div", { class: "chart-legend" });
    const tools = h("div", { class: "chart-tools" });
    if (this.o.logToggle) {
      this.scaleButtons = ["linear", "log"].map((mode) =>
        h("button", { class: "toggle", type: "button", "data-scale": mode, onclick: () => this.setLog(mode === "log") },
          mode));
      tools.append(h("span", { class: "segmented", role: "group", "aria-label": "y scale" }, this.scaleButtons));
    }
    this.extra = h("div", { class: "chart-extra" });
    tools.prepend(this.extra);
    this.canvasWrap = h("div", { class: "chart-canvas" });
    this.empty = h("div", { class: "chart-empty" }, "no data yet");
    this.el = h("section", { class: "card chart", "data-chart": this.o.id || "" },
      h("header", { class: "chart-head" }, h("h3", {}, this.o.title), tools),
      this.legend,
      h("div", { class: "chart-body" }, this.canvasWrap, this.empty),
      this.readout);
    parent.append(this.el);
    this.updateToggle();

    this.resizer = new ResizeObserver(() => {
      if (this.plot) this.plot.setSize(this.size());
    });
    this.resizer.observe(this.canvasWrap);
  }

  /** Pixels across the plot: what the page asks the API for as max_points. */
  width() {
    return Math.max(200, Math.floor(this.canvasWrap.clientWidth || 600));
  }

  size() {
    return { width: this.width(), height: this.o.height };
  }

  setLog(log) {
    if (log === this.log) return;
    this.log = log;
    this.updateToggle();
    this.render(true);
  }

  updateToggle() {
    if (!this.scaleButtons) return;
    for (const b of this.scaleButtons) b.classList.toggle("active", (b.dataset.scale === "log") === this.log);
  }

  /**
   * xs: step of each point; lines: [{label, color, values?, bands?: [{lo, hi, alpha}], width?, dash?,
   * spanGaps?}] (spanGaps: a series recorded at some steps only, drawn as one line through them);
   * picks: the recorded step a click on each point opens; xRange: [lo, hi] to pin the x axis.
   */
  setData(xs, lines, { picks = xs, xRange = null } = {}) {
    this.xs = xs;
    this.lines = lines;
    this.picks = picks;
    this.xRange = xRange;
    this.render(false);
  }

  destroy() {
    this.resizer.disconnect();
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }

  render(force) {
    const log = this.log;
    const series = [{ label: "step" }];
    const data = [this.xs];
    const bands = [];
    for (const line of this.lines) {
      for (const band of line.bands || []) {
        const hi = series.length;
        series.push({ label: `${line.label} max`, stroke: "transparent", width: 0, points: { show: false } });
        data.push(band.hi.map((v) => drawable(v, log)));
        series.push({ label: `${line.label} min`, stroke: "transparent", width: 0, points: { show: false } });
        data.push(band.lo.map((v) => drawable(v, log)));
        bands.push({ series: [hi, hi + 1], fill: alpha(line.color, band.alpha ?? 0.18) });
      }
      if (line.values) {
        const values = line.values.map((v) => drawable(v, log));
        // dots while they are few enough to tell apart: a sparse series counts its own points
        const shown = line.spanGaps ? values.filter((v) => v !== null).length : this.xs.length;
        series.push({ label: line.label, stroke: line.color, width: line.width ?? 2, dash: line.dash,
          points: { show: shown < 60, size: 5, fill: line.color }, spanGaps: Boolean(line.spanGaps) });
        data.push(values);
      }
    }
    this.empty.style.display = this.xs.length ? "none" : "";
    this.renderLegend();

    const signature = JSON.stringify([series.map((x) => [x.label, x.stroke, x.points?.show]), log]);
    if (this.plot && !force && signature === this.signature) {
      this.plot.setData(data);
      return;
    }
    this.signature = signature;
    if (this.plot) this.plot.destroy();
    clear(this.canvasWrap);
    const chart = this;
    this.plot = new uPlot({
      ...this.size(),
      series,
      bands,
      legend: { show: false },
      scales: {
        x: { time: false, range: (u, min, max) => chart.xRange ?? (min === max ? [min - 1, max + 1] : [min, max]) },
        y: log ? { distr: 3, log: 10 } : { range: linearRange },
      },
      axes: [
        { ...AXIS, label: "step", labelSize: 22, labelFont: "13px system-ui, sans-serif", space: 64,
          values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) ? fmtStep(t) : "")) },
        { ...AXIS, size: 72, values: (u, ticks) => ticks.map((t) => fmtNum(t, 3)) },
      ],
      // the plots share their step axis: the cursor moves along x on all of them
      cursor: { drag: { x: true, y: false, setScale: false }, sync: { key: "gradbook-steps", scales: ["x", null] },
        points: { size: 7 } },
      hooks: {
        setSelect: [(u) => chart.selected(u)],
        setCursor: [(u) => chart.showReadout(u.cursor.idx)],
      },
    }, data, this.canvasWrap);
    this.attachPointer();
  }

  selected(u) {
    const { left, width } = u.select;
    if (width > 4 && this.o.onZoom) {
      const lo = Math.max(0, Math.floor(u.posToVal(left, "x")));
      const hi = Math.ceil(u.posToVal(left + width, "x"));
      if (hi > lo) this.o.onZoom(lo, hi);
    }
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
  }

  attachPointer() {
    const over = this.plot.over;
    let downX = null;
    over.addEventListener("mousedown", (e) => {
      downX = e.clientX;
    });
    over.addEventListener("click", (e) => {
      const idx = this.plot.cursor.idx;
      if (downX !== null && Math.abs(e.clientX - downX) < 4 && idx !== null && idx !== undefined && this.o.onPick) {
        this.o.onPick(this.picks[idx]);
      }
      downX = null;
    });
    over.addEventListener("dblclick", () => this.o.onReset && this.o.onReset());
    over.title = [this.o.onZoom && "drag to zoom", this.o.onReset && "double-click for all steps",
      this.o.onPick && "click to open that step"].filter(Boolean).join(" · ");
  }

  renderLegend() {
    clear(this.legend);
    for (const line of this.lines) {
      const swatch = h("span", { class: "swatch", style: { background: line.values ? line.color : alpha(line.color, 0.35) } });
      this.legend.append(h("span", { class: "legend-item" }, swatch, line.label));
    }
  }

  showReadout(idx) {
    if (idx === null || idx === undefined || !this.xs.length) {
      this.readout.textContent = this.xs.length ? "point at the plot for values" : "\u00a0";
      this.readout.classList.add("idle");
      return;
    }
    this.readout.classList.remove("idle");
    const parts = [`step ${fmtInt(this.picks[idx])}`];
    for (const line of this.lines) {
      const band = (line.bands || [])[0];
      const range = band ? `[${fmtNum(band.lo[idx], 4)} … ${fmtNum(band.hi[idx], 4)}]` : "";
      if (!line.values) parts.push(`${line.label} ${range}`);
      else if (band && band.lo[idx] !== band.hi[idx]) parts.push(`${line.label} ${fmtNum(line.values[idx], 5)} ${range}`);
      else parts.push(`${line.label} ${fmtNum(line.values[idx], 5)}`);
    }
    this.readout.textContent = parts.join("   ·   ");
  }
}
