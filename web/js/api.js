// The REST bridge, as the dashboard uses it. The session lives in an
// httpOnly cookie the server sets on login (`x-weft-session: cookie`), so no
// token is ever visible to scripts; state-changing calls carry the CSRF
// token the server put in the readable `weft_csrf` cookie.

/** True for the rejection of a call whose signal aborted (the user left the page). */
export const isAbort = (e) => e?.name === 'AbortError';

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message || `HTTP ${status}`);
    this.status = status;   // HTTP status (0: the network failed)
    this.code = code;       // gRPC code number from the error body, if any
    this.body = body;
  }
}

const listeners = new Set();
/** Called with no argument when the session is gone (401 after a refresh try). */
export function onSignedOut(fn) { listeners.add(fn); return () => listeners.delete(fn); }

export function cookie(name) {
  for (const part of document.cookie.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return null;
}

function headersFor(method, extra) {
  const headers = { accept: 'application/json', 'x-weft-session': 'cookie' };
  if (method !== 'GET' && method !== 'HEAD') {
    const csrf = cookie('weft_csrf');
    if (csrf) headers['x-weft-csrf'] = csrf;
  }
  return Object.assign(headers, extra || {});
}

let refreshing = null;
/** Trades the refresh cookie for a new session cookie; true if it worked. */
export function refreshSession() {
  // No CSRF cookie: no session was ever issued here, nothing to refresh.
  if (!cookie('weft_csrf')) return Promise.resolve(false);
  if (!refreshing) {
    const run = () => fetch('/users/refresh', {
      method: 'POST', headers: headersFor('POST', { 'content-type': 'application/json' }), body: '{}',
      credentials: 'same-origin',
    }).then((r) => r.ok, () => false);
    // One refresh at a time across every tab: they share the cookie jar,
    // and a refresh token presented twice revokes the session.
    refreshing = (navigator.locks ? navigator.locks.request('weft-refresh', run) : run())
      .finally(() => { setTimeout(() => { refreshing = null; }, 0); });
  }
  return refreshing;
}

const noRefresh = new Set(['/users/login', '/users/register', '/users/refresh']);

async function send(method, path, body, opts) {
  const init = { method, headers: headersFor(method, opts.headers), credentials: 'same-origin', signal: opts.signal };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  try {
    return await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 14, `cannot reach the server (${e.message})`);
  }
}

async function errorOf(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  const message = body && typeof body.message === 'string' ? body.message : `${res.status} ${res.statusText}`;
  const error = new ApiError(res.status, body && body.code, message, body);
  // 429: how long the server asks us to wait (seconds).
  const retryAfter = Number(res.headers.get('retry-after'));
  if (retryAfter > 0) error.retryAfter = retryAfter;
  return error;
}

/**
 * One REST call. `body` is sent as JSON (objects are stringified). Returns the
 * parsed JSON answer (null for 204) or throws ApiError with the server's
 * message. A 401 tries one session refresh, then tells onSignedOut listeners.
 * opts: { signal, headers, raw (return the Response) }
 */
export async function api(method, path, body, opts = {}) {
  let res = await send(method, path, body, opts);
  if (res.status === 401 && !noRefresh.has(path.split('?')[0])) {
    if (await refreshSession()) res = await send(method, path, body, opts);
    if (res.status === 401) listeners.forEach((fn) => fn());
  }
  if (!res.ok) throw await errorOf(res);
  if (opts.raw) return res;
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const post = (path, body, opts) => api('POST', path, body ?? {}, opts);
export const put = (path, body, opts) => api('PUT', path, body ?? {}, opts);
export const del = (path, opts) => api('DELETE', path, undefined, opts);

/** A query string from an object, skipping empty values. */
export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x)); else q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** Every page of a list route: `items` names the array field. Stops at `max` items. */
export async function all(path, items, params = {}, max = 1000, opts = {}) {
  const out = [];
  let pageToken = '';
  do {
    const page = await get(path + qs({ ...params, pageToken }), opts);
    out.push(...(page?.[items] || []));
    pageToken = page?.nextPageToken || '';
  } while (pageToken && out.length < max);
  return out;
}

/**
 * A server stream (NDJSON over fetch, so the CSRF-free GET rides on the
 * session cookie). Calls onMessage(object) per message; resolves when the
 * server ends the stream, rejects with ApiError on an error, or with an
 * AbortError when `signal` aborts.
 */
export async function stream(path, onMessage, { signal } = {}) {
  let res = await send('GET', path, undefined, { signal, headers: { accept: 'application/x-ndjson' } });
  if (res.status === 401 && (await refreshSession())) {
    res = await send('GET', path, undefined, { signal, headers: { accept: 'application/x-ndjson' } });
  }
  if (!res.ok) throw await errorOf(res);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (!line) continue;
      const message = JSON.parse(line);
      if (message.error && Object.keys(message).length === 1) {
        throw new ApiError(200, message.error.code, message.error.message, message);
      }
      onMessage(message);
    }
  }
}
