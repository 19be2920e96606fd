// The station list under the map: the same stations, colours, values and categories in text,
// air stations first by AQI (worst first), then the others by name.

import { h } from "./svg.js";

function order(a, b, latest) {
  const aqiA = a.layer === "air" ? latest.air.get(a.station.station_id)?.aqi ?? -1 : null;
  const aqiB = b.layer === "air" ? latest.air.get(b.station.station_id)?.aqi ?? -1 : null;
  if (aqiA != null && aqiB != null && aqiA !== aqiB) return aqiB - aqiA;
  if ((aqiA == null) !== (aqiB == null)) return aqiA == null ? 1 : -1;
  return a.station.name.localeCompare(b.station.name);
}

/** Fill `ul` with one row per item ([{station, look, layer}]). */
export function renderList(ul, items, latest, t) {
  const rows = [...items].sort((a, b) => order(a, b, latest)).map(({ station, look, layer }) => {
    const where = station.lat == null || station.lon == null ? t("no_coords") : [station.region, station.basin].filter(Boolean).join(" · ");
    return h(
      "li",
      { "data-station-id": station.station_id, "data-color": look.color, "data-layer": layer },
      h(
        "a",
        { href: `#/station/${encodeURIComponent(station.station_id)}` },
        h("span", { class: "swatch", style: `background:${look.color}`, "aria-hidden": "true" }),
        h("span", { class: "name", text: station.name }),
        h("span", { class: "value", text: look.value }),
        h("span", { class: "category", text: look.category }),
        h("span", { class: "meta", text: [t(`kind_${kindKey(station.kind)}`), where].filter(Boolean).join(" · ") }),
      ),
    );
  });
  if (!rows.length) rows.push(h("li", { class: "empty", text: t("no_stations") }));
  ul.replaceChildren(...rows);
}

/** The i18n key suffix of a station kind. */
export function kindKey(kind) {
  return ["air", "water", "gauge", "rain"].includes(kind) ? kind : "other";
}
