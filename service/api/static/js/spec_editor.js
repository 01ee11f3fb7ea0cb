// The job spec as editable JSON, with the API's errors shown beside the lines of the fields they name.

import { clear, h } from "./dom.js";

const LINE = 21; // px; must match .spec-editor line-height in app.css
const PAD = 10; // px; the textarea's vertical padding

const key = (path) => JSON.stringify(path);

/** Line (0-based) where each path of a valid JSON text starts: members at their key, items at their value. */
export function locate(text) {
  const starts = [0];
  for (let k = 0; k < text.length; k += 1) if (text[k] === "\n") starts.push(k + 1);
  const lineOf = (pos) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid] <= pos) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };
  const lines = new Map();
  let i = 0;
  const ws = () => {
    while (i < text.length && /\s/.test(text[i])) i += 1;
  };
  const string = () => {
    const begin = i;
    i += 1;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i += 1;
    return JSON.parse(text.slice(begin, i));
  };
  const value = (path) => {
    ws();
    if (!lines.has(key(path))) lines.set(key(path), lineOf(i));
    const c = text[i];
    if (c === "{" || c === "[") {
      const close = c === "{" ? "}" : "]";
      i += 1;
      ws();
      let index = 0;
      while (i < text.length && text[i] !== close) {
        if (c === "{") {
          const at = i;
          const name = string();
          lines.set(key([...path, name]), lineOf(at));
          ws();
          i += 1; // the colon
          value([...path, name]);
        } else {
          value([...path, index]);
        }
        index += 1;
        ws();
        if (text[i] === ",") i += 1;
        ws();
      }
      i += 1;
    } else if (c === '"') {
      string();
    } else {
      while (i < text.length && !/[\s,\]}]/.test(text[i])) i += 1;
    }
  };
  value([]);
  return lines;
}

function inline(value) {
  if (Array.isArray(value)) return `[${value.map(inline).join(", ")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${inline(v)}`).join(", ")}}`;
  }
  return JSON.stringify(value);
}

/** JSON indented like a person would: anything that fits on its line stays on one line
 * ("w1": [[2]] rather than five lines), the rest opens up one level at a time. */
export function formatJson(value, width = 72, indent = "", used = 0) {
  const flat = inline(value);
  const isContainer = value !== null && typeof value === "object";
  if (!isContainer || indent.length + used + flat.length <= width) return flat;
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return `[\n${value.map((v) => inner + formatJson(v, width, inner)).join(",\n")}\n${indent}]`;
  }
  const entries = Object.entries(value);
  if (!entries.length) return "{}";
  return `{\n${entries.map(([k, v]) => {
    const key = `${JSON.stringify(k)}: `;
    return inner + key + formatJson(v, width, inner, key.length);
  }).join(",\n")}\n${indent}}`;
}

export function pathText(path) {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out ? `.${p}` : String(p);
  return out;
}

/** The line of a JSON.parse error, read from the engine's message (position or line/column). */
function syntaxErrorLine(text, message) {
  const lc = /line (\d+)/.exec(message);
  if (lc) return Number(lc[1]) - 1;
  const pos = /position (\d+)/.exec(message);
  if (pos) return text.slice(0, Number(pos[1])).split("\n").length - 1;
  return 0;
}

export class SpecEditor {
  constructor(parent, { onChange = () => {} } = {}) {
    this.onChange = onChange;
    this.gutter = h("div", { class: "editor-gutter", "aria-hidden": "true" });
    this.marks = h("div", { class: "editor-marks", "aria-hidden": "true" });
    this.textarea = h("textarea", { class: "editor-text", spellcheck: "false", autocomplete: "off",
      "aria-label": "job spec (JSON)", name: "spec", wrap: "off" });
    this.notes = h("div", { class: "editor-notes", "aria-live": "polite" });
    this.placeholder = h("p", { class: "editor-placeholder muted" },
      "Edit the spec freely. If the server refuses it, each problem shows up here, beside the line it names.");
    this.el = h("div", { class: "spec-editor" }, this.gutter,
      h("div", { class: "editor-main" }, this.marks, this.textarea), this.notes);
    parent.append(this.el);
    this.textarea.addEventListener("input", () => {
      this.clearErrors();
      this.fit();
      this.onChange();
    });
    this.textarea.addEventListener("keydown", (e) => {
      if (e.key === "Tab" && !e.shiftKey) { // indent instead of leaving the editor
        e.preventDefault();
        document.execCommand("insertText", false, "  ");
      }
    });
  }

  get text() {
    return this.textarea.value;
  }

  set text(value) {
    this.textarea.value = value;
    this.clearErrors();
    this.fit();
  }

  setSpec(spec) {
    this.text = formatJson(spec);
  }

  /** The spec as an object, or null after showing where the JSON is broken. */
  parse() {
    try {
      return JSON.parse(this.text);
    } catch (e) {
      this.showErrors([{ path: null, line: syntaxErrorLine(this.text, e.message), message: `not valid JSON: ${e.message}` }]);
      return null;
    }
  }

  fit() {
    const count = this.text.split("\n").length;
    this.textarea.style.height = `${count * LINE + PAD * 2 + 16}px`;
    clear(this.gutter);
    for (let n = 1; n <= count; n += 1) this.gutter.append(h("div", {}, n));
  }

  clearErrors() {
    clear(this.notes).append(this.placeholder);
    clear(this.marks);
    this.el.classList.remove("has-errors");
    for (const row of this.gutter.children) row.classList.remove("error");
  }

  /** errors: [{path: [...] | null, message, line?}]; each note sits beside the line of its field
   * (or of the nearest enclosing field when the named one is missing from the text). */
  showErrors(errors) {
    this.clearErrors();
    if (!errors.length) return;
    this.placeholder.remove();
    this.el.classList.add("has-errors");
    let lines = new Map();
    try {
      lines = locate(this.text);
    } catch {
      /* broken JSON: errors carry their own line */
    }
    const placed = errors.map((err) => {
      let line = err.line ?? 0;
      if (err.path) {
        for (let n = err.path.length; n >= 0; n -= 1) {
          const found = lines.get(key(err.path.slice(0, n)));
          if (found !== undefined) {
            line = found;
            break;
          }
        }
      }
      return { ...err, line };
    }).sort((a, b) => a.line - b.line);

    let bottom = 0;
    for (const err of placed) {
      const field = err.path ? pathText(err.path) : "";
      const top = Math.max(PAD + err.line * LINE - 4, bottom);
      const note = h("div", { class: "editor-note", style: { top: `${top}px` }, "data-field": field || "(spec)",
        "data-line": err.line + 1 },
        h("span", { class: "note-line" }, `line ${err.line + 1}`),
        field ? h("code", { class: "note-field" }, field) : null,
        h("span", { class: "note-message" }, err.message));
      this.notes.append(note);
      bottom = top + note.offsetHeight + 6;
      this.marks.append(h("div", { class: "editor-mark", style: { top: `${PAD + err.line * LINE}px`, height: `${LINE}px` } }));
      this.gutter.children[err.line]?.classList.add("error");
    }
    this.notes.style.minHeight = `${bottom}px`;
  }
}
