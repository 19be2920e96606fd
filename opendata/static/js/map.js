// The station map: an inline SVG drawn at the container's pixel size (markers and text keep
// their size on a phone), with a graticule, a scale bar, one marker per station and labels.

import { degreeLabel, fitProjection, graticule, mapHeight, placeLabels, scaleBar } from "./geo.js";
import { s } from "./svg.js";

const MARKER_R = 9;
const HIT_R = 20; // touch target around each marker
const MARGIN = 36;
const FONT_PX = 12;

function textWidth(text) {
  // CJK glyphs are about one em wide, Latin about 0.58 em
  let w = 0;
  for (const ch of text) w += ch.charCodeAt(0) > 0x2e80 ? FONT_PX : FONT_PX * 0.58;
  return w + 4;
}

function drawGraticule(proj, width, height, t) {
  const [lonLo, latHi] = proj.invert(0, 0);
  const [lonHi, latLo] = proj.invert(width, height);
  const g = s("g", { class: "graticule", "aria-hidden": "true" });
  for (const lon of graticule(lonLo, lonHi, 4).values) {
    const [x] = proj.project(lon, latLo);
    g.append(s("line", { x1: x, y1: 0, x2: x, y2: height }), s("text", { x: x + 3, y: height - 4 }, degreeLabel(lon, "lon")));
  }
  for (const lat of graticule(latLo, latHi, 4).values) {
    const [, y] = proj.project(lonLo, lat);
    g.append(s("line", { x1: 0, y1: y, x2: width, y2: y }), s("text", { x: 3, y: y - 3 }, degreeLabel(lat, "lat")));
  }
  const bar = scaleBar(proj.pxPerKm, Math.min(140, width / 4));
  const x0 = width - bar.px - 14;
  const y0 = height - 22;
  const scale = s(
    "g",
    { class: "scalebar", "aria-label": `${t("scale")} ${bar.text}` },
    s("rect", { x: x0 - 6, y: y0 - 16, width: bar.px + 12, height: 26, rx: 3 }),
    s("path", { d: `M${x0},${y0 - 4}v6h${bar.px}v-6` }),
    s("text", { x: x0 + bar.px / 2, y: y0 - 6, "text-anchor": "middle" }, bar.text),
  );
  return [g, scale];
}

/**
 * Draw `items` ([{station, look, layer}], look = present()) into `container`.
 * `allPoints` fixes the extent (every station with coordinates), so switching layers
 * does not move the map.
 */
export function renderMap(container, items, allPoints, t) {
  const width = Math.max(280, Math.round(container.clientWidth || 800));
  const height = mapHeight(allPoints, width, 260, Math.max(320, Math.round(window.innerHeight * 0.7)));
  const proj = fitProjection(allPoints, width, height, MARGIN);
  const svg = s("svg", {
    id: "map-svg",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "group", // holds links (the markers), so not role="img"
    "aria-label": t("map"),
  });
  svg.append(s("rect", { class: "sea", x: 0, y: 0, width, height }), ...drawGraticule(proj, width, height, t));

  const placed = items
    .filter((it) => it.station.lat != null && it.station.lon != null)
    .map((it) => {
      const [x, y] = proj.project(it.station.lon, it.station.lat);
      return { ...it, x, y, text: `${it.label ?? it.station.name} ${it.look.value}` };
    });
  // where labels may not go: the scale bar (bottom right)
  const reserved = [{ x: width - 170, y: height - 42, w: 170, h: 42 }];
  const spots = placeLabels(
    placed.map((p) => ({ x: p.x, y: p.y, w: textWidth(p.text), shortW: textWidth(p.look.value), h: FONT_PX + 4, r: MARKER_R })),
    width,
    height,
    reserved,
  );
  const labels = s("g", { class: "labels", "aria-hidden": "true" });
  const hits = s("g", { class: "hits", "aria-hidden": "true" }); // touch targets, under every marker
  const markers = s("g", { class: "markers" });
  placed.forEach((p, i) => {
    const { station, look } = p;
    const spot = spots[i];
    labels.append(
      s(
        "text",
        { x: spot.x, y: spot.y, "text-anchor": spot.anchor, "dominant-baseline": "middle", "data-station-id": station.station_id },
        spot.short ? look.value : p.text,
      ),
    );
    const href = `#/station/${encodeURIComponent(station.station_id)}`;
    hits.append(s("a", { href, tabindex: -1 }, s("circle", { class: "hit", cx: p.x, cy: p.y, r: HIT_R })));
    const title = [station.name, look.value, look.category].filter(Boolean).join(" · ");
    markers.append(
      s(
        "a",
        {
          href,
          class: `marker layer-${p.layer}${look.hasData ? "" : " nodata"}`,
          "data-station-id": station.station_id,
          "data-color": look.color,
          "data-layer": p.layer,
          "aria-label": title,
        },
        s("title", {}, title),
        s("circle", { class: "dot", cx: p.x, cy: p.y, r: MARKER_R, fill: look.color }),
      ),
    );
  });
  svg.append(labels, hits, markers);
  container.replaceChildren(svg);
}
