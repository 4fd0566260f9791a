// The one way the dashboard talks to the server: JSON envelopes, the bearer token, one refresh
// on 401 (shared by concurrent requests and, where the browser allows, by every tab), and a
// 'tora:signed-out' event when the session cannot be renewed.

import * as auth from './auth.js';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

let refreshing = null;

/** Renews the access token once, however many requests ask at the same time. */
function refresh(failedToken) {
  if (!refreshing) {
    const run = () => renew(failedToken);
    const locked = navigator.locks ? navigator.locks.request('tora-refresh', run) : run();
    refreshing = locked.finally(() => { refreshing = null; });
  }
  return refreshing;
}

async function renew(failedToken) {
  const s = auth.session();
  if (!s || !s.refresh_token) return false;
  // Another tab may have renewed it while we waited: reusing a rotated refresh token would end
  // the login, so take the new access token instead.
  if (s.access_token !== failedToken && !auth.expiring()) return true;
  let res;
  try {
    res = await fetch('/api/refresh', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token: s.refresh_token }),
    });
  } catch {
    return false;
  }
  if (!res.ok) return false;
  const body = await res.json();
  auth.save(body.data);
  return true;
}

function signedOut() {
  auth.clear();
  window.dispatchEvent(new CustomEvent('tora:signed-out'));
}

function url(path, query) {
  const u = new URL(`/api${path}`, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, v);
  }
  return u.pathname + u.search;
}

/** Sends one request with the current token; on 401 renews once and retries. Returns a Response. */
async function send(method, path, { body, query, signal, anonymous } = {}) {
  const make = () => {
    const headers = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    const s = auth.session();
    if (!anonymous && s) headers.authorization = `Bearer ${s.access_token}`;
    return fetch(url(path, query), {
      method, headers, signal,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  };
  if (!anonymous && auth.signedIn() && auth.expiring()) await refresh(auth.session().access_token);
  const used = auth.session() && auth.session().access_token;
  let res = await make();
  if (res.status === 401 && !anonymous) {
    if (await refresh(used)) res = await make();
    if (res.status === 401) {
      signedOut();
      throw new ApiError(401, 'UNAUTHORIZED', 'Your session has ended; sign in again.');
    }
  }
  return res;
}

async function envelope(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    throw new ApiError(res.status, 'BAD_RESPONSE', `The server answered ${res.status} without JSON.`);
  }
  if (!res.ok) {
    throw new ApiError(res.status, body && body.error, body && body.message);
  }
  return body;
}

/** request('GET', '/workspaces') -> the envelope's data. */
export async function request(method, path, options = {}) {
  const body = await envelope(await send(method, path, options));
  return options.envelope ? body : body.data;
}

export const get = (path, query, options = {}) => request('GET', path, { ...options, query });
export const post = (path, body, options = {}) => request('POST', path, { ...options, body });
export const put = (path, body, options = {}) => request('PUT', path, { ...options, body });
export const del = (path, options = {}) => request('DELETE', path, options);

/** A page of a list endpoint: {data, next_cursor, total}. */
export const page = (path, query, options = {}) => request('GET', path, { ...options, query, envelope: true });

/** A non-JSON download (CSV) as a Blob, with the same auth handling. */
export async function blob(path, options = {}) {
  const res = await send('GET', path, options);
  if (!res.ok) await envelope(res);
  return res.blob();
}

/** Login or signup without a token; login stores the session. */
export async function login(email, password) {
  const data = await request('POST', '/login', { body: { email, password }, anonymous: true });
  auth.save(data);
  return data;
}

export function signup(email, password) {
  return request('POST', '/signup', { body: { email, password }, anonymous: true });
}
