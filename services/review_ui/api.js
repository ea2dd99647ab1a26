// The review API client: one `request` that adds the analyst token and turns every failure
// (network, 4xx, 5xx) into an ApiError with a message fit for the status bar.

const TOKEN_KEY = "riskgraph.review.token";

// The UI is served at <api root>/review/, so the API root is one level up from this module.
const API_ROOT = new URL("../", import.meta.url);

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

class ApiError extends Error {
  /** `status` is 0 for a network failure; `detail` is the body's `detail` (or the body). */
  constructor(status, detail, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
  }

  /** The review policy's deny reasons, when this is a 403 from it. */
  get policyReasons() {
    const reasons = this.detail?.reasons;
    return this.status === 403 && Array.isArray(reasons) ? reasons : null;
  }
}

let onUnauthorized = () => {};

/** Called with the ApiError whenever the API answers 401 (the token is bad or expired). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/** Turn an error body into one readable line. */
function describe(status, statusText, detail) {
  let text;
  if (typeof detail === "string") text = detail;
  else if (Array.isArray(detail)) {
    // FastAPI's validation errors: [{loc: ["query", "min_score"], msg: "..."}]
    const field = (loc) => (loc ?? []).filter((p) => p !== "body" && p !== "query").join(".");
    text = detail.map((d) => `${field(d.loc)}: ${d.msg}`).join("; ");
  } else if (Array.isArray(detail?.reasons)) text = `denied: ${detail.reasons.join(", ")}`;
  else if (detail) text = JSON.stringify(detail);
  return `${status} ${statusText || "error"}${text ? ` — ${text}` : ""}`;
}

/**
 * Call the API. Resolves to the parsed JSON body; rejects with an ApiError, or with the
 * AbortError when `signal` aborts.
 */
async function request(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(new URL(path, API_ROOT), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, null, `Cannot reach the API (${err.message}). Check your connection.`);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text; // e.g. a proxy's HTML error page
    }
  }
  if (!res.ok) {
    const detail = data && typeof data === "object" && "detail" in data ? data.detail : data;
    const error = new ApiError(res.status, detail, describe(res.status, res.statusText, detail));
    if (res.status === 401) onUnauthorized(error);
    throw error;
  }
  return data;
}

/** A query string; empty values are left out so the API applies its defaults. */
function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
  }
  return q.toString();
}

const id = encodeURIComponent;

export const api = {
  me: (opts) => request("v1/me", opts),
  cases: (params, opts) => request(`v1/cases?${query(params)}`, opts),
  case: (caseId, opts) => request(`v1/cases/${id(caseId)}`, opts),
  verdict: (caseId, verdict, note) =>
    request(`v1/cases/${id(caseId)}/verdict`, { method: "POST", body: { verdict, note } }),
  rings: (opts) => request("v1/rings", opts),
  ringVerdict: (ringId, verdict, note) =>
    request(`v1/rings/${id(ringId)}/verdict`, { method: "POST", body: { verdict, note } }),
};
