// Calls to the REST API. Every failure becomes an ApiError with a message and, when the
// server named them, the fields at fault as paths like ["optimizer", "lr"].

const TOKEN_KEY = "gradbook.token";

export function getToken() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

export function authHeaders() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

export class ApiError extends Error {
  constructor(status, message, fields = [], body = null) {
    super(message);
    this.status = status;
    this.fields = fields; // [{path: [...], message}]
    this.body = body;
  }
}

/** "model.layers[0].units" -> ["model", "layers", 0, "units"]. */
export function parsePath(text) {
  const path = [];
  for (const part of String(text).matchAll(/([^.[\]]+)|\[(\d+)\]/g)) {
    path.push(part[2] !== undefined ? Number(part[2]) : part[1]);
  }
  return path;
}

function asPath(loc) {
  if (loc === undefined || loc === null) return [];
  const path = Array.isArray(loc) ? loc.slice() : parsePath(loc);
  // FastAPI says where the value came from first; the spec's own paths start after "body".
  if (["body", "query", "path", "header"].includes(path[0])) path.shift();
  return path.map((p) => (typeof p === "string" && /^\d+$/.test(p) ? Number(p) : p));
}

function fieldError(item) {
  if (!item || typeof item !== "object") return { path: [], message: String(item) };
  const loc = item.loc ?? item.field ?? item.path ?? item.location;
  const message = item.msg ?? item.message ?? item.detail ?? JSON.stringify(item);
  return { path: asPath(loc), message: String(message) };
}

/** Reads the error bodies the API may send: FastAPI's {"detail": [...]}, {"errors": [...]},
 * {"error": {...}} or a plain message. */
export function describeError(body, status) {
  const fallback = `HTTP ${status}`;
  if (body === null || body === undefined || body === "") return { message: fallback, fields: [] };
  if (typeof body === "string") return { message: body.slice(0, 500), fields: [] };
  let inner = body.error ?? body;
  if (typeof inner === "string") {
    const fields = (body.errors || body.fields || []).map(fieldError);
    if (body.field !== undefined) fields.push({ path: asPath(body.field), message: inner });
    return { message: inner, fields };
  }
  const list = [inner.errors, inner.detail, inner.fields].find(Array.isArray);
  if (list) {
    const fields = list.map(fieldError);
    const message = inner.message || (typeof inner.detail === "string" ? inner.detail : null) ||
      fields.map((f) => (f.path.length ? `${f.path.join(".")}: ${f.message}` : f.message)).join("; ");
    return { message: message || fallback, fields };
  }
  const message = inner.message ?? inner.detail ?? inner.msg ?? fallback;
  const fields = inner.field !== undefined || inner.loc !== undefined ? [fieldError({ ...inner, msg: message })] : [];
  return { message: typeof message === "string" ? message : JSON.stringify(message), fields };
}

const listeners = new Set();
/** Called with an ApiError whenever the server answers 401 (a token is needed or wrong). */
export function onUnauthorized(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  const h = { Accept: "application/json", ...authHeaders(), ...headers };
  let payload;
  if (body !== undefined) {
    h["Content-Type"] = "application/json";
    payload = typeof body === "string" ? body : JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers: h, body: payload, signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, `cannot reach the server (${e.message})`);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const { message, fields } = describeError(data, res.status);
    const err = new ApiError(res.status, message, fields, data);
    if (res.status === 401) listeners.forEach((fn) => fn(err));
    throw err;
  }
  return data;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : "";
}

/** GET /jobs answers a list or an object holding one; take either. */
export function jobsOf(data) {
  if (Array.isArray(data)) return data;
  return data?.jobs ?? data?.items ?? data?.results ?? [];
}
