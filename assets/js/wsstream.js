// One live stream per page for a whole workspace (the run table): runs created, changed, moved
// or deleted, and the progress of every run (last values, results). Like live.js, it connects
// with a short-lived stream token and, whenever the stream breaks, closes it and reconnects its
// own way (a new token, which waits for the server through api.js and net.js). There is no
// replay: each connection starts with `hello`, on which the page fetches its table again.

import * as api from './api.js';

const FIRST_DELAY = 1000;
const MAX_DELAY = 30000;

/**
 * followWorkspace(id, {hello, run, deleted, progress}, onState) -> stop(). Each handler gets the
 * event's parsed data; onState gets 'live', 'reconnecting' or 'closed'.
 */
export function followWorkspace(workspaceId, handlers, onState = () => {}) {
  const stopper = new AbortController();
  let source = null;
  let delay = FIRST_DELAY;
  let timer = null;

  async function connect() {
    if (stopper.signal.aborted) return;
    let token;
    try {
      token = (await api.post(`/workspaces/${workspaceId}/stream-token`, undefined,
        { retry: true, signal: stopper.signal })).token;
    } catch (err) {
      // Stopped, no such endpoint or workspace (404), or signed out (401): stay closed.
      if (err.name !== 'AbortError') onState('closed');
      return;
    }
    if (stopper.signal.aborted) return;
    const s = new EventSource(`/api/workspaces/${workspaceId}/stream?${new URLSearchParams({ token })}`);
    source = s;
    s.addEventListener('open', () => { delay = FIRST_DELAY; onState('live'); });
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
    s.addEventListener('error', () => {
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
