// The public page: the map and list (#/) or one station (#/station/<id>), in Chinese or
// English, refreshed every minute.

import { ApiError, loadHistory, loadOverview } from "./api.js";
import { applyStatic, initialLang, rememberLang, storedLang, translator } from "./i18n.js";
import { renderList } from "./list.js";
import { renderMap } from "./map.js";
import { legendRows, mainLayer, present, shortName, stationLayers } from "./present.js";
import { renderStation } from "./station.js";
import { h } from "./svg.js";

const REFRESH_MS = 60_000;

const state = {
  lang: initialLang(window.location.search, storedLang(), navigator.language),
  layer: "all",
  overview: null,
  overviewAt: 0,
  history: null,
  error: null,
  loadedAt: null,
};
if (new URLSearchParams(window.location.search).get("lang")) rememberLang(state.lang);

const $ = (id) => document.getElementById(id);

function route() {
  const m = window.location.hash.match(/^#\/station\/(.+)$/);
  return m ? { page: "station", id: decodeURIComponent(m[1]) } : { page: "map" };
}

function reasonText(err, t) {
  if (err instanceof ApiError && err.status === 429) return t("rate_limited");
  if (err instanceof ApiError) return err.reason;
  return String(err?.message || err);
}

function showStatus(t) {
  const el = $("status");
  if (state.error) {
    el.className = "status error";
    el.textContent = state.error.status === 404 ? t("not_found") : t("load_error", { reason: reasonText(state.error, t) });
  } else if (state.loadedAt) {
    el.className = "status";
    el.textContent = t("updated", { time: state.loadedAt.toLocaleTimeString(state.lang === "zh" ? "zh-CN" : "en-GB") });
  } else {
    el.className = "status";
    el.textContent = t("loading");
  }
}

function mapItems(overview, layer, t) {
  const items = [];
  for (const station of overview.stations) {
    const layers = stationLayers(station, overview.latest);
    if (layer !== "all" && !layers.includes(layer)) continue;
    const shown = layer === "all" ? mainLayer(station, layers) : layer;
    const look = present(station, shown, overview.latest, t, state.lang);
    items.push({ station, layer: shown, look, label: shortName(station.name, state.lang) });
  }
  return items;
}

function renderLegend(t) {
  const layers = state.layer === "all" ? ["air", "water", "flood", "rain"] : [state.layer];
  $("legend").replaceChildren(
    ...layers.map((layer) =>
      h(
        "div",
        { class: "legend-group" },
        h("strong", { text: t(`layer_${layer}`) }),
        legendRows(layer, t).map((row) => h("span", { class: "legend-item" }, h("span", { class: "swatch", style: `background:${row.color}`, "aria-hidden": "true" }), row.text)),
      ),
    ),
  );
}

function renderMapView(t) {
  for (const btn of document.querySelectorAll("#layers button")) btn.setAttribute("aria-pressed", String(btn.dataset.layer === state.layer));
  renderLegend(t);
  if (!state.overview) return;
  const items = mapItems(state.overview, state.layer, t);
  const allPoints = state.overview.stations.filter((st) => st.lat != null && st.lon != null).map((st) => ({ lon: st.lon, lat: st.lat }));
  renderMap($("map"), items, allPoints, t);
  renderList($("station-list"), items, state.overview.latest, t);
}

function render() {
  const t = translator(state.lang);
  applyStatic(document, t, state.lang);
  for (const btn of document.querySelectorAll(".lang button")) btn.setAttribute("aria-pressed", String(btn.dataset.lang === state.lang));
  const r = route();
  $("map-view").hidden = r.page !== "map";
  $("station-view").hidden = r.page !== "station";
  showStatus(t);
  if (r.page === "map") renderMapView(t);
  else if (state.overview && state.history && state.history.station_id === r.id) renderStation($("station-view"), state.history, state.overview, t, state.lang);
  else if (state.error?.status === 404) $("station-view").replaceChildren(h("p", {}, h("a", { href: "#/", class: "back", text: t("back") })));
}

/** Load what the current view needs: the overview when it is older than a refresh period (or
 * `force`), and the station's history on a station page. */
async function refresh(force = false) {
  const r = route();
  const stale = force || !state.overview || Date.now() - state.overviewAt >= REFRESH_MS - 1000;
  try {
    const [overview, history] = await Promise.all([
      stale ? loadOverview() : state.overview,
      r.page === "station" ? loadHistory(r.id, 48) : null,
    ]);
    if (route().page !== r.page || (r.page === "station" && route().id !== r.id)) return; // navigated meanwhile
    if (stale) [state.overview, state.overviewAt] = [overview, Date.now()];
    state.history = history;
    state.error = null;
    state.loadedAt = new Date();
  } catch (err) {
    state.error = err instanceof ApiError ? err : new ApiError(0, String(err?.message || err));
    retrySoon(state.error);
  }
  render();
  document.body.dataset.ready = "true";
}

let retryTimer = 0;

/** After a failed load, one earlier try (after Retry-After, else 15 s) besides the minute's refresh. */
function retrySoon(err) {
  if (retryTimer || err.status === 404) return;
  const delayS = Math.min(60, Math.max(2, err.retryAfterS ?? 15));
  retryTimer = window.setTimeout(() => {
    retryTimer = 0;
    refresh();
  }, delayS * 1000);
}

function setup() {
  for (const btn of document.querySelectorAll(".lang button")) {
    btn.addEventListener("click", () => {
      state.lang = btn.dataset.lang;
      rememberLang(state.lang);
      render();
    });
  }
  for (const btn of document.querySelectorAll("#layers button")) {
    btn.addEventListener("click", () => {
      state.layer = btn.dataset.layer;
      render();
    });
  }
  window.addEventListener("hashchange", () => {
    state.history = null;
    document.body.dataset.ready = "false";
    window.scrollTo(0, 0);
    render();
    refresh();
  });
  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(render, 150);
  });
  window.setInterval(() => refresh(true), REFRESH_MS);
  render();
  refresh();
}

setup();
