// The session: tokens from POST /api/login kept in localStorage (no cookies, so no request is
// authenticated by ambient credentials). Every tab shares it.

const KEY = 'tora.session';

/** {access_token, refresh_token, expires_at, user: {id, email}} or null. */
export function session() {
  try {
    return JSON.parse(localStorage.getItem(KEY) || 'null');
  } catch {
    return null;
  }
}

export function signedIn() {
  const s = session();
  return Boolean(s && s.access_token && s.refresh_token);
}

export function user() {
  const s = session();
  return s ? s.user : null;
}

/** Stores a login or refresh reply; a refresh reply keeps the user we already know. */
export function save(reply) {
  const previous = session();
  localStorage.setItem(KEY, JSON.stringify({
    access_token: reply.access_token,
    refresh_token: reply.refresh_token,
    expires_at: reply.expires_at,
    user: reply.user || (previous && previous.user) || null,
  }));
}

export function clear() {
  localStorage.removeItem(KEY);
}

/** Whether the access token is past (or within 15 s of) its expiry. */
export function expiring() {
  const s = session();
  return !s || !s.expires_at || s.expires_at * 1000 - Date.now() < 15000;
}
