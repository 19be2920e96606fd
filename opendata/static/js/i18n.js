// UI strings in Chinese and English, and the choice of language:
// ?lang=zh|en wins (and is remembered), then localStorage, then navigator.language.

const STORE_KEY = "stationflow.lang";

const STRINGS = {
  zh: {
    title: "环境监测公开数据",
    layers: "图层",
    layer_all: "全部",
    layer_air: "空气",
    layer_water: "水质",
    layer_flood: "水位",
    layer_rain: "雨量",
    legend: "图例",
    map: "站点地图",
    list: "站点列表",
    footer: "数据每分钟自动刷新；原始数据见",
    loading: "正在加载…",
    updated: "更新于 {time}",
    load_error: "暂时无法获取最新数据（{reason}），稍后自动重试。",
    not_found: "未找到该站点，或该站点未公开。",
    rate_limited: "请求过于频繁，请稍候",
    no_data: "暂无数据",
    no_coords: "无坐标",
    no_stations: "此图层暂无公开站点。",
    back: "← 返回地图",
    kind_air: "空气站",
    kind_water: "水质断面",
    kind_gauge: "水位站",
    kind_rain: "雨量站",
    kind_other: "站点",
    aqi: "AQI",
    primary: "首要污染物",
    water_class: "水质类别",
    class_label: "{label}类",
    target: "目标 {label}类",
    meets: "达标",
    fails: "未达标",
    deciding: "定类指标",
    level: "水位",
    warning: "警戒水位",
    guaranteed: "保证水位",
    margin_below: "低于警戒 {m} 米",
    margin_above: "超警戒 {m} 米",
    rise: "上涨 {v} 米/时",
    fall: "回落 {v} 米/时",
    steady: "水位平稳",
    state_normal: "正常",
    state_approaching: "接近警戒",
    state_above_warning: "超警戒",
    state_above_guaranteed: "超保证",
    rain_24h: "24小时雨量",
    rain_sums: "累计雨量",
    rain_none: "无降水",
    time: "时间",
    last48: "最近48小时",
    chart_aqi: "逐时AQI",
    chart_level: "水位（米）",
    chart_class: "水质类别",
    chart_rain: "逐时雨量（毫米）",
    chart_empty: "最近48小时暂无数据。",
    points: "{n} 个数据点",
    scale: "比例尺",
    aqi_1: "优", aqi_2: "良", aqi_3: "轻度污染", aqi_4: "中度污染", aqi_5: "重度污染", aqi_6: "严重污染",
    wq_12: "Ⅰ–Ⅱ类", wq_3: "Ⅲ类", wq_4: "Ⅳ类", wq_5: "Ⅴ类", wq_6: "劣Ⅴ类",
    rain_0: "无降水", rain_1: "小雨", rain_2: "中雨", rain_3: "大雨", rain_4: "暴雨", rain_5: "大暴雨", rain_6: "特大暴雨",
  },
  en: {
    title: "Open environmental data",
    layers: "Layers",
    layer_all: "All",
    layer_air: "Air",
    layer_water: "Water",
    layer_flood: "Rivers",
    layer_rain: "Rain",
    legend: "Legend",
    map: "Map of the stations",
    list: "Stations",
    footer: "Refreshed every minute; the raw data:",
    loading: "Loading…",
    updated: "Updated {time}",
    load_error: "The latest data could not be loaded ({reason}); trying again shortly.",
    not_found: "No such station, or it is not public.",
    rate_limited: "too many requests, please wait",
    no_data: "no data",
    no_coords: "no coordinates",
    no_stations: "No public stations on this layer.",
    back: "← Back to the map",
    kind_air: "air station",
    kind_water: "water section",
    kind_gauge: "river gauge",
    kind_rain: "rain gauge",
    kind_other: "station",
    aqi: "AQI",
    primary: "Primary pollutant",
    water_class: "Water class",
    class_label: "Class {label}",
    target: "target {label}",
    meets: "meets target",
    fails: "misses target",
    deciding: "deciding",
    level: "Level",
    warning: "Warning level",
    guaranteed: "Guaranteed level",
    margin_below: "{m} m below warning",
    margin_above: "{m} m above warning",
    rise: "rising {v} m/h",
    fall: "falling {v} m/h",
    steady: "steady",
    state_normal: "normal",
    state_approaching: "approaching warning",
    state_above_warning: "above warning",
    state_above_guaranteed: "above guaranteed",
    rain_24h: "24 h rainfall",
    rain_sums: "Rainfall sums",
    rain_none: "no rain",
    time: "Time",
    last48: "Last 48 hours",
    chart_aqi: "Hourly AQI",
    chart_level: "Level (m)",
    chart_class: "Water class",
    chart_rain: "Hourly rainfall (mm)",
    chart_empty: "No data in the last 48 hours.",
    points: "{n} data points",
    scale: "Scale",
    aqi_1: "Excellent", aqi_2: "Good", aqi_3: "Lightly polluted", aqi_4: "Moderately polluted",
    aqi_5: "Heavily polluted", aqi_6: "Severely polluted",
    wq_12: "Class I–II", wq_3: "Class III", wq_4: "Class IV", wq_5: "Class V", wq_6: "Worse than V",
    rain_0: "no rain", rain_1: "light rain", rain_2: "moderate rain", rain_3: "heavy rain", rain_4: "rainstorm",
    rain_5: "heavy rainstorm", rain_6: "extreme rainstorm",
  },
};

export const LANGS = Object.keys(STRINGS);

/** The language to start in: ?lang=, then the remembered choice, then the browser's. */
export function initialLang(search, stored, browserLang) {
  const asked = new URLSearchParams(search).get("lang");
  if (asked && LANGS.includes(asked)) return asked;
  if (stored && LANGS.includes(stored)) return stored;
  return (browserLang || "").toLowerCase().startsWith("zh") ? "zh" : "en";
}

/** The stored language choice, or null when storage is unavailable. */
export function storedLang() {
  try {
    return window.localStorage.getItem(STORE_KEY);
  } catch {
    return null;
  }
}

/** Remember the language choice (silently skipped when storage is unavailable). */
export function rememberLang(lang) {
  try {
    window.localStorage.setItem(STORE_KEY, lang);
  } catch {
    /* private mode: the choice lasts for this page only */
  }
}

/** A translator for `lang`: t(key, {name: value}) with {name} placeholders. */
export function translator(lang) {
  const table = STRINGS[lang] || STRINGS.en;
  return (key, params = {}) => {
    const text = table[key] ?? STRINGS.en[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ""));
  };
}

/** Put the translated text into every [data-i18n] element and [data-i18n-label] aria-label. */
export function applyStatic(root, t, lang) {
  root.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  root.title = `stationflow — ${t("title")}`;
}
