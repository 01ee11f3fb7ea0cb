// One job: its loss, learning rate and gradient-norm curves (validation loss and accuracy when the
// job has them), per-parameter gradient norms and the gradient distribution over time. Every plot asks the API for at most one point per pixel of the
// step range on show (zooming re-queries), so a 1,000,000-step job costs the same as a 100-step one.

import { api, query } from "../api.js";
import { Chart, PALETTE } from "../charts.js";
import { ACTIVE, TERMINAL, clear, fmtDuration, fmtInt, fmtNum, fmtTime, h, plannedSteps, progressBar, statusBadge }
  from "../dom.js";
import { subscribe } from "../events.js";
import { formatJson } from "../spec_editor.js";
import { columns, distribution } from "../series.js";

// Live updates re-query at most once a second, and never spend more than a fifth of the time
// waiting on the server (a 1,000,000-step job's queries take a while; the server has other work).
const REFRESH_MIN_MS = 1000;
const REFRESH_BUSY_FACTOR = 5;
// cancelled, failed and succeeded are final; a job stopped by a server shutdown or crash continues
const RESUMABLE = new Set(["interrupted"]);

/** Parameter names: from the job once it ran, else from its spec (w1, b1, w2, b2, ...). */
function paramNames(job) {
  if (Array.isArray(job.param_names) && job.param_names.length) return job.param_names;
  const layers = job.spec?.model?.layers ?? [];
  return layers.flatMap((_, i) => [`w${i + 1}`, `b${i + 1}`]);
}

function modelSummary(spec) {
  const layers = spec?.model?.layers ?? [];
  return layers.map((l) => `${l.units} ${l.activation ?? ""}`.trim()).join(" → ") || "–";
}

/** {name: "sgd", lr: 0.5, schedule: {name: "cosine", t_max: 1000}} -> "sgd · lr 0.5 · schedule cosine (t_max 1000)". */
function optimizerSummary(spec) {
  const value = (v) => {
    if (v === null || typeof v !== "object") return String(v);
    if (Array.isArray(v)) return `[${v.map(value).join(", ")}]`;
    const rest = Object.entries(v).filter(([k]) => k !== "name").map(([k, x]) => `${k} ${value(x)}`);
    return `${v.name ?? ""}${rest.length ? ` (${rest.join(", ")})` : ""}`.trim();
  };
  const o = spec?.optimizer;
  if (!o) return "–";
  return [o.name, ...Object.entries(o).filter(([k]) => k !== "name").map(([k, v]) => `${k} ${value(v)}`)].join(" · ");
}

export function parseRange(params) {
  const int = (v) => (v !== null && /^\d+$/.test(v) ? Number(v) : null);
  const start = int(params.get("start"));
  const end = int(params.get("end"));
  return { start, end: end !== null && start !== null && end < start ? null : end };
}

export class JobPage {
  constructor(root, { id, params }) {
    this.root = root;
    this.id = id;
    this.range = parseRange(params);
    this.seq = 0;
    this.pending = null;
    this.lastRefresh = 0;
    this.stream = null;
    this.charts = {};
    this.selected = null; // parameters shown in the per-parameter chart
    this.distParam = null;
    this.root.append(h("p", { class: "muted" }, `loading job ${id}…`));
    this.load();
  }

  destroy() {
    this.destroyed = true;
    clearTimeout(this.pending);
    if (this.stream) this.stream.close();
    if (this.controller) this.controller.abort();
    Object.values(this.charts).forEach((c) => c.destroy());
  }

  /** The hash changed within this job (a zoom): re-query the new range. */
  update({ params }) {
    this.range = parseRange(params);
    this.renderRange();
    this.refresh();
  }

  async load() {
    try {
      this.job = await api(`/jobs/${this.id}`);
    } catch (e) {
      clear(this.root).append(h("section", { class: "card" }, h("h2", {}, `Job ${this.id}`),
        h("p", { class: "error-text" }, e.message), h("a", { href: "#/" }, "‹ all jobs")));
      return;
    }
    if (this.destroyed) return;
    const names = paramNames(this.job);
    this.selected = new Set(names.length <= 8 ? names : names.filter((n) => n.startsWith("w")).slice(0, 4));
    this.distParam = names[0] ?? null;
    this.render();
    this.refresh();
    this.follow();
  }

  render() {
    clear(this.root);
    this.header = h("section", { class: "card job-head" });
    this.rangeBar = h("section", { class: "card range-bar" });
    const grid = h("div", { class: "charts" });
    this.grid = grid;
    this.root.append(h("nav", { class: "crumbs" }, h("a", { href: "#/" }, "Jobs"), " › ", `#${this.id}`),
      this.header, this.rangeBar, grid);

    const nav = {
      onZoom: (lo, hi) => this.zoom(lo, hi),
      onReset: () => this.zoom(null, null),
      onPick: (step) => { location.hash = `#/jobs/${this.id}/steps/${step}`; },
    };
    this.charts.loss = new Chart(grid, { ...nav, id: "loss", title: "Loss", logToggle: true, height: 300 });
    this.nav = nav;
    if (this.job.spec?.validation) this.accuracyChart();
    this.charts.gradNorm = new Chart(grid, { ...nav, id: "grad-norm", title: "Global gradient norm", logToggle: true });
    this.charts.lr = new Chart(grid, { ...nav, id: "lr", title: "Learning rate" });
    this.charts.params = new Chart(grid, { ...nav, id: "param-norms", title: "Gradient norm per parameter", logToggle: true });
    this.charts.dist = new Chart(grid, { ...nav, id: "distribution", title: "Gradient distribution", height: 240 });
    this.renderPicker();
    this.renderDistPicker();
    this.transitions = h("tbody");
    this.root.append(h("div", { class: "job-foot" },
      h("section", { class: "card" }, h("h3", {}, "Status history"),
        h("table", { class: "data transitions" }, h("thead", {}, h("tr", {}, ["time", "status", "reason"].map((c) => h("th", {}, c)))),
          this.transitions)),
      h("details", { class: "card spec" }, h("summary", {}, "Job spec"), h("pre", {}, formatJson(this.job.spec ?? {})))));
    this.loadTransitions();
    this.renderHeader();
    this.renderRange();
  }

  /** The validation accuracy's own plot, beside the loss: made when the job has a validation set. */
  accuracyChart() {
    if (!this.charts.accuracy) {
      this.charts.accuracy = new Chart(this.grid, { ...this.nav, id: "val-accuracy", title: "Validation accuracy" });
      this.charts.loss.el.after(this.charts.accuracy.el);
    }
    return this.charts.accuracy;
  }

  renderPicker() {
    const extra = this.charts.params.extra;
    clear(extra);
    const names = paramNames(this.job);
    names.forEach((name, i) => {
      const on = this.selected.has(name);
      extra.append(h("button", { type: "button", class: `chip${on ? " active" : ""}`, "data-param": name,
        "aria-pressed": String(on), style: { "--chip": PALETTE[i % PALETTE.length] },
        onclick: () => {
          if (this.selected.has(name)) this.selected.delete(name);
          else this.selected.add(name);
          this.renderPicker();
          this.refresh();
        } }, name));
    });
  }

  renderDistPicker() {
    const extra = this.charts.dist.extra;
    clear(extra);
    const select = h("select", { "aria-label": "parameter", onchange: (e) => {
      this.distParam = e.target.value;
      this.refresh();
    } }, paramNames(this.job).map((n) => h("option", { value: n, selected: n === this.distParam }, n)));
    extra.append(h("label", { class: "inline" }, "parameter ", select));
  }

  renderHeader() {
    const job = this.job;
    const total = plannedSteps(job);
    const actions = h("div", { class: "actions" });
    if (ACTIVE.has(job.status)) {
      actions.append(h("button", { type: "button", class: "danger", "data-action": "cancel", onclick: () => this.act("cancel") }, "Cancel"));
    }
    if (RESUMABLE.has(job.status)) {
      actions.append(h("button", { type: "button", "data-action": "resume", onclick: () => this.act("resume") }, "Resume"));
    }
    // the server's rule (domain.can_delete): only a finished job; a running one is cancelled first
    const deletable = TERMINAL.has(job.status);
    actions.append(h("button", { type: "button", class: "danger", "data-action": "delete", disabled: !deletable,
      title: deletable ? "Delete this job and everything it recorded" : "Only a finished job can be deleted: cancel it first",
      onclick: () => this.remove() }, "Delete"));
    if (job.steps_done > 0) {
      actions.append(h("a", { class: "button", href: `#/jobs/${this.id}/steps/0` }, "Step 0 ›"),
        h("a", { class: "button", href: `#/jobs/${this.id}/steps/${job.steps_done - 1}` }, "Last step ›"));
    }
    const fact = (label, value, attrs = {}) => h("div", { class: "fact", ...attrs }, h("div", { class: "fact-label" }, label),
      h("div", { class: "fact-value" }, value));
    this.actionMessage = h("p", { class: "error-text action-message" });
    clear(this.header).append(
      h("div", { class: "job-title" }, h("h2", {}, `#${job.id} ${job.name ?? ""}`), statusBadge(job.status, true), actions),
      h("div", { class: "facts" },
        fact("steps", [h("span", { class: "num", "data-steps-done": job.steps_done ?? 0 },
          `${fmtInt(job.steps_done ?? 0)}${total ? ` / ${fmtInt(total)}` : ""}`), progressBar(job.steps_done ?? 0, total)],
        { class: "fact wide" }),
        fact("last loss", fmtNum(job.last_loss), { "data-last-loss": job.last_loss ?? "" }),
        fact("model", modelSummary(job.spec)),
        fact("optimizer", optimizerSummary(job.spec), { class: "fact wide" }),
        fact("loss function", job.spec?.loss ?? "–"),
        fact("started", fmtTime(job.started_at)),
        fact("run time", fmtDuration(job.started_at, job.finished_at))),
      h("p", { class: "error-text job-error" }, job.error ?? ""),
      this.actionMessage);
  }

  renderRange() {
    if (!this.rangeBar) return;
    const from = h("input", { type: "number", min: 0, step: 1, value: this.range.start ?? "", placeholder: "first",
      "aria-label": "from step", class: "step-input" });
    const to = h("input", { type: "number", min: 0, step: 1, value: this.range.end ?? "", placeholder: "last",
      "aria-label": "to step", class: "step-input" });
    const open = h("input", { type: "number", min: 0, step: 1, placeholder: "step", "aria-label": "open step",
      class: "step-input" });
    this.rangeInfo = h("span", { class: "muted range-info" });
    clear(this.rangeBar).append(
      h("form", { class: "inline-form", onsubmit: (e) => {
        e.preventDefault();
        this.zoom(from.value === "" ? null : Number(from.value), to.value === "" ? null : Number(to.value));
      } }, h("strong", {}, "Steps "), from, " to ", to, h("button", { type: "submit" }, "Show"),
        h("button", { type: "button", disabled: this.range.start === null && this.range.end === null,
          onclick: () => this.zoom(null, null) }, "All steps")),
      h("form", { class: "inline-form open-step", onsubmit: (e) => {
        e.preventDefault();
        if (open.value !== "") location.hash = `#/jobs/${this.id}/steps/${Number(open.value)}`;
      } }, open, h("button", { type: "submit" }, "Open step")),
      this.rangeInfo,
      h("p", { class: "hint muted" }, "Drag across a plot to zoom into those steps, double-click for all steps, click a point to open its step."));
  }

  zoom(start, end) {
    const q = query({ start, end });
    const target = `#/jobs/${this.id}${q}`;
    if (location.hash !== target) location.hash = target; // the router calls update()
  }

  async act(action) {
    try {
      this.job = await api(`/jobs/${this.id}/${action}`, { method: "POST" });
      if (!this.job?.status) this.job = await api(`/jobs/${this.id}`);
      this.renderHeader();
      this.follow();
    } catch (e) {
      this.actionMessage.textContent = `${action}: ${e.message}`;
    }
  }

  /** Delete the job once the user confirms, then back to the job list; a refusal (409) is shown. */
  async remove() {
    const what = `job #${this.id}${this.job.name ? ` (${this.job.name})` : ""}`;
    if (!window.confirm(`Delete ${what} and everything it recorded? This cannot be undone.`)) return;
    try {
      await api(`/jobs/${this.id}`, { method: "DELETE" });
    } catch (e) {
      this.actionMessage.textContent = `delete: ${e.message}`;
      return;
    }
    location.hash = "#/";
  }

  // --- data --------------------------------------------------------------------------------

  /** Re-query every plot for the current range, at most one point per pixel. */
  async refresh() {
    clearTimeout(this.pending);
    this.pending = null;
    const began = performance.now();
    this.lastRefresh = began;
    const seq = ++this.seq;
    if (this.controller) this.controller.abort();
    this.controller = new AbortController();
    const signal = this.controller.signal;
    // one point per pixel of the plot that shows it
    const range = { start: this.range.start, end: this.range.end };
    const historyPoints = this.charts.loss.width();
    const gradientPoints = Math.max(this.charts.params.width(), this.charts.dist.width());
    const wanted = [...new Set([...this.selected, this.distParam].filter(Boolean))];
    try {
      const [history, ...grads] = await Promise.all([
        api(`/jobs/${this.id}/history${query({ ...range, max_points: historyPoints })}`, { signal }),
        ...wanted.map((p) => api(`/jobs/${this.id}/gradients${query({ param: p, ...range, max_points: gradientPoints })}`,
          { signal })),
      ]);
      if (seq !== this.seq || this.destroyed) return;
      const byParam = new Map(wanted.map((p, i) => [p, grads[i]?.points ?? []]));
      this.draw(history?.points ?? [], byParam);
      this.refreshCost = performance.now() - began;
    } catch (e) {
      if (e.name === "AbortError" || seq !== this.seq) return;
      if (this.rangeInfo) this.rangeInfo.textContent = `cannot load the history: ${e.message}`;
    }
  }

  /** Live updates: re-query soon, but not more often than REFRESH_MIN_MS, and only when the range
   * on show can still grow (a zoom into a fixed window of steps stays put). */
  refreshSoon() {
    if (this.pending || this.range.end !== null) return;
    const every = Math.max(REFRESH_MIN_MS, REFRESH_BUSY_FACTOR * (this.refreshCost ?? 0));
    const wait = Math.max(0, every - (performance.now() - this.lastRefresh));
    this.pending = setTimeout(() => this.refresh(), wait);
  }

  draw(points, byParam) {
    const xRange = this.range.start !== null && this.range.end !== null ? [this.range.start, this.range.end] : null;
    const c = columns(points, ["loss", "val_loss", "val_accuracy", "lr", "grad_norm"]);
    const opts = { picks: c.picks, xRange };
    const band = (col) => (c.bucketed ? [{ lo: col.lo, hi: col.hi }] : []);

    // validation runs every K steps: its series are lines through the steps (or buckets) that have one
    const loss = [{ label: "loss", color: PALETTE[0], values: c.loss.mean, bands: band(c.loss) }];
    if (c.val_loss.any) {
      loss.push({ label: "validation loss", color: PALETTE[4], values: c.val_loss.mean, dash: [6, 4], spanGaps: true });
    }
    this.charts.loss.setData(c.xs, loss, opts);
    if (c.val_accuracy.any || this.charts.accuracy) {
      this.accuracyChart().setData(c.xs, [{ label: "validation accuracy", color: PALETTE[4], values: c.val_accuracy.mean,
        spanGaps: true }], opts);
    }
    this.charts.gradNorm.setData(c.xs, [{ label: "‖∇J‖", color: PALETTE[3], values: c.grad_norm.mean, bands: band(c.grad_norm) }], opts);
    this.charts.lr.setData(c.xs, [{ label: "learning rate", color: PALETTE[2], values: c.lr.mean, bands: band(c.lr) }], opts);

    const names = paramNames(this.job);
    const perParam = [];
    let xs = null;
    let picks = null;
    names.forEach((name, i) => {
      if (!this.selected.has(name)) return;
      const g = columns(byParam.get(name) ?? [], ["norm"]);
      if (xs === null || g.xs.length > xs.length) ({ xs, picks } = g);
      perParam.push({ label: name, color: PALETTE[i % PALETTE.length], values: g.norm.mean, n: g.xs.length });
    });
    // every parameter is recorded at the same steps, so their columns line up; pad any still loading
    for (const line of perParam) while (line.values.length < (xs?.length ?? 0)) line.values.push(null);
    this.charts.params.setData(xs ?? [], perParam, { picks: picks ?? [], xRange });

    const d = distribution(byParam.get(this.distParam) ?? []);
    const color = PALETTE[Math.max(0, names.indexOf(this.distParam)) % PALETTE.length];
    this.charts.dist.setData(d.xs, [
      { label: "min … max", color, bands: [{ lo: d.min, hi: d.max, alpha: 0.14 }] },
      { label: "mean ± std", color, bands: [{ lo: d.minusStd, hi: d.plusStd, alpha: 0.32 }] },
      { label: `mean gradient of ${this.distParam}`, color, values: d.mean },
    ], { picks: d.picks, xRange });

    if (this.rangeInfo) {
      const span = c.first === null ? "no steps recorded yet" : `steps ${fmtInt(c.first)}–${fmtInt(c.last)}`;
      const per = c.bucketed && points.length ? Math.round((c.last - c.first + 1) / points.length) : 1;
      this.rangeInfo.textContent = c.first === null ? span
        : `${span} · ${fmtInt(points.length)} points${c.bucketed ? `, each ≈ ${fmtInt(per)} steps (line: mean, band: min–max)` : ", one per step"}`;
      this.rangeInfo.dataset.points = points.length;
      this.rangeInfo.dataset.bucketed = c.bucketed;
    }
  }

  // --- live --------------------------------------------------------------------------------

  follow() {
    if (this.stream || !ACTIVE.has(this.job.status)) return;
    this.stream = subscribe(`/jobs/${this.id}/events`, {
      onEvent: (ev) => this.onEvent(ev),
      onEnd: async () => {
        // the server ends the stream when the job ends; check, and reconnect if it did not
        await this.reloadJob();
        const again = ACTIVE.has(this.job.status) && !this.destroyed;
        if (!again) this.stream = null;
        return again;
      },
      onError: () => {
        this.stream = null;
      },
    });
  }

  async loadTransitions() {
    try {
      const data = await api(`/jobs/${this.id}/transitions`);
      if (this.destroyed) return;
      clear(this.transitions).append(...(data.transitions ?? []).map((tr) => h("tr", {},
        h("td", { class: "muted" }, fmtTime(tr.at)),
        h("td", {}, tr.from_status ? [statusBadge(tr.from_status), " → "] : null, statusBadge(tr.to_status)),
        h("td", {}, tr.reason ?? ""))));
    } catch {
      /* an older server without transitions: the table stays empty */
    }
  }

  async reloadJob() {
    try {
      this.job = await api(`/jobs/${this.id}`);
      if (!this.destroyed) this.renderHeader();
      this.loadTransitions();
    } catch {
      /* keep what we have */
    }
    this.refreshSoon();
  }

  onEvent({ event, data }) {
    if (!data || typeof data !== "object") return;
    // "status": the job on connect, then each change {from_status, to_status, steps_done};
    // "step": one recorded step {step, loss, ...}; "end": the job as it ended.
    const status = event === "step" ? undefined : data.to_status ?? data.status;
    const steps = data.steps_done ?? (event === "step" && Number.isInteger(data.step) ? data.step + 1 : undefined);
    const loss = event === "step" ? data.loss : data.last_loss;
    if (steps !== undefined && steps >= (this.job.steps_done ?? 0)) this.job.steps_done = steps;
    if (typeof loss === "number") this.job.last_loss = loss;
    if (status && status !== this.job.status) {
      this.job.status = status;
      this.reloadJob(); // timestamps, error message, buttons
      if (!ACTIVE.has(status)) this.refresh();
    }
    // a fast job sends thousands of steps a second: draw the header once per frame at most
    if (!this.headerFrame) {
      this.headerFrame = requestAnimationFrame(() => {
        this.headerFrame = null;
        if (!this.destroyed) this.renderHeader();
      });
    }
    this.refreshSoon();
  }
}
