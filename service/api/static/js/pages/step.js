// One recorded step: its numbers, the computation graph with every node's value and derivative
// (small models), the numerical gradient check, and the full parameters and gradients as tables.

import { api } from "../api.js";
import { clear, fmtInt, fmtNum, h } from "../dom.js";
import { drawGraph } from "../graph.js";

const MAX_ROWS = 64; // cells beyond these are summarised, not drawn: a table of 10^6 cells helps no one
const MAX_COLS = 32;
const GRAPH_MAX_NODES = 80;

/** Any nested list as rows of numbers: scalars 1×1, vectors one row, matrices as they are. */
function rowsOf(value) {
  if (!Array.isArray(value)) return [[value]];
  if (!value.some(Array.isArray)) return [value];
  return value.map((r) => (Array.isArray(r) ? r.flat(Infinity) : [r]));
}

function shapeOf(value) {
  const shape = [];
  for (let v = value; Array.isArray(v); v = v[0]) shape.push(v.length);
  return shape;
}

function heat(v, scale) {
  if (typeof v !== "number" || !Number.isFinite(v) || scale === 0) return undefined;
  const a = Math.min(1, Math.abs(v) / scale) * 0.45;
  return v >= 0 ? `rgba(37, 99, 235, ${a})` : `rgba(220, 38, 38, ${a})`;
}

function matrix(value, label) {
  const rows = rowsOf(value);
  const shape = shapeOf(value);
  const flat = rows.flat();
  const scale = Math.max(0, ...flat.filter((v) => typeof v === "number" && Number.isFinite(v)).map(Math.abs));
  const shown = rows.slice(0, MAX_ROWS).map((r) => r.slice(0, MAX_COLS));
  const table = h("table", { class: "matrix", "data-kind": label },
    h("tbody", {}, shown.map((r) => h("tr", {}, r.map((v) =>
      h("td", { style: { background: heat(v, scale) }, "data-value": String(v) }, fmtNum(v, 4)))))));
  const cut = rows.length > MAX_ROWS || rows.some((r) => r.length > MAX_COLS);
  return h("div", { class: "matrix-box" },
    h("div", { class: "matrix-label" }, label, h("span", { class: "muted" }, `  shape (${shape.join(", ")}${shape.length === 1 ? "," : ""})`)),
    h("div", { class: "matrix-scroll" }, table),
    cut ? h("p", { class: "muted" }, `showing the first ${Math.min(rows.length, MAX_ROWS)} rows and ${MAX_COLS} columns of ${shape.join("×")}`) : null);
}

export class StepPage {
  constructor(root, { id, step }) {
    this.root = root;
    this.id = id;
    this.step = step;
    this.root.append(h("p", { class: "muted" }, `loading step ${step}…`));
    this.load();
  }

  destroy() {
    this.destroyed = true;
  }

  async load() {
    const [job, record] = await Promise.allSettled([api(`/jobs/${this.id}`), api(`/jobs/${this.id}/steps/${this.step}`)]);
    if (this.destroyed) return;
    this.job = job.status === "fulfilled" ? job.value : { id: this.id };
    clear(this.root);
    this.renderHead(record.status === "fulfilled" ? record.value : null);
    if (record.status === "rejected") {
      this.root.append(h("section", { class: "card" }, h("p", { class: "error-text" }, record.reason.message)));
      return;
    }
    const rec = record.value;
    this.graphCard = h("section", { class: "card graph-card" }, h("h3", {}, "Computation graph"),
      h("p", { class: "muted" }, "loading…"));
    this.root.append(this.graphCard, this.verifyCard(), this.tables(rec));
    this.loadGraph();
  }

  renderHead(rec) {
    const step = this.step;
    const go = h("input", { type: "number", min: 0, value: step, "aria-label": "step", class: "step-input" });
    const fact = (label, value) => h("div", { class: "fact" }, h("div", { class: "fact-label" }, label),
      h("div", { class: "fact-value num" }, value));
    const last = this.job.steps_done ? this.job.steps_done - 1 : null;
    this.root.append(
      h("nav", { class: "crumbs" }, h("a", { href: "#/" }, "Jobs"), " › ",
        h("a", { href: `#/jobs/${this.id}` }, `#${this.id} ${this.job.name ?? ""}`), " › ", `step ${fmtInt(step)}`),
      h("section", { class: "card job-head" },
        h("div", { class: "job-title" }, h("h2", {}, `Step ${fmtInt(step)}`),
          h("div", { class: "actions" },
            h("a", { class: "button", href: step > 0 ? `#/jobs/${this.id}/steps/${step - 1}` : null,
              "aria-disabled": String(step === 0) }, "‹ previous"),
            h("a", { class: "button", href: last === null || step < last ? `#/jobs/${this.id}/steps/${step + 1}` : null,
              "aria-disabled": String(last !== null && step >= last) }, "next ›"),
            h("form", { class: "inline-form", onsubmit: (e) => {
              e.preventDefault();
              if (go.value !== "") location.hash = `#/jobs/${this.id}/steps/${Number(go.value)}`;
            } }, go, h("button", { type: "submit" }, "Go")))),
        rec ? h("div", { class: "facts" },
          fact("loss", fmtNum(rec.loss)), fact("learning rate", fmtNum(rec.lr)), fact("gradient norm", fmtNum(rec.grad_norm)),
          rec.val_loss !== null && rec.val_loss !== undefined ? fact("validation loss", fmtNum(rec.val_loss)) : null,
          rec.val_accuracy !== null && rec.val_accuracy !== undefined ? fact("validation accuracy", fmtNum(rec.val_accuracy)) : null)
          : null));
  }

  // A step whose snapshot was not kept comes replayed from the nearest stored state before it.
  replayNote(rec) {
    const r = rec.replayed;
    if (!r) return null;
    const from = r.from_step === 0 ? "the initial parameters" : `the checkpoint at step ${fmtInt(r.from_step)}`;
    return h("p", { class: r.matches_record ? "muted replayed" : "error-text replayed" },
      `No snapshot was kept at this step: replayed ${fmtInt(r.steps)} step${r.steps === 1 ? "" : "s"} from ${from} ` +
      `in ${fmtNum(r.seconds * 1000, 3)} ms` + (r.matches_record ? ", reproducing the recorded loss and gradient statistics exactly."
        : ", but the replay does not reproduce the recorded loss and gradient statistics (was gradbook upgraded since?)."));
  }

  async loadGraph() {
    const card = this.graphCard;
    try {
      const graph = await api(`/jobs/${this.id}/graph?step=${this.step}`);
      if (this.destroyed) return;
      clear(card).append(h("h3", {}, "Computation graph"));
      const g = graph.graph ?? graph;
      if (!g.nodes?.length) {
        card.append(h("p", { class: "muted" }, "no graph for this step"));
        return;
      }
      const out = g.output ?? g.nodes[g.nodes.length - 1].name;
      card.append(h("p", { class: "muted" }, `Forward values and the derivative ∂${out}/∂node of every node, ` +
        "on this step's batch with the parameters it started from. Blue: parameters, grey: data; " +
        "point at a node for all its numbers."));
      if (g.nodes.length <= GRAPH_MAX_NODES) card.append(h("div", { class: "graph-scroll" }, drawGraph(g)));
      card.append(this.graphTable(g, out));
    } catch (e) {
      clear(card).append(h("h3", {}, "Computation graph"), h("p", { class: "muted graph-unavailable" }, e.message));
    }
  }

  graphTable(g, out) {
    const short = (v) => (v === null || v === undefined ? "–" : Array.isArray(v) ? (v.flat(Infinity).length === 1
      ? fmtNum(v.flat(Infinity)[0]) : `[${shapeOf(v).join("×")}]`) : fmtNum(v));
    return h("details", { class: "graph-table" }, h("summary", {}, "as a table"),
      h("table", { class: "data" },
        h("thead", {}, h("tr", {}, ["node", "op", "inputs", "value", `∂${out}/∂node`].map((c) => h("th", {}, c)))),
        h("tbody", {}, g.nodes.map((n) => h("tr", {},
          h("td", {}, h("code", {}, n.name)), h("td", {}, n.op),
          h("td", {}, n.inputs.map((i) => g.nodes[i]?.name).join(", ")),
          h("td", { class: "num" }, short(n.value)), h("td", { class: "num" }, short(n.grad)))))));
  }

  verifyCard() {
    const result = h("div", { class: "verify-result", "aria-live": "polite" });
    const button = h("button", { type: "button", class: "primary", "data-action": "verify" }, "Run the numerical check");
    button.addEventListener("click", async () => {
      button.disabled = true;
      clear(result).append(h("p", { class: "muted" }, "bumping every parameter by ±ε…"));
      try {
        const report = await api(`/jobs/${this.id}/steps/${this.step}/verify`, { method: "POST" });
        clear(result).append(this.verifyReport(report));
      } catch (e) {
        clear(result).append(h("p", { class: "error-text" }, e.message));
      } finally {
        button.disabled = false;
      }
    });
    return h("section", { class: "card verify" }, h("h3", {}, "Numerical gradient check"),
      h("p", { class: "muted" }, "Compares the recorded backprop gradients with central finite differences " +
        "(J(θ+ε) − J(θ−ε)) / 2ε, one parameter entry at a time."), button, result);
  }

  verifyReport(r) {
    const err = r.max_rel_error;
    const tolerance = this.job.spec?.dtype === "float32" ? 1e-2 : 1e-5;
    const ok = typeof err === "number" && err <= tolerance;
    const perParam = r.per_param && typeof r.per_param === "object" ? Object.entries(r.per_param) : [];
    return h("div", { class: `verify-report ${ok ? "ok" : "bad"}`, "data-max-rel-error": err },
      h("p", { class: "verdict" }, ok ? "✓ backprop agrees with finite differences" : "✗ backprop and finite differences disagree",
        h("span", { class: "muted" }, ` (largest relative error ${fmtNum(err, 3)}${r.worst_param ? `, in ${r.worst_param}` : ""}; ` +
          `tolerance ${fmtNum(tolerance)})`)),
      perParam.length ? h("table", { class: "data compact" },
        h("thead", {}, h("tr", {}, h("th", {}, "parameter"), h("th", {}, "largest relative error"))),
        h("tbody", {}, perParam.map(([name, v]) => h("tr", {}, h("td", {}, h("code", {}, name)), h("td", { class: "num" }, fmtNum(v, 3))))))
        : null,
      h("p", { class: "muted" }, [
        r.forward_passes !== undefined ? `${fmtInt(r.forward_passes)} forward passes` : null,
        r.numerical_seconds !== undefined ? `${fmtNum(r.numerical_seconds, 3)} s numerical` : null,
        r.backprop_seconds !== undefined ? `${fmtNum(r.backprop_seconds, 3)} s backprop` : null,
        r.eps !== undefined ? `ε = ${r.eps}` : null,
        r.recorded_vs_replayed !== undefined ? `recorded vs replayed gradients differ by ${fmtNum(r.recorded_vs_replayed, 3)}` : null,
      ].filter(Boolean).join(" · ")));
  }

  tables(rec) {
    const section = h("section", { class: "card params" }, h("h3", {}, "Parameters and gradients at this step"));
    const stats = rec.stats && Object.keys(rec.stats).length ? rec.stats : null;
    if (stats) {
      const cols = ["norm", "mean", "std", "min", "max", "nonfinite"];
      section.append(h("table", { class: "data stats" },
        h("thead", {}, h("tr", {}, h("th", {}, "gradient of"), cols.map((c) => h("th", {}, c)))),
        h("tbody", {}, Object.entries(stats).map(([name, s]) => h("tr", { "data-param": name }, h("td", {}, h("code", {}, name)),
          cols.map((c) => h("td", { class: "num" }, fmtNum(s[c]))))))));
    }
    const params = rec.params ?? {};
    const grads = rec.gradients ?? {};
    // the job's own order (w1, b1, w2, b2), not the alphabetical one JSON objects may arrive in
    const names = [...new Set([...(this.job.param_names ?? []), ...Object.keys(params), ...Object.keys(grads)])]
      .filter((n) => n in params || n in grads);
    if (!names.length) {
      section.append(h("p", { class: "muted" }, "No parameters or gradients at this step."));
      return section;
    }
    section.append(this.replayNote(rec),
      h("p", { class: "muted" }, "Cells are shaded by size within each table: blue positive, red negative."));
    for (const name of names) {
      section.append(h("div", { class: "param-row", "data-param": name }, h("h4", {}, h("code", {}, name)),
        h("div", { class: "matrices" },
          name in params ? matrix(params[name], "value") : null,
          name in grads ? matrix(grads[name], `∂J/∂${name}`) : null)));
    }
    return section;
  }
}
