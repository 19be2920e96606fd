// Small SVG time charts (line, step or bars) with optional coloured bands and reference
// lines; every data point is drawn (as a dot or a bar) and counted in data-points.

import { niceAtLeast } from "./geo.js";
import { s } from "./svg.js";

const PAD = { left: 44, right: 12, top: 12, bottom: 28 };
const HOUR = 3600e3;

/** Evenly spaced nice y ticks covering [lo, hi]. */
export function yTicks(lo, hi, count = 5) {
  const step = niceAtLeast((hi - lo) / count || 1);
  const out = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9 && out.length < 20; v += step) out.push(+v.toFixed(6));
  return out;
}

function timeTicks(from, to) {
  const span = to - from;
  const step = span > 36 * HOUR ? 12 * HOUR : span > 12 * HOUR ? 6 * HOUR : HOUR;
  const out = [];
  const first = Math.ceil(from / step) * step;
  for (let v = first; v <= to && out.length < 20; v += step) out.push(v);
  return out;
}

function timeLabel(ms, lang) {
  const d = new Date(ms);
  const hh = String(d.getHours()).padStart(2, "0");
  const mm = String(d.getMinutes()).padStart(2, "0");
  if (d.getHours() === 0 && d.getMinutes() === 0) return lang === "zh" ? `${d.getMonth() + 1}月${d.getDate()}日` : `${d.getMonth() + 1}/${d.getDate()}`;
  return `${hh}:${mm}`;
}

/**
 * A chart of `points` ([[ms, value]], oldest first) over [from, to]. Options: kind
 * ("line" | "step" | "bars"), yMin/yMax, bands [{lo, hi, color}], refLines [{y, color, label}],
 * pointColor(v), ticks (fixed [{v, text}]), invert (larger values lower), label, lang.
 */
export function timeChart(points, opts) {
  const { width, height = 200, from, to, kind = "line", bands = [], refLines = [], lang = "en" } = opts;
  const values = points.map((p) => p[1]);
  const refs = refLines.map((r) => r.y);
  let lo = opts.yMin ?? Math.min(...values, ...refs);
  let hi = opts.yMax ?? Math.max(...values, ...refs);
  if (kind === "bars") lo = Math.min(0, lo);
  if (!(hi > lo)) [lo, hi] = [lo - 1, hi + 1];
  if (opts.yMin == null && opts.yMax == null && kind !== "bars") {
    const pad = (hi - lo) * 0.08;
    [lo, hi] = [lo - pad, hi + pad];
  }
  const ticks = opts.ticks || yTicks(lo, hi).filter((v) => v >= lo && v <= hi).map((v) => ({ v, text: String(v) }));
  const w = width - PAD.left - PAD.right;
  const ht = height - PAD.top - PAD.bottom;
  const x = (ms) => PAD.left + ((ms - from) / (to - from)) * w;
  const yRaw = (v) => PAD.top + ((hi - v) / (hi - lo)) * ht;
  const y = opts.invert ? (v) => PAD.top + PAD.top + ht - yRaw(v) : yRaw;
  const clampY = (v) => Math.max(PAD.top, Math.min(PAD.top + ht, y(v)));

  const svg = s("svg", {
    class: `chart chart-${kind}`,
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": opts.label || "",
    "data-points": points.length,
  });
  if (opts.label) svg.append(s("title", {}, opts.label));
  const bandG = s("g", { class: "bands" });
  for (const b of bands) {
    const top = clampY(opts.invert ? b.lo : b.hi);
    const bottom = clampY(opts.invert ? b.hi : b.lo);
    if (bottom > top) bandG.append(s("rect", { x: PAD.left, y: top, width: w, height: bottom - top, fill: b.color }));
  }
  const axes = s("g", { class: "axes" });
  for (const tk of ticks) {
    const ty = y(tk.v);
    axes.append(s("line", { class: "grid", x1: PAD.left, x2: PAD.left + w, y1: ty, y2: ty }), s("text", { x: PAD.left - 4, y: ty, "text-anchor": "end", "dominant-baseline": "middle" }, tk.text));
  }
  for (const tm of timeTicks(from, to)) {
    const tx = x(tm);
    axes.append(s("line", { class: "grid", x1: tx, x2: tx, y1: PAD.top, y2: PAD.top + ht }), s("text", { x: tx, y: height - 8, "text-anchor": "middle" }, timeLabel(tm, lang)));
  }
  svg.append(bandG, axes);
  for (const r of refLines) {
    const ry = y(r.y);
    svg.append(
      s("line", { class: "ref", x1: PAD.left, x2: PAD.left + w, y1: ry, y2: ry, stroke: r.color }),
      s("text", { class: "ref-label", x: PAD.left + w - 2, y: ry - 4, "text-anchor": "end", fill: r.color }, r.label),
    );
  }
  const data = s("g", { class: "data" });
  if (kind === "bars") {
    const bw = Math.max(2, (w / Math.max(1, (to - from) / HOUR)) * 0.8);
    for (const [ms, v] of points) {
      const top = y(Math.max(v, 0));
      data.append(s("rect", { class: "pt bar", x: x(ms) - bw / 2, y: top, width: bw, height: Math.max(0.5, y(0) - top) }, s("title", {}, `${new Date(ms).toLocaleString()} ${v}`)));
    }
  } else {
    let d = "";
    points.forEach(([ms, v], i) => {
      if (i === 0) d += `M${x(ms)},${y(v)}`;
      else if (kind === "step") d += `H${x(ms)}V${y(v)}`;
      else d += `L${x(ms)},${y(v)}`;
    });
    if (d) data.append(s("path", { class: "line", d }));
    const r = points.length > 150 ? 1.5 : 3;
    for (const [ms, v] of points) {
      data.append(s("circle", { class: "pt", cx: x(ms), cy: y(v), r, fill: opts.pointColor ? opts.pointColor(v) : null }, s("title", {}, `${new Date(ms).toLocaleString()} ${v}`)));
    }
  }
  svg.append(data);
  return svg;
}
