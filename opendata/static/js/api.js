// The open-data API, read relative to the page (the service serves both).

/** An API answer that was not 2xx: `status` (0 = no answer), a short `reason`, `retryAfterS` (429). */
export class ApiError extends Error {
  constructor(status, reason, retryAfterS = null) {
    super(reason);
    this.status = status;
    this.reason = reason;
    this.retryAfterS = retryAfterS;
  }
}

/** GET an API path (e.g. "api/v1/stations") as JSON; ApiError when it fails. */
export async function getJson(path) {
  let resp;
  try {
    resp = await fetch(path, { headers: { Accept: "application/json" } });
  } catch {
    throw new ApiError(0, "network");
  }
  if (!resp.ok) {
    const retry = Number.parseInt(resp.headers.get("Retry-After") || "", 10);
    throw new ApiError(resp.status, resp.status === 429 ? "rate" : `HTTP ${resp.status}`, Number.isFinite(retry) ? retry : null);
  }
  return resp.json();
}

function byStation(list) {
  return new Map((list?.data || []).map((item) => [item.station_id, item]));
}

/** Every public station and the latest of each domain: {stations, latest: {air, water, flood, rain}}. */
export async function loadOverview() {
  const [stations, air, water, flood, rain] = await Promise.all([
    getJson("api/v1/stations"),
    getJson("api/v1/aqi/latest"),
    getJson("api/v1/water/latest"),
    getJson("api/v1/hydro/levels"),
    getJson("api/v1/rainfall"),
  ]);
  return {
    stations: stations.data || [],
    latest: { air: byStation(air), water: byStation(water), flood: byStation(flood), rain: byStation(rain) },
    generatedAt: stations.generated_at,
  };
}

/** A station's last `hours` hours: the API's history document. */
export function loadHistory(stationId, hours = 48) {
  return getJson(`api/v1/stations/${encodeURIComponent(stationId)}/history?hours=${hours}`);
}
