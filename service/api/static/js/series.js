// History and gradient points from the API as column arrays for the charts.
//
// A raw point is {step, loss: 0.5, ...}; a downsampled one describes a bucket of steps:
// {step, step_end, count, loss: {min, max, mean, last}, ...}. Both become the same columns.

function num(v) {
  return typeof v === "number" ? v : null;
}

export function isBucketed(points) {
  return points.some((p) => p.step_end !== undefined && p.step_end !== p.step);
}

/** Columns of `points`: xs (bucket middles), picks (a recorded step to open), and per key
 * {mean, lo, hi, last} arrays; for raw points all four are the value itself. */
export function columns(points, keys) {
  const xs = points.map((p) => (p.step_end !== undefined ? (p.step + p.step_end) / 2 : p.step));
  const picks = points.map((p) => p.step);
  const out = { xs, picks, bucketed: isBucketed(points), first: points[0]?.step ?? null,
    last: points.length ? (points[points.length - 1].step_end ?? points[points.length - 1].step) : null };
  for (const key of keys) {
    const mean = [];
    const lo = [];
    const hi = [];
    const last = [];
    for (const p of points) {
      const v = p[key];
      if (v !== null && typeof v === "object") {
        mean.push(num(v.mean));
        lo.push(num(v.min));
        hi.push(num(v.max));
        last.push(num(v.last));
      } else {
        const x = num(v);
        mean.push(x);
        lo.push(x);
        hi.push(x);
        last.push(x);
      }
    }
    out[key] = { mean, lo, hi, last, any: mean.some((v) => v !== null) };
  }
  return out;
}

/** The gradient distribution of one parameter: min..max and mean ± std bands around the mean. */
export function distribution(points) {
  const c = columns(points, ["mean", "std", "min", "max"]);
  const lo = points.map((p, i) => (p.min !== null && typeof p.min === "object" ? num(p.min.min) : c.min.mean[i]));
  const hi = points.map((p, i) => (p.max !== null && typeof p.max === "object" ? num(p.max.max) : c.max.mean[i]));
  const mean = c.mean.mean;
  const std = c.std.mean;
  return {
    xs: c.xs, picks: c.picks, bucketed: c.bucketed, mean, min: lo, max: hi,
    minusStd: mean.map((m, i) => (m === null || std[i] === null ? null : m - std[i])),
    plusStd: mean.map((m, i) => (m === null || std[i] === null ? null : m + std[i])),
  };
}
