// A station's page: its latest values and its last 48 hours as charts (AQI with category
// bands, level with warning and guaranteed lines, water class steps, hourly rainfall bars).

import { timeChart } from "./chart.js";
import { kindKey } from "./list.js";
import { AQI_COLORS, WATER_COLORS, present, rainGradeText, romanOf, stationLayers, waterLabel } from "./present.js";
import { h } from "./svg.js";

const HOUR = 3600e3;
const AQI_LIMITS = [0, 50, 100, 150, 200, 300, 500];
// the level chart's lines: the warning and guaranteed colours, darkened to read on white
const REF_WARNING = "#C9A000";
const REF_GUARANTEED = "#E05A00";

/** A time as epoch ms: ISO text, epoch seconds or epoch ms. */
export function ms(time) {
  if (typeof time === "number") return time < 1e11 ? time * 1000 : time;
  return Date.parse(time);
}

function toPoints(pairs) {
  return (pairs || [])
    .map(([time, v]) => [ms(time), v == null ? null : Number(v)])
    .filter(([t, v]) => Number.isFinite(t) && v != null && Number.isFinite(v))
    .sort((a, b) => a[0] - b[0]);
}

function fmt(v, digits) {
  return v == null ? "–" : Number(v).toFixed(digits);
}

function block(title, ...children) {
  return h("section", { class: "card" }, h("h3", { text: title }), ...children);
}

function facts(rows) {
  return h("dl", { class: "facts" }, rows.filter(([, v]) => v != null && v !== "").flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]));
}

function latestFacts(station, layer, latest, t, lang) {
  const id = station.station_id;
  const look = present(station, layer, latest, t, lang);
  const badge = h("p", { class: "badge-row" }, h("span", { class: "swatch big", style: `background:${look.color}`, "aria-hidden": "true" }), h("strong", { text: look.value }), " ", h("span", { text: look.category }));
  if (!look.hasData) return block(t(`layer_${layer}`), badge);
  const when = (item) => [t("time"), new Date(item.time).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB")];
  if (layer === "air") {
    const item = latest.air.get(id);
    const iaqi = Object.entries(item.iaqi || {}).map(([k, v]) => `${pollutantName(k)} ${v}`).join(", ");
    return block(t("layer_air"), badge, facts([[t("primary"), (item.primary || []).join(", ") || "—"], ["IAQI", iaqi], when(item)]));
  }
  if (layer === "water") {
    const item = latest.water.get(id);
    return block(t("layer_water"), badge, facts([[t("water_class"), waterLabel(item, t, lang)], [t("deciding"), (item.deciding || []).join(", ")], when(item)]));
  }
  if (layer === "flood") {
    const item = latest.flood.get(id);
    const margin = item.margin_m == null ? null : item.margin_m >= 0 ? t("margin_below", { m: fmt(item.margin_m, 2) }) : t("margin_above", { m: fmt(-item.margin_m, 2) });
    return block(
      t("layer_flood"),
      badge,
      facts([
        [t("level"), `${fmt(item.level_m, 2)} m`],
        [t("warning"), item.warning_level_m == null ? null : `${fmt(item.warning_level_m, 2)} m`],
        [t("guaranteed"), item.guaranteed_level_m == null ? null : `${fmt(item.guaranteed_level_m, 2)} m`],
        ["", margin],
        ["", riseText(item.rise_m_per_h, t)],
        when(item),
      ]),
    );
  }
  const item = latest.rain.get(id);
  const sums = [1, 3, 6, 12, 24].map((n) => `${n} h ${fmt(item[`sum_${n}h`], 1)}`).join(" · ");
  return block(t("layer_rain"), badge, facts([[t("rain_sums"), `${sums} mm`], [t("rain_24h"), rainGradeText(item, t, lang)], when(item)]));
}

const POLLUTANTS = { pm2_5: "PM2.5", pm25: "PM2.5", pm10: "PM10", so2: "SO₂", no2: "NO₂", co: "CO", o3: "O₃" };

/** A pollutant key ("pm2_5_24h", "o3_8h", "pm25") as it is written ("PM2.5 24h", "O₃ 8h"). */
export function pollutantName(key) {
  const m = /^(.*?)(?:_(1h|8h|24h))?$/.exec(key);
  const name = POLLUTANTS[m[1]] || key;
  return m[2] && POLLUTANTS[m[1]] ? `${name} ${m[2]}` : name;
}

function riseText(rise, t) {
  if (rise == null) return null;
  if (Math.abs(rise) < 0.005) return t("steady");
  return rise > 0 ? t("rise", { v: fmt(rise, 2) }) : t("fall", { v: fmt(-rise, 2) });
}

function seriesKey(series, pattern, not = /$^/) {
  return Object.keys(series || {}).find((k) => pattern.test(k) && !not.test(k));
}

/** Hourly sums of interval amounts ([[ms, mm]]). */
export function hourlySums(points) {
  const sums = new Map();
  for (const [t, v] of points) {
    const hour = Math.floor(t / HOUR) * HOUR;
    sums.set(hour, (sums.get(hour) || 0) + v);
  }
  return [...sums.entries()].sort((a, b) => a[0] - b[0]).map(([t, v]) => [t + HOUR / 2, +v.toFixed(1)]);
}

function charts(doc, station, layers, latest, t, lang, width) {
  const to = Date.now();
  const from = to - 48 * HOUR;
  const out = [];
  const chart = (title, points, opts) =>
    block(title, points.length ? timeChart(points, { width, from, to, lang, label: `${title} — ${t("points", { n: points.length })}`, ...opts }) : h("p", { class: "muted", text: t("chart_empty") }));
  const series = doc.series || {};
  const used = new Set();
  if (layers.includes("air")) {
    used.add("aqi"); // the same hourly AQI, drawn with its bands below
    const points = (doc.aqi_hourly || []).map((it) => [ms(it.time), it.aqi]).filter(([tm, v]) => Number.isFinite(tm) && v != null);
    const bands = AQI_COLORS.map((color, i) => ({ lo: AQI_LIMITS[i], hi: AQI_LIMITS[i + 1], color: `${color}40` }));
    const top = Math.max(100, ...points.map((p) => p[1]));
    const yMax = AQI_LIMITS.find((l) => l >= top * 1.05) || 500;
    const levelOf = (v) => AQI_LIMITS.findIndex((l, i) => i > 0 && v <= l);
    out.push(chart(t("chart_aqi"), points, { bands, yMin: 0, yMax, pointColor: (v) => AQI_COLORS[Math.max(0, levelOf(v) - 1)] || AQI_COLORS[5] }));
  }
  if (layers.includes("flood")) {
    const key = seriesKey(series, /level|^z$|stage/i, /warning|guaranteed|rise/i);
    const item = latest.flood.get(station.station_id) || {};
    const refLines = [];
    if (item.warning_level_m != null) refLines.push({ y: item.warning_level_m, color: REF_WARNING, label: `${t("warning")} ${fmt(item.warning_level_m, 2)}` });
    if (item.guaranteed_level_m != null) refLines.push({ y: item.guaranteed_level_m, color: REF_GUARANTEED, label: `${t("guaranteed")} ${fmt(item.guaranteed_level_m, 2)}` });
    if (key) used.add(key);
    out.push(chart(t("chart_level"), toPoints(series[key]), { refLines }));
  }
  if (layers.includes("water")) {
    const key = seriesKey(series, /class/i);
    if (key) used.add(key);
    const bands = [1, 2, 3, 4, 5, 6].map((c) => ({ lo: c - 0.5, hi: c + 0.5, color: `${WATER_COLORS[c]}33` }));
    const ticks = [1, 2, 3, 4, 5, 6].map((c) => ({ v: c, text: romanOf(c) }));
    out.push(chart(t("chart_class"), toPoints(series[key]), { kind: "step", yMin: 0.5, yMax: 6.5, invert: true, bands, ticks, pointColor: (v) => WATER_COLORS[Math.round(v)] }));
  }
  if (layers.includes("rain")) {
    const hourly = seriesKey(series, /(rain|sum).*1h|1h.*rain/i);
    const interval = seriesKey(series, /rain|precip|drp/i, /day|total|sum|accum|[0-9]+h/i);
    for (const k of [hourly, interval]) if (k) used.add(k);
    const points = hourly ? toPoints(series[hourly]) : hourlySums(toPoints(series[interval]));
    out.push(chart(t("chart_rain"), points, { kind: "bars" }));
  }
  for (const key of Object.keys(series).filter((k) => !used.has(k)).slice(0, 12)) {
    out.push(chart(pollutantName(key), toPoints(series[key]), {}));
  }
  return out;
}

/** Render the station page of `doc` (the history answer) into `root`. */
export function renderStation(root, doc, overview, t, lang) {
  const station = overview.stations.find((st) => st.station_id === doc.station_id) || { station_id: doc.station_id, name: doc.name, kind: doc.kind };
  const layers = stationLayers({ ...station, kind: station.kind || doc.kind }, overview.latest);
  const width = Math.max(280, Math.min(900, Math.round(root.clientWidth || 600)) - 2);
  const where = [station.region, station.basin].filter(Boolean).join(" · ");
  root.replaceChildren(
    h("p", {}, h("a", { href: "#/", class: "back", text: t("back") })),
    h("h2", { id: "station-name", "data-station-id": doc.station_id, text: doc.name || station.name }),
    h("p", { class: "muted", text: [t(`kind_${kindKey(station.kind || doc.kind)}`), where].filter(Boolean).join(" · ") }),
    h("div", { class: "cards" }, layers.map((layer) => latestFacts(station, layer, overview.latest, t, lang))),
    h("h3", { class: "section", text: t("last48") }),
    h("div", { class: "charts" }, charts(doc, station, layers, overview.latest, t, lang, width)),
  );
}
