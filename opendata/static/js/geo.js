// Map geometry, no I/O: an equirectangular projection (x scaled by cos of the mid latitude)
// fitted to the stations' bounding box, graticule steps, a scale bar and label placement.

const KM_PER_DEG = 111.32;
const MIN_SPAN_DEG = 0.02;
const NICE = [1, 2, 2.5, 5];

/** The smallest "nice" number (1, 2, 2.5, 5 × 10^n) that is at least `x`. */
export function niceAtLeast(x) {
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of NICE) if (m * p >= x - 1e-12) return m * p;
  return 10 * p;
}

/** The largest 1, 2, 5 × 10^n that is at most `x`. */
export function niceAtMost(x) {
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [5, 2, 1]) if (m * p <= x + 1e-12) return m * p;
  return p;
}

/**
 * A projection of `points` ([{lon, lat}]) into a `width` × `height` box with `margin` px:
 * {project(lon, lat) → [x, y], invert(x, y) → [lon, lat], pxPerKm}.
 */
export function fitProjection(points, width, height, margin) {
  let [minLon, maxLon, minLat, maxLat] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const p of points) {
    minLon = Math.min(minLon, p.lon);
    maxLon = Math.max(maxLon, p.lon);
    minLat = Math.min(minLat, p.lat);
    maxLat = Math.max(maxLat, p.lat);
  }
  if (!Number.isFinite(minLon)) [minLon, maxLon, minLat, maxLat] = [116, 117, 39, 40];
  const midLat = (minLat + maxLat) / 2;
  const midLon = (minLon + maxLon) / 2;
  const cos = Math.cos((midLat * Math.PI) / 180);
  const spanX = Math.max((maxLon - minLon) * cos, MIN_SPAN_DEG);
  const spanY = Math.max(maxLat - minLat, MIN_SPAN_DEG);
  const k = Math.min((width - 2 * margin) / spanX, (height - 2 * margin) / spanY); // px per degree of latitude
  const cx = width / 2;
  const cy = height / 2;
  return {
    project: (lon, lat) => [cx + (lon - midLon) * cos * k, cy - (lat - midLat) * k],
    invert: (x, y) => [midLon + (x - cx) / (cos * k), midLat - (y - cy) / k],
    pxPerKm: k / KM_PER_DEG,
  };
}

/** A map height for `width` that suits the stations' extent (between minH and maxH). */
export function mapHeight(points, width, minH, maxH) {
  if (points.length < 2) return Math.max(minH, Math.min(maxH, width * 0.6));
  const lats = points.map((p) => p.lat);
  const lons = points.map((p) => p.lon);
  const midLat = (Math.min(...lats) + Math.max(...lats)) / 2;
  const spanX = Math.max((Math.max(...lons) - Math.min(...lons)) * Math.cos((midLat * Math.PI) / 180), MIN_SPAN_DEG);
  const spanY = Math.max(Math.max(...lats) - Math.min(...lats), MIN_SPAN_DEG);
  return Math.round(Math.max(minH, Math.min(maxH, (width * spanY) / spanX)));
}

/** Graticule values between `lo` and `hi`, about `count` of them on a nice step. */
export function graticule(lo, hi, count) {
  const step = niceAtLeast((hi - lo) / count);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 && out.length < 50; v += step) out.push(+v.toFixed(6));
  return { step, values: out };
}

/** A degree label: 30.25°N, 120.5°E. */
export function degreeLabel(value, axis) {
  const hemi = axis === "lat" ? (value >= 0 ? "N" : "S") : value >= 0 ? "E" : "W";
  const digits = Math.abs(value) % 1 === 0 ? 0 : Math.min(3, String(Math.abs(value)).split(".")[1]?.length ?? 0);
  return `${Math.abs(value).toFixed(digits)}°${hemi}`;
}

/** A scale bar of about `targetPx`: {km, px, text}. */
export function scaleBar(pxPerKm, targetPx) {
  const km = niceAtMost(targetPx / pxPerKm);
  const text = km >= 1 ? `${km} km` : `${Math.round(km * 1000)} m`;
  return { km, px: km * pxPerKm, text };
}

function overlaps(a, b) {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

function spotsFor(l, w) {
  const gap = l.r + 3;
  return [
    { box: { x: l.x + gap, y: l.y - l.h / 2, w, h: l.h }, tx: l.x + gap, ty: l.y, anchor: "start" },
    { box: { x: l.x - gap - w, y: l.y - l.h / 2, w, h: l.h }, tx: l.x - gap, ty: l.y, anchor: "end" },
    { box: { x: l.x - w / 2, y: l.y - gap - l.h, w, h: l.h }, tx: l.x, ty: l.y - gap - l.h / 2, anchor: "middle" },
    { box: { x: l.x - w / 2, y: l.y + gap, w, h: l.h }, tx: l.x, ty: l.y + gap + l.h / 2, anchor: "middle" },
  ];
}

/**
 * Greedy label placement: each label ({x, y, w, h, r, shortW} at a marker of radius r) goes
 * right, left, above or below its marker, the first spot inside the box that overlaps no
 * earlier label, marker or `reserved` box. When none is free and the label has a short form
 * (`shortW`: its value without the name), the short form is tried the same way; failing
 * that, the spot that overlaps the fewest. Returns [{x, y, anchor, short}] in input order.
 */
export function placeLabels(labels, width, height, reserved = []) {
  const taken = [...reserved, ...labels.map((l) => ({ x: l.x - l.r, y: l.y - l.r, w: 2 * l.r, h: 2 * l.r }))];
  const inBox = (b) => b.x >= 0 && b.x + b.w <= width && b.y >= 0 && b.y + b.h <= height;
  const hits = (b) => taken.filter((t) => overlaps(t, b)).length;
  return labels.map((l) => {
    const forms = [{ w: l.w, short: false }, ...(l.shortW ? [{ w: l.shortW, short: true }] : [])];
    let best = null;
    for (const form of forms) {
      for (const spot of spotsFor(l, form.w)) {
        const score = hits(spot.box) + (inBox(spot.box) ? 0 : 100) + (form.short ? 0.5 : 0);
        if (!best || score < best.score) best = { ...spot, short: form.short, score };
      }
      if (best.score === 0) break;
    }
    taken.push(best.box);
    return { x: best.tx, y: best.ty, anchor: best.anchor, short: best.short };
  });
}
