// Live updates over Server-Sent Events: the points of one experiment (the run page), and the
// runs of one workspace (the run table, compare). EventSource cannot send headers, so each
// connects with a short-lived read-only stream token. Whenever a stream breaks (the server
// restarted, the network dropped, the token expired, the server dropped a stream that fell
// behind or whose user lost access) we close it and reconnect our own way: a new token, then the
// stream. The token request waits for the server like every read (api.js, net.js), so while the
// server is away the banner says so and the stream follows it back.

import * as api from './api.js';

const FIRST_DELAY = 1000;
const MAX_DELAY = 30000;

/**
 * What both streams share: token, EventSource, reconnect with a doubling delay, stop().
 * `url(token)` makes the stream's address; `attach(source)` adds its event listeners.
 */
function reconnecting(tokenPath, url, attach, onState) {
  const stopper = new AbortController();
  let source = null;
  let delay = FIRST_DELAY; // before reconnecting; doubles while streams keep failing
  let timer = null;

  async function connect() {
    if (stopper.signal.aborted) return;
    let token;
    try {
      token = (await api.post(tokenPath, undefined, { retry: true, signal: stopper.signal })).token;
    } catch (err) {
      // Stopped, the run or workspace is gone (404), or signed out (401, handled by api.js):
      // stay closed.
      if (err.name !== 'AbortError') onState('closed');
      return;
    }
    if (stopper.signal.aborted) return;
    const s = new EventSource(url(token));
    source = s;
    s.addEventListener('open', () => { delay = FIRST_DELAY; onState('live'); });
    attach(s);
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

/**
 * follow(id, onPoints, onState) -> stop(). onPoints gets [{id, name, kind, step, value,
 * created_at}]. A reconnect resumes from the last event id, so no point is missed or repeated.
 */
export function follow(experimentId, onPoints, onState = () => {}) {
  let cursor = null;
  return reconnecting(
    `/experiments/${experimentId}/logs/stream-token`,
    (token) => {
      const q = new URLSearchParams({ token });
      if (cursor !== null) q.set('cursor', cursor);
      return `/api/experiments/${experimentId}/stream?${q}`;
    },
    (s) => {
      s.addEventListener('hello', (e) => {
        if (cursor === null) cursor = JSON.parse(e.data).cursor;
      });
      s.addEventListener('logs', (e) => {
        cursor = e.lastEventId || cursor;
        onPoints(JSON.parse(e.data));
      });
    },
    onState,
  );
}

/**
 * followWorkspace(id, {hello, run, deleted, progress}, onState) -> stop(). Each handler gets the
 * event's parsed data; onState gets 'live', 'reconnecting' or 'closed'. There is no replay: each
 * connection starts with `hello`, on which the page fetches its table again.
 */
export function followWorkspace(workspaceId, handlers, onState = () => {}) {
  return reconnecting(
    `/workspaces/${workspaceId}/stream-token`,
    (token) => `/api/workspaces/${workspaceId}/stream?${new URLSearchParams({ token })}`,
    (s) => {
      for (const name of ['hello', 'run', 'deleted', 'progress']) {
        s.addEventListener(name, (e) => {
          let data;
          try {
            data = JSON.parse(e.data);
          } catch {
            return;
          }
          if (handlers[name]) handlers[name](data);
        });
      }
    },
    onState,
  );
}
