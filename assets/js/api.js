// The one way the dashboard talks to the server: JSON envelopes, the bearer token, one refresh
// on 401 (shared by concurrent requests and, where the browser allows, by every tab). Only a
// refresh that the server refuses (401: the refresh token is dead) signs the user out, with a
// 'tora:signed-out' event. A server out of reach or busy (network error, 429, 5xx) leaves the
// session alone: net.js shows a banner, reads (GET) wait for the server and try again, and an
// action the user started fails at once with a message that says why.

import * as auth from './auth.js';
import * as net from './net.js';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

/** The server could not be reached, or asked us to come back later; the session is intact. */
class Trouble extends Error {
  constructor(kind, retryAfter = 0) {
    super(kind);
    this.kind = kind; // 'offline' or 'busy'
    this.retryAfter = retryAfter; // seconds, 0 when the server did not say
  }

  /** What a user who pressed a button reads. */
  forUser() {
    if (this.kind === 'offline') {
      return new ApiError(0, 'OFFLINE', 'Offline: can\u2019t reach the server. Try again when it\u2019s back.');
    }
    const when = this.retryAfter > 0 ? `in ${Math.ceil(this.retryAfter)} s` : 'in a moment';
    return new ApiError(503, 'BUSY', `The server is busy; try again ${when}.`);
  }
}

/** fetch(), with a network failure turned into Trouble (an abort stays an AbortError). */
async function reach(input, init) {
  try {
    return await fetch(input, init);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new Trouble('offline');
  }
}

/** The Trouble an answer means, or null. A 429 counts only where `limited` (see send). */
function troubleOf(res, limited = true) {
  const s = res.status;
  if (s === 502 || s === 504) return new Trouble('offline', retryAfter(res)); // a proxy without us
  if (s >= 500 || (s === 429 && limited)) return new Trouble('busy', retryAfter(res));
  return null;
}

function retryAfter(res) {
  const value = res.headers.get('retry-after');
  if (!value) return 0;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? 0 : Math.max(0, (date - Date.now()) / 1000);
}

let refreshing = null;

/**
 * Renews the access token once, however many requests ask at the same time. Resolves true
 * (renewed, or another tab did) or false (the session is dead: refresh answered 401, or there is
 * none); throws Trouble when the server could not say.
 */
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
  const res = await reach('/api/refresh', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ refresh_token: s.refresh_token }),
  });
  if (res.status === 401) return false;
  const trouble = troubleOf(res);
  if (trouble) throw trouble;
  const body = await envelope(res); // any other refusal is an error to show, not a sign-out
  auth.save(body.data);
  return true;
}

function signedOut() {
  auth.clear();
  window.dispatchEvent(new CustomEvent('tora:signed-out'));
  return new ApiError(401, 'UNAUTHORIZED', 'Your session has ended; sign in again.');
}

function url(path, query) {
  const u = new URL(`/api${path}`, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, v);
  }
  return u.pathname + u.search;
}

/**
 * Sends one request with the current token; on 401 renews once and sends it again. Returns a
 * Response. `retry` (default: only for GET) makes it wait out a server that is away or busy and
 * try again until it answers or `signal` aborts; without it the request fails at once with a
 * message for the user.
 */
async function send(method, path, options = {}) {
  const retry = options.retry ?? method === 'GET';
  for (;;) {
    try {
      const res = await attempt(method, path, options, retry);
      net.succeeded();
      return res;
    } catch (err) {
      if (!(err instanceof Trouble)) {
        if (err instanceof ApiError) net.succeeded(); // an answer, even a refusal, means it is back
        throw err;
      }
      if (!retry) {
        // Being away is news for the banner (it then checks when we are back); a busy answer
        // to one action is only that action's.
        if (err.kind === 'offline' || net.problem()) net.failed(err.kind, err.retryAfter);
        throw err.forUser();
      }
      net.failed(err.kind, err.retryAfter);
      await net.nextTry(options.signal);
    }
  }
}

async function attempt(method, path, { body, query, signal, anonymous }, retry) {
  const make = () => {
    const headers = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    const s = auth.session();
    if (!anonymous && s) headers.authorization = `Bearer ${s.access_token}`;
    return reach(url(path, query), {
      method, headers, signal,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  };
  if (!anonymous && auth.signedIn() && auth.expiring()) {
    if (!await refresh(auth.session().access_token)) throw signedOut();
  }
  const used = auth.session() && auth.session().access_token;
  let res = await make();
  if (res.status === 401 && !anonymous) {
    if (!await refresh(used)) throw signedOut();
    res = await make();
    // A token renewed a moment ago and still refused: the server refuses the account itself.
    if (res.status === 401) throw signedOut();
  }
  // A 429 on a read means "later"; on an action (login, password) it is that action's answer.
  const trouble = troubleOf(res, retry);
  if (trouble) throw trouble;
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

/** A non-JSON download (CSV) as a Blob, with the same auth handling; a button starts it, so it fails at once. */
export async function blob(path, options = {}) {
  const res = await send('GET', path, { retry: false, ...options });
  if (!res.ok) await envelope(res);
  return res.blob();
}

/** A non-JSON answer (an artifact) as a Response, to read or stream; a refusal throws ApiError. */
export async function response(path, options = {}) {
  const res = await send('GET', path, { retry: false, ...options });
  if (!res.ok) await envelope(res);
  return res;
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

/**
 * Signs out of this browser: ends the login on the server (POST /api/logout with the refresh
 * token), then forgets the tokens here, even when the server cannot be reached (the user asked
 * to leave this browser). Resolves to whether the server ended the login.
 */
export async function signOut() {
  const s = auth.session();
  let ended = true;
  if (s && s.refresh_token) {
    try {
      await request('POST', '/logout', { body: { refresh_token: s.refresh_token }, anonymous: true });
    } catch {
      ended = false;
    }
  }
  auth.clear();
  return ended;
}

/** Ends every login of the account (DELETE /api/me/sessions), then this one here; throws, still signed in, when that failed. */
export async function signOutEverywhere() {
  await request('DELETE', '/me/sessions');
  auth.clear();
}

// With nothing else waiting for the server, the banner's timer asks whether it is back: who am I
// when signed in (so a refresh that was refused as busy is tried too), the first-run hint if not.
net.setProbe(() => (auth.signedIn()
  ? send('GET', '/me', { retry: false })
  : send('GET', '/setup', { anonymous: true, retry: false })));
