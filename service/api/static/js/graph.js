// The computation graph as the lecture draws it: left to right, each node a box with its forward
// value and the derivative of the output with respect to it.
//
// Layout: the "spine" runs from the output back through each op's first input (x -> t1 -> z1 -> a1 ...
// -> J) along the middle row; every other input (weights, biases, targets, constants) sits one column
// before the op that uses it, in a row below, so the diagram reads like the chain rule on the board.

import { fmtNum, s } from "./dom.js";

const BOX_W = 132;
const BOX_H = 82;
const GAP_X = 46;
const GAP_Y = 34;
const PAD = 24;

// How the lecture writes the ops; anything else is shown by its registered name.
const OP_LABEL = {
  matmul: "×", add: "+", subtract: "−", multiply: "·", divide: "÷", negative: "−", power: "^",
  relu: "relu", leaky_relu: "leaky", tanh: "tanh", sigmoid: "σ", exp: "exp", log: "log",
  half_squared_error: "½(a−y)²", mse: "mean (a−y)²", binary_cross_entropy_with_logits: "BCE",
  cross_entropy: "CE", softmax: "softmax", log_softmax: "log softmax",
};
const OP_CHARS = 9; // room beside the node's name

export function opLabel(op) {
  const label = OP_LABEL[op] ?? op.replaceAll("_", " ");
  return label.length > OP_CHARS ? `${label.slice(0, OP_CHARS - 1)}…` : label;
}

/** Font size that fits `chars` monospace characters into `width` px (17 px when they fit). */
function fitFont(chars, width) {
  return Math.max(10, Math.min(17, Math.floor(width / (chars * 0.62))));
}

function size(value) {
  if (value === null || value === undefined) return 0;
  if (!Array.isArray(value)) return 1;
  return value.reduce((n, v) => n + size(v), 0);
}

function flat(value) {
  return Array.isArray(value) ? value.flat(Infinity) : [value];
}

/** A scalar (or one-element array) as its number, otherwise null. */
export function scalarOf(value) {
  return size(value) === 1 ? flat(value)[0] : null;
}

function describe(value, shape) {
  if (value === null || value === undefined) return "–";
  const one = scalarOf(value);
  if (one !== null) return fmtNum(one, 4);
  const dims = (shape && shape.length ? shape : [size(value)]).join("×");
  return `[${dims}]`;
}

function attrValue(value) {
  if (value === null || value === undefined) return undefined;
  const one = scalarOf(value);
  return one !== null ? String(one) : JSON.stringify(value);
}

export function layout(nodes) {
  const byIndex = new Map(nodes.map((n) => [n.index, n]));
  const consumers = new Map(nodes.map((n) => [n.index, []]));
  for (const n of nodes) for (const i of n.inputs) consumers.get(i)?.push(n.index);

  // the spine: from the output back through first inputs
  const spine = [];
  for (let n = nodes[nodes.length - 1]; n; n = n.inputs.length ? byIndex.get(n.inputs[0]) : null) spine.unshift(n.index);
  const col = new Map(spine.map((index, c) => [index, c]));
  const row = new Map(spine.map((index) => [index, 0]));

  // everything else: one column before its first consumer (walking back from the output)
  const occupied = new Map(); // column -> rows used
  const take = (c) => {
    const used = occupied.get(c) || new Set([0]);
    let r = 1;
    while (used.has(r)) r += 1;
    used.add(r);
    occupied.set(c, used);
    return r;
  };
  for (let k = nodes.length - 1; k >= 0; k -= 1) {
    const n = nodes[k];
    if (col.has(n.index)) continue;
    const users = consumers.get(n.index).filter((i) => col.has(i));
    const c = users.length ? Math.max(0, Math.min(...users.map((i) => col.get(i))) - 1) : 0;
    col.set(n.index, c);
    row.set(n.index, take(c));
  }
  // an op placed off the spine may still have unplaced inputs: they were handled above in reverse order
  return { col, row };
}

/** An <svg> of the graph; nodes carry data-node, data-op, data-value and data-grad for tests and tools. */
export function drawGraph(graph) {
  const nodes = graph.nodes;
  const { col, row } = layout(nodes);
  const output = graph.output ?? nodes[nodes.length - 1].name;
  const columns = Math.max(...col.values()) + 1;
  const rows = Math.max(...row.values()) + 1;
  const width = PAD * 2 + columns * BOX_W + (columns - 1) * GAP_X;
  const height = PAD * 2 + rows * BOX_H + (rows - 1) * GAP_Y;
  const x = (i) => PAD + col.get(i) * (BOX_W + GAP_X);
  const y = (i) => PAD + row.get(i) * (BOX_H + GAP_Y);

  // drawn at its natural size, shrunk to fit narrower screens (never enlarged)
  const svg = s("svg", { class: "graph", viewBox: `0 0 ${width} ${height}`, style: `max-width: ${width}px`, role: "img",
    "aria-label": `computation graph of ${output}` });
  svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7,
    markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#64748b" }))));

  const edges = s("g", { class: "edges" });
  for (const n of nodes) {
    n.inputs.forEach((i, k) => {
      const x1 = x(i) + BOX_W;
      const y1 = y(i) + BOX_H / 2;
      const x2 = x(n.index);
      const y2 = y(n.index) + BOX_H / 2 + (n.inputs.length > 1 ? (k - (n.inputs.length - 1) / 2) * 14 : 0);
      const mid = (x1 + x2) / 2;
      const d = x2 > x1 ? `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}`
        : `M ${x(i) + BOX_W / 2} ${y(i)} C ${x(i) + BOX_W / 2} ${y2 - 40}, ${x2 - 30} ${y2}, ${x2} ${y2}`;
      edges.append(s("path", { d, class: "edge", "marker-end": "url(#arrow)", "data-from": nodes[i]?.name ?? i,
        "data-to": n.name }));
    });
  }
  svg.append(edges);

  for (const n of nodes) {
    const kind = n.name === output ? "output" : n.op === "const" ? "const"
      : n.op === "input" ? (n.grad === null || n.grad === undefined ? "data" : "param") : "op";
    const g = s("g", { class: `node node-${kind}`, transform: `translate(${x(n.index)}, ${y(n.index)})`,
      "data-node": n.name, "data-op": n.op, "data-value": attrValue(n.value), "data-grad": attrValue(n.grad) });
    g.append(s("title", {}, `${n.name} = ${n.op}${n.inputs.length ? `(${n.inputs.map((i) => nodes[i]?.name).join(", ")})` : ""}\n` +
      `value ${JSON.stringify(n.value)}\nd${output}/d${n.name} ${JSON.stringify(n.grad)}`));
    g.append(s("rect", { width: BOX_W, height: BOX_H, rx: 9 }));
    g.append(s("text", { x: 10, y: 22, class: "node-name" }, n.name));
    if (n.op !== "input" && n.op !== "const") {
      g.append(s("text", { x: BOX_W - 10, y: 22, class: "node-op", "text-anchor": "end" }, opLabel(n.op)));
    }
    const value = describe(n.value, n.shape);
    g.append(s("text", { x: 10, y: 48, class: "node-value" }, s("tspan", { class: "label" }, "value "),
      s("tspan", { class: "num", "font-size": fitFont(value.length, BOX_W - 58) }, value)));
    if (n.grad !== null && n.grad !== undefined) {
      const wrt = n.name.length <= 4 ? n.name : "·";
      const label = `∂${output}/∂${wrt} `;
      const grad = describe(n.grad, n.shape);
      g.append(s("text", { x: 10, y: 71, class: "node-grad" }, s("tspan", { class: "label" }, label),
        s("tspan", { class: "num", "font-size": fitFont(grad.length, BOX_W - 20 - label.length * 7.5) }, grad)));
    }
    svg.append(g);
  }
  return svg;
}
