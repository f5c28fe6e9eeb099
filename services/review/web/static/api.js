// HTTP access to the review backend: the bearer token, JSON calls with one error type,
// and NDJSON streams (the approvals watch, a run's events) read line by line.
//
// The token lives in sessionStorage only: it dies with the tab, is never written to
// localStorage, a cookie or a URL, and every call sends it as `Authorization: Bearer`.

const TOKEN_KEY = 'graphmesh.token';

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return ''; // storage disabled: the user simply has to sign in again
  }
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // nothing stored, nothing to clear
  }
}

// A refused call. `status` is the gRPC status name (PERMISSION_DENIED...), `code` the
// graphmesh error code ("" when none), `httpStatus` the HTTP status (0: no answer at all).
// `body` keeps the whole JSON answer: a 409 ALREADY_DECIDED also carries the approval.
export class ApiError extends Error {
  constructor({ httpStatus = 0, status = '', code = '', message = '', body = null } = {}) {
    super(message || status || `HTTP ${httpStatus}`);
    this.name = 'ApiError';
    this.httpStatus = httpStatus;
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

// Called with the server's message when it answers 401 (token refused or expired); the
// shell signs out. Set once by app.js.
let unauthorizedHandler = () => {};
export function onUnauthorized(fn) {
  unauthorizedHandler = fn;
}

// '?a=1&s=X&s=Y' from an object; empty values are left out, arrays repeat the key.
export function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) {
      if (v !== undefined && v !== null && v !== '') q.append(key, String(v));
    }
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

// Sends a request with the bearer token. `token` overrides the stored one (sign-in checks a
// token before keeping it); `signIn: true` keeps a 401 from triggering the global sign-out.
async function send(path, { method = 'GET', body, signal, token, accept = 'application/json' } = {}) {
  const headers = { Accept: accept };
  const bearer = token ?? getToken();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  try {
    return await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      credentials: 'omit', // no cookies are used at all
      cache: 'no-store',
    });
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    throw new ApiError({ status: 'UNAVAILABLE', message: 'The review server cannot be reached.' });
  }
}

// Turns a non-2xx answer into an ApiError, tolerating bodies that are not our JSON (a proxy's
// HTML error page, an empty body).
async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const e = (body && typeof body.error === 'object' && body.error) || {};
  return new ApiError({
    httpStatus: response.status,
    status: typeof e.status === 'string' ? e.status : '',
    code: typeof e.code === 'string' ? e.code : '',
    message: typeof e.message === 'string' && e.message ? e.message : `${response.status} ${response.statusText}`.trim(),
    body,
  });
}

// The HTTP status the backend gives each gRPC status, for errors that arrive inside a stream.
const HTTP_OF_STATUS = {
  INVALID_ARGUMENT: 400, OUT_OF_RANGE: 400, UNAUTHENTICATED: 401, PERMISSION_DENIED: 403, NOT_FOUND: 404,
  ALREADY_EXISTS: 409, FAILED_PRECONDITION: 409, ABORTED: 409, RESOURCE_EXHAUSTED: 429, UNIMPLEMENTED: 501,
  UNAVAILABLE: 503, DEADLINE_EXCEEDED: 504,
};

// A stream that fails after it has started ends with {"type": "error", "error": {...}}: the
// same refusal as an HTTP error would have been.
function streamError(item) {
  const e = item.error && typeof item.error === 'object' ? item.error : {};
  const status = typeof e.status === 'string' ? e.status : 'UNKNOWN';
  return new ApiError({
    httpStatus: HTTP_OF_STATUS[status] || 500,
    status,
    code: typeof e.code === 'string' ? e.code : '',
    message: typeof e.message === 'string' && e.message ? e.message : 'The stream failed.',
    body: item,
  });
}

async function check(response, signIn) {
  if (response.ok) return response;
  const err = await errorFrom(response);
  if (err.httpStatus === 401 && !signIn) unauthorizedHandler(err.message);
  throw err;
}

// A JSON call: resolves with the parsed body, rejects with ApiError (or AbortError).
export async function api(path, options = {}) {
  const response = await check(await send(path, options), options.signIn);
  if (response.status === 204) return null;
  try {
    return await response.json();
  } catch {
    throw new ApiError({ httpStatus: response.status, status: 'INTERNAL', message: 'The server sent an answer that is not JSON.' });
  }
}

// Opens an NDJSON stream and calls onItem(object) for each line until the server ends it
// (resolves) or it breaks (rejects). `onOpen` runs once the server has answered 2xx.
// A watchdog aborts a stream that has been silent for `idleMs` (the server sends heartbeats,
// so silence means a dead connection a proxy kept half-open).
export async function streamNdjson(path, { signal, onItem, onOpen, idleMs = 0 } = {}) {
  const local = new AbortController();
  const abort = () => local.abort();
  if (signal) {
    if (signal.aborted) local.abort();
    else signal.addEventListener('abort', abort, { once: true });
  }
  let timer = 0;
  let idle = false;
  const arm = () => {
    if (!idleMs) return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      idle = true;
      local.abort();
    }, idleMs);
  };
  try {
    arm();
    const response = await check(await send(path, { signal: local.signal, accept: 'application/x-ndjson' }), false);
    if (onOpen) onOpen();
    if (!response.body) throw new ApiError({ status: 'INTERNAL', message: 'This browser cannot read streamed answers.' });
    await readLines(response.body, local.signal, (line) => {
      let item;
      try {
        item = JSON.parse(line);
      } catch {
        console.warn('graphmesh: skipped a stream line that is not JSON', line.slice(0, 200));
        return;
      }
      if (item && item.type === 'error') {
        const err = streamError(item);
        if (err.httpStatus === 401) unauthorizedHandler(err.message);
        throw err;
      }
      onItem(item);
    }, arm);
  } catch (err) {
    if (idle && !(signal && signal.aborted)) {
      throw new ApiError({ status: 'UNAVAILABLE', message: 'The stream went silent.' });
    }
    throw err;
  } finally {
    clearTimeout(timer);
    if (signal) signal.removeEventListener('abort', abort);
  }
}

// Splits a byte stream into lines (without the newline), calling onLine for each non-empty
// one; `onChunk` runs on every chunk received (the watchdog). Exported for tests.
export async function readLines(body, signal, onLine, onChunk = () => {}) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  const cancel = () => reader.cancel().catch(() => {});
  if (signal) signal.addEventListener('abort', cancel, { once: true });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      onChunk();
      buffer += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (line) onLine(line);
      }
    }
    buffer += decoder.decode();
    if (buffer.trim()) onLine(buffer.trim());
    if (signal && signal.aborted) throw new DOMException('The stream was aborted.', 'AbortError');
  } finally {
    if (signal) signal.removeEventListener('abort', cancel);
  }
}

export function isAbort(err) {
  return Boolean(err) && err.name === 'AbortError';
}

// Reconnection delays: 1 s, 2 s, 4 s, 8 s, then 10 s.
export function backoffMs(attempt) {
  return Math.min(10000, 1000 * 2 ** Math.max(0, attempt));
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}
