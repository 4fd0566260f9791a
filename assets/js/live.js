// Live points of one experiment over Server-Sent Events. EventSource cannot send headers, so it
// connects with a short-lived read-only stream token; when the connection drops for good (the
// token expired, the server restarted) it asks for a new token and resumes after the last event
// id, so no point is missed or repeated.

import * as api from './api.js';

/** follow(id, onPoints) -> stop(). onPoints gets [{id, name, kind, step, value, created_at}]. */
export function follow(experimentId, onPoints, onState = () => {}) {
  let source = null;
  let cursor = null;
  let stopped = false;
  let retry = 1000;
  let timer = null;

  async function connect() {
    if (stopped) return;
    let token;
    try {
      token = (await api.post(`/experiments/${experimentId}/logs/stream-token`, undefined)).token;
    } catch (err) {
      onState('offline');
      if (err.status === 404 || err.status === 401) return; // gone, or signed out
      schedule();
      return;
    }
    if (stopped) return;
    const q = new URLSearchParams({ token });
    if (cursor !== null) q.set('cursor', cursor);
    source = new EventSource(`/api/experiments/${experimentId}/stream?${q}`);
    source.addEventListener('open', () => { retry = 1000; onState('live'); });
    source.addEventListener('hello', (e) => {
      if (cursor === null) cursor = JSON.parse(e.data).cursor;
    });
    source.addEventListener('logs', (e) => {
      cursor = e.lastEventId || cursor;
      onPoints(JSON.parse(e.data));
    });
    source.addEventListener('error', () => {
      // The browser retries by itself while the stream is merely interrupted; once it gives up
      // (CLOSED), renew the token and reconnect from our cursor.
      if (source.readyState === EventSource.CLOSED) {
        onState('offline');
        source = null;
        schedule();
      } else {
        onState('reconnecting');
      }
    });
  }

  function schedule() {
    if (stopped) return;
    clearTimeout(timer);
    timer = setTimeout(connect, retry);
    retry = Math.min(retry * 2, 30000);
  }

  connect();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (source) source.close();
  };
}
