// The jobs page: every job with its status, steps and last loss (refreshed while the tab is
// visible), cancel and resume buttons, and the form that submits a new job from a preset.

import { ApiError, api, jobsOf, query } from "../api.js";
import { ACTIVE, clear, fmtDuration, fmtInt, fmtNum, fmtTime, h, plannedSteps, progressBar, statusBadge } from "../dom.js";
import { SpecEditor, pathText } from "../spec_editor.js";

const PAGE_SIZE = 20;
const REFRESH_MS = 1500;
const STATUSES = ["", "queued", "running", "succeeded", "failed", "cancelled", "interrupted"];
// cancelled, failed and succeeded are final; a job stopped by a server shutdown or crash continues
const RESUMABLE = new Set(["interrupted"]);

export class JobsPage {
  constructor(root) {
    this.root = root;
    this.offset = 0;
    this.status = "";
    this.timer = null;
    this.busy = new Set(); // job ids with a cancel/resume in flight
    this.highlight = null;
    this.render();
    this.refresh();
    this.loadPresets();
    this.onVisible = () => document.visibilityState === "visible" && this.refresh();
    document.addEventListener("visibilitychange", this.onVisible);
  }

  destroy() {
    this.destroyed = true;
    clearTimeout(this.timer);
    document.removeEventListener("visibilitychange", this.onVisible);
  }

  render() {
    const filter = h("select", { "aria-label": "filter by status", onchange: (e) => {
      this.status = e.target.value;
      this.offset = 0;
      this.refresh();
    } }, STATUSES.map((st) => h("option", { value: st }, st || "all statuses")));
    this.tbody = h("tbody");
    this.pager = h("div", { class: "pager" });
    this.listMessage = h("p", { class: "muted list-message" });
    this.root.append(
      h("section", { class: "card" },
        h("header", { class: "card-head" }, h("h2", {}, "Jobs"), filter),
        h("div", { class: "table-wrap" },
          h("table", { class: "jobs" },
            h("thead", {}, h("tr", {}, ["#", "name", "status", "steps", "last loss", "created", "run time", ""].map(
              (c) => h("th", {}, c)))),
            this.tbody)),
        this.listMessage,
        this.pager),
      this.renderForm());
  }

  renderForm() {
    this.presetSelect = h("select", { name: "preset", "aria-label": "preset", onchange: () => this.choosePreset() });
    this.presetInfo = h("p", { class: "muted preset-info" });
    this.submitButton = h("button", { type: "submit", class: "primary" }, "Submit job");
    this.formMessage = h("div", { class: "form-message", role: "status" });
    this.optimizerHelp = h("div", { class: "optimizer-help muted" });
    const form = h("form", { class: "card new-job", onsubmit: (e) => {
      e.preventDefault();
      this.submit();
    } },
      h("header", { class: "card-head" }, h("h2", {}, "New job"),
        h("label", { class: "inline" }, "start from preset ", this.presetSelect)),
      this.presetInfo);
    this.editor = new SpecEditor(form, { onChange: () => this.showOptimizerHelp() });
    form.append(this.optimizerHelp, h("div", { class: "form-actions" }, this.submitButton, this.formMessage));
    return form;
  }

  async loadPresets() {
    try {
      const [presets, optimizers] = await Promise.all([api("/presets"), api("/optimizers").catch(() => null)]);
      this.presets = Array.isArray(presets) ? presets : presets.presets ?? Object.entries(presets).map(
        ([name, p]) => ({ name, ...p }));
      this.optimizers = optimizers;
      clear(this.presetSelect);
      for (const p of this.presets) this.presetSelect.append(h("option", { value: p.name }, p.name));
      this.choosePreset();
    } catch (e) {
      this.presetInfo.textContent = `presets unavailable: ${e.message}`;
    }
  }

  choosePreset() {
    const preset = this.presets?.find((p) => p.name === this.presetSelect.value);
    if (!preset) return;
    this.presetInfo.textContent = preset.description || "";
    this.editor.setSpec(preset.spec);
    this.formMessage.textContent = "";
    this.showOptimizerHelp();
  }

  /** The chosen optimizer's hyperparameters and defaults (from GET /optimizers), under the editor. */
  showOptimizerHelp() {
    clear(this.optimizerHelp);
    let name = null;
    try {
      name = JSON.parse(this.editor.text)?.optimizer?.name;
    } catch {
      return;
    }
    const list = Array.isArray(this.optimizers) ? this.optimizers : this.optimizers?.optimizers;
    const opt = list?.find((o) => o.name === name);
    if (!opt) return;
    const hyper = opt.hyperparameters ?? [];
    const items = Array.isArray(hyper)
      ? hyper.map((p) => ({ name: p.name, value: p.default, title: [p.doc, p.allowed].filter(Boolean).join("; ") }))
      : Object.entries(hyper).map(([name, value]) => ({ name, value }));
    this.optimizerHelp.append(h("span", { title: opt.summary ?? "" }, `${name} takes: `),
      ...items.map((p) => h("code", { class: "hyper", title: p.title ?? "" },
        `${p.name}${p.value === undefined ? "" : ` = ${JSON.stringify(p.value)}`}`)));
  }

  async submit() {
    const spec = this.editor.parse();
    this.formMessage.className = "form-message";
    if (spec === null) {
      this.formMessage.textContent = "Fix the JSON first.";
      this.formMessage.classList.add("error");
      return;
    }
    this.submitButton.disabled = true;
    this.formMessage.textContent = "submitting…";
    try {
      // a fresh key per click: a retried request cannot make a second job
      const job = await api("/jobs", { method: "POST", body: spec, headers: { "Idempotency-Key": crypto.randomUUID() } });
      this.highlight = job.id;
      this.formMessage.classList.add("ok");
      clear(this.formMessage).append(`Job #${job.id} submitted · `, h("a", { href: `#/jobs/${job.id}` }, "open it"));
      this.offset = 0;
      this.refresh();
    } catch (e) {
      this.formMessage.classList.add("error");
      const fields = e instanceof ApiError ? e.fields.filter((f) => f.path.length) : [];
      this.editor.showErrors(fields.length ? fields : [{ path: [], message: e.message }]);
      this.formMessage.textContent = fields.length
        ? `The server refused the spec: ${fields.length} field${fields.length > 1 ? "s" : ""} to fix (${fields.map((f) => pathText(f.path)).join(", ")}).`
        : `The server refused the job: ${e.message}`;
    } finally {
      this.submitButton.disabled = false;
    }
  }

  async refresh() {
    clearTimeout(this.timer);
    const seq = (this.seq = (this.seq || 0) + 1); // only the newest answer is shown
    try {
      const data = await api(`/jobs${query({ status: this.status, limit: PAGE_SIZE, offset: this.offset })}`);
      if (seq !== this.seq || this.destroyed) return;
      this.showJobs(jobsOf(data), data);
      this.listMessage.textContent = "";
    } catch (e) {
      if (seq !== this.seq || this.destroyed) return;
      this.listMessage.textContent = `cannot list jobs: ${e.message}`;
    }
    // polling stops while the tab is hidden; visibilitychange starts it again
    if (document.visibilityState === "visible") this.timer = setTimeout(() => this.refresh(), REFRESH_MS);
  }

  showJobs(jobs, data) {
    clear(this.tbody);
    if (!jobs.length) {
      this.tbody.append(h("tr", {}, h("td", { colspan: 8, class: "muted empty" },
        this.status ? `no ${this.status} jobs` : "no jobs yet: submit one below")));
    }
    // Rows are rebuilt on every refresh, but a row's buttons are kept while they stay the same, so a
    // click that straddles a refresh still lands on the button it started on.
    const previous = this.actionCells ?? new Map();
    this.actionCells = new Map();
    for (const job of jobs) {
      const tr = this.row(job);
      const fresh = tr.querySelector(".row-actions");
      const kept = previous.get(job.id);
      if (kept && kept.dataset.key === fresh.dataset.key) fresh.replaceWith(kept);
      this.actionCells.set(job.id, tr.querySelector(".row-actions"));
      this.tbody.append(tr);
    }
    const total = data?.total ?? data?.count ?? null;
    clear(this.pager);
    if (this.offset > 0 || jobs.length === PAGE_SIZE) {
      this.pager.append(
        h("button", { type: "button", disabled: this.offset === 0, onclick: () => this.page(-1) }, "‹ newer"),
        h("span", { class: "muted" }, `${this.offset + 1}–${this.offset + jobs.length}${total !== null ? ` of ${total}` : ""}`),
        h("button", { type: "button", disabled: jobs.length < PAGE_SIZE || (total !== null && this.offset + PAGE_SIZE >= total),
          onclick: () => this.page(1) }, "older ›"));
    }
  }

  page(direction) {
    this.offset = Math.max(0, this.offset + direction * PAGE_SIZE);
    this.refresh();
  }

  row(job) {
    const total = plannedSteps(job);
    const busy = this.busy.has(job.id);
    const actions = h("td", { class: "row-actions", "data-key": `${job.status}:${busy}` });
    if (ACTIVE.has(job.status)) {
      actions.append(h("button", { type: "button", class: "danger", "data-action": "cancel", disabled: busy,
        onclick: () => this.act(job.id, "cancel") }, "Cancel"));
    }
    if (RESUMABLE.has(job.status)) {
      actions.append(h("button", { type: "button", "data-action": "resume", disabled: busy,
        onclick: () => this.act(job.id, "resume") }, "Resume"));
    }
    return h("tr", { "data-job": job.id, "data-status": job.status, class: job.id === this.highlight ? "highlight" : "" },
      h("td", { class: "num" }, h("a", { href: `#/jobs/${job.id}` }, job.id)),
      h("td", {}, h("a", { href: `#/jobs/${job.id}`, class: "job-name" }, job.name ?? job.spec?.name ?? "job"),
        job.error ? h("div", { class: "error-text", title: job.error }, job.error) : null),
      h("td", {}, statusBadge(job.status, true)),
      h("td", { class: "steps" }, progressBar(job.steps_done ?? 0, total),
        h("span", { class: "num" }, `${fmtInt(job.steps_done ?? 0)}${total ? ` / ${fmtInt(total)}` : ""}`)),
      h("td", { class: "num loss" }, fmtNum(job.last_loss)),
      h("td", { class: "muted" }, fmtTime(job.created_at)),
      h("td", { class: "muted" }, fmtDuration(job.started_at, job.finished_at)),
      actions);
  }

  async act(id, action) {
    this.busy.add(id);
    this.refresh();
    try {
      await api(`/jobs/${id}/${action}`, { method: "POST" });
      this.listMessage.textContent = "";
    } catch (e) {
      this.listMessage.textContent = `${action} #${id}: ${e.message}`;
    } finally {
      this.busy.delete(id);
      this.refresh();
    }
  }
}
