// Live points of one experiment over Server-Sent Events. EventSource cannot send headers, so it
// connects with a short-lived read-only stream token. Whenever the stream breaks (the server
// restarted, the network dropped, the token expired, the server dropped a stream that fell
// behind) we close it and reconnect our own way: a new token, then the stream from the last
// event id, so no point is missed or repeated. The token request waits for the server like every
// read (api.js, net.js), so while the server is away the banner says so and the stream follows
// it back.

import * as api from './api.js';

const FIRST_DELAY = 1000;
const MAX_DELAY = 30000;

/** follow(id, onPoints, onState) -> stop(). onPoints gets [{id, name, kind, step, value, created_at}]. */
export function follow(experimentId, onPoints, onState = () => {}) {
  const stopper = new AbortController();
  let source = null;
  let cursor = null;
  let delay = FIRST_DELAY; // before reconnecting; doubles while streams keep failing
  let timer = null;

  async function connect() {
    if (stopper.signal.aborted) return;
    let token;
    try {
      token = (await api.post(`/experiments/${experimentId}/logs/stream-token`, undefined,
        { retry: true, signal: stopper.signal })).token;
    } catch (err) {
      // Stopped, the run is gone (404), or signed out (401, handled by api.js): stay closed.
      if (err.name !== 'AbortError') onState('closed');
      return;
    }
    if (stopper.signal.aborted) return;
    const q = new URLSearchParams({ token });
    if (cursor !== null) q.set('cursor', cursor);
    const s = new EventSource(`/api/experiments/${experimentId}/stream?${q}`);
    source = s;
    s.addEventListener('open', () => { delay = FIRST_DELAY; onState('live'); });
    s.addEventListener('hello', (e) => {
      if (cursor === null) cursor = JSON.parse(e.data).cursor;
    });
    s.addEventListener('logs', (e) => {
      cursor = e.lastEventId || cursor;
      onPoints(JSON.parse(e.data));
    });
    s.addEventListener('error', () => {
      // The browser would retry by itself with the same (perhaps expired) token and without
      // telling anyone the server is away; reconnect through the token request instead.
      s.close();
      if (source !== s) return;
      source = null;
      onState('reconnecting');
      clearTimeout(timer);
      timer = setTimeout(connect, delay);
      delay = Math.min(delay * 2, MAX_DELAY);
    });
  }

  connect();
  return () => {
    stopper.abort();
    clearTimeout(timer);
    if (source) source.close();
    source = null;
  };
}
