// What a station shows on the map and in the list: its layer, colour, value and category text.
// Colours come from the API (AQI, water class, level state); the fallbacks below are the same
// standards' colours for items that lack one. Rain is coloured here by its 24 h grade.

export const AQI_COLORS = ["#00E400", "#FFFF00", "#FF7E00", "#FF0000", "#99004C", "#7E0023"]; // HJ 633 Table A.1
// GB 3838 quality colours (I–II blue, III green, IV yellow, V orange, 劣V red), as the API's.
export const WATER_COLORS = { 1: "#1E90FF", 2: "#1E90FF", 3: "#00B050", 4: "#FFD700", 5: "#FF7E00", 6: "#FF0000" };
// Level against warning, in the flood signals' colours (as the API's).
export const LEVEL_COLORS = {
  normal: "#00B050",
  approaching: "#1E90FF",
  above_warning: "#FFD700",
  above_guaranteed: "#FF7E00",
};
// GB/T 28592-2012 24 h grades (lower bounds, mm) with the usual precipitation palette.
export const RAIN_GRADES = [
  { rank: 1, low: 0.1, color: "#A6F28F" },
  { rank: 2, low: 10, color: "#3DBA3D" },
  { rank: 3, low: 25, color: "#61B8FF" },
  { rank: 4, low: 50, color: "#0000FE" },
  { rank: 5, low: 100, color: "#FA00FA" },
  { rank: 6, low: 250, color: "#800040" },
];
export const RAIN_NONE_COLOR = "#E8E8E8";
export const NO_DATA_COLOR = "#9E9E9E";

export const LAYERS = ["air", "water", "flood", "rain"];
const LAYER_OF_KIND = { air: "air", water: "water", gauge: "flood", rain: "rain" };
// "hydro" is left out: rain gauges and river gauges both measure it; their kind or data decides.
const LAYER_OF_DOMAIN = { air: "air", water: "water" };

/** The 24 h rainfall grade rank (0 = no rain, 1..6) of a total in mm. */
export function rainRank(mm) {
  if (mm == null || !(mm >= 0.1)) return 0;
  let rank = 0;
  for (const g of RAIN_GRADES) if (mm >= g.low) rank = g.rank;
  return rank;
}

/** The colour of a 24 h rainfall total. */
export function rainColor(mm) {
  const rank = rainRank(mm);
  return rank ? RAIN_GRADES[rank - 1].color : RAIN_NONE_COLOR;
}

/** The layers a station belongs to, from its kind, its domains and the latest data that name it. */
export function stationLayers(station, latest) {
  const layers = new Set();
  if (LAYER_OF_KIND[station.kind]) layers.add(LAYER_OF_KIND[station.kind]);
  for (const d of station.domains || []) if (LAYER_OF_DOMAIN[d]) layers.add(LAYER_OF_DOMAIN[d]);
  if (latest.air.has(station.station_id)) layers.add("air");
  if (latest.water.has(station.station_id)) layers.add("water");
  if (latest.flood.has(station.station_id)) layers.add("flood");
  if (latest.rain.has(station.station_id)) layers.add("rain");
  return LAYERS.filter((l) => layers.has(l));
}

/** The layer a station is drawn in under "all": its kind's, else its first. */
export function mainLayer(station, layers) {
  const own = LAYER_OF_KIND[station.kind];
  if (own && layers.includes(own)) return own;
  return layers[0] || "other";
}

function fmt(value, digits) {
  return value == null || Number.isNaN(Number(value)) ? "–" : Number(value).toFixed(digits);
}

/** The grade name of a rainfall item: the API's text in `lang`, else ours from the total. */
export function rainGradeText(item, t, lang) {
  const g = lang === "zh" ? item.grade_24h_zh : item.grade_24h;
  return g || t(`rain_${rainRank(item.sum_24h)}`);
}

/** The water class label of an item ("III类" / "Class III"). */
export function waterLabel(item, t, lang) {
  if (lang === "zh" && item.label_zh) return item.label_zh.endsWith("类") ? item.label_zh : `${item.label_zh}类`;
  return t("class_label", { label: item.label ?? item.class });
}

/**
 * How `station` looks on `layer`: {layer, color, value, category, hasData}.
 * `value` is the short text beside the marker; `category` names the colour in words.
 */
export function present(station, layer, latest, t, lang) {
  const id = station.station_id;
  if (layer === "air") {
    const item = latest.air.get(id);
    if (!item) return { layer, color: NO_DATA_COLOR, value: t("no_data"), category: "", hasData: false };
    const category = (lang === "zh" ? item.category_zh : item.category_en) || t(`aqi_${item.level}`);
    return {
      layer,
      color: item.color || AQI_COLORS[(item.level || 1) - 1],
      value: `AQI ${item.aqi}`,
      category,
      hasData: true,
    };
  }
  if (layer === "water") {
    const item = latest.water.get(id);
    if (!item) return { layer, color: NO_DATA_COLOR, value: t("no_data"), category: "", hasData: false };
    const quality = lang === "zh" ? item.quality_zh : item.quality_en;
    let category = quality || "";
    if (item.meets_target != null) {
      const target = item.target != null ? ` (${t("target", { label: romanOf(item.target) })})` : "";
      category = [category, `${item.meets_target ? t("meets") : t("fails")}${target}`].filter(Boolean).join(" · ");
    }
    return { layer, color: item.color || WATER_COLORS[item.class], value: waterLabel(item, t, lang), category, hasData: true };
  }
  if (layer === "flood") {
    const item = latest.flood.get(id);
    if (!item) return { layer, color: NO_DATA_COLOR, value: t("no_data"), category: "", hasData: false };
    return {
      layer,
      color: item.color || LEVEL_COLORS[item.state] || NO_DATA_COLOR,
      value: `${fmt(item.level_m, 2)} m`,
      category: item.state ? t(`state_${item.state}`) : "",
      hasData: true,
    };
  }
  if (layer === "rain") {
    const item = latest.rain.get(id);
    if (!item) return { layer, color: NO_DATA_COLOR, value: t("no_data"), category: "", hasData: false };
    return {
      layer,
      color: rainColor(item.sum_24h),
      value: `${fmt(item.sum_24h, 1)} mm/24h`,
      category: rainGradeText(item, t, lang),
      hasData: true,
    };
  }
  return { layer, color: NO_DATA_COLOR, value: t("no_data"), category: "", hasData: false };
}

const ROMAN = ["", "I", "II", "III", "IV", "V", "劣V"];

/** Roman numeral of a water class 1..6. */
export function romanOf(cls) {
  return ROMAN[cls] || String(cls);
}

/** Legend rows {color, text} for a layer. */
export function legendRows(layer, t) {
  if (layer === "air") return AQI_COLORS.map((color, i) => ({ color, text: `${t(`aqi_${i + 1}`)} (${AQI_BANDS[i]})` }));
  if (layer === "water")
    return [
      [WATER_COLORS[1], "wq_12"],
      [WATER_COLORS[3], "wq_3"],
      [WATER_COLORS[4], "wq_4"],
      [WATER_COLORS[5], "wq_5"],
      [WATER_COLORS[6], "wq_6"],
    ].map(([color, key]) => ({ color, text: t(key) }));
  if (layer === "flood") return Object.entries(LEVEL_COLORS).map(([state, color]) => ({ color, text: t(`state_${state}`) }));
  if (layer === "rain")
    return [{ color: RAIN_NONE_COLOR, text: t("rain_0") }, ...RAIN_GRADES.map((g) => ({ color: g.color, text: t(`rain_${g.rank}`) }))];
  return [];
}

export const AQI_BANDS = ["0–50", "51–100", "101–150", "151–200", "201–300", ">300"];

/** The part of a bilingual name ("福田 Futian") in `lang`; the whole name when it is not bilingual. */
export function shortName(name, lang) {
  const m = /^([^A-Za-z]*[\u3400-\u9fff][^A-Za-z]*?)\s+([A-Za-z].*)$/.exec(name || "");
  if (!m) return name;
  return lang === "zh" ? m[1] : m[2];
}
