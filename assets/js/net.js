// The connection to the server as the dashboard sees it. A request that cannot reach the server
// (a network error, or a proxy's 502/504) or finds it busy (429, 5xx) reports it here: a banner
// says so, and one shared timer says when everything that waits tries again, 1 s after the first
// failure, then doubling up to 30 s, never sooner than the server's Retry-After. When nothing
// waits, the timer sends a probe instead. The first answer that gets through hides the banner
// and wakes everything that waits, so a page carries on where it stopped. The session is never
// touched here: only a refresh the server refuses (401, in api.js) signs the user out.

import { h, fill } from './dom.js';

const FIRST_DELAY = 1000;
const MAX_DELAY = 30000;

let trouble = null; // null, or 'offline' (no answer) or 'busy' (429, 5xx)
let rounds = 0; // tries since the trouble began
let due = 0; // when the next try starts (ms since the epoch)
let timer = null;
let ticker = null; // redraws the countdown once a second while the banner shows
const waiting = new Set(); // wake-up functions of the requests that wait for the next try
let probe = () => Promise.resolve();

/** The request the timer sends when nothing else waits (api.js sets it: it knows the session). */
export function setProbe(fn) {
  probe = fn;
}

/** 'offline', 'busy' or null. */
export function problem() {
  return trouble;
}

/** A request failed for a passing reason; `retryAfter` is the server's Retry-After in seconds. */
export function failed(kind, retryAfter = 0) {
  const asked = retryAfter > 0 ? retryAfter * 1000 : 0;
  if (!trouble) {
    trouble = kind;
    schedule(Math.max(FIRST_DELAY, asked));
  } else {
    trouble = kind;
    if (Date.now() + asked > due) schedule(asked); // honour the longer wait the server asked for
  }
  show();
}

/** The server answered (whatever the status, other than "busy"): the trouble is over. */
export function succeeded() {
  if (!trouble) return;
  trouble = null;
  rounds = 0;
  clearTimeout(timer);
  timer = null;
  wakeAll();
  show();
}

/** Resolves at the next try (or once the server answers); rejects with an AbortError on abort. */
export function nextTry(signal) {
  return new Promise((resolve, reject) => {
    const aborted = () => signal && signal.aborted;
    if (aborted()) { reject(new DOMException('The request was aborted.', 'AbortError')); return; }
    const onAbort = () => {
      waiting.delete(wake);
      reject(new DOMException('The request was aborted.', 'AbortError'));
    };
    const wake = () => {
      if (signal) signal.removeEventListener('abort', onAbort);
      resolve();
    };
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
    waiting.add(wake);
    if (!trouble) wakeAll();
  });
}

/** Starts the next try now (the timer fired, or the user pressed "Retry now"). */
export function retryNow() {
  if (!trouble) return;
  rounds += 1;
  // The next round is planned before this one runs: requests that fail again join it, and the
  // banner never waits without a time to show.
  schedule(Math.min(MAX_DELAY, FIRST_DELAY * 2 ** rounds));
  if (waiting.size) wakeAll();
  else Promise.resolve().then(probe).catch(() => {});
  show();
}

function schedule(delay) {
  clearTimeout(timer);
  due = Date.now() + delay;
  timer = setTimeout(retryNow, delay);
}

function wakeAll() {
  const woken = [...waiting];
  waiting.clear();
  for (const wake of woken) wake();
}

// The banner: a bar at the bottom of the window, outside the page, so it never moves what the
// user is reading. #net is a polite live region that is always in the document and empty (so
// drawn as nothing) while all is well; its words change only when the trouble does. The
// countdown beside them is drawn for the eye and hidden from screen readers, which would
// otherwise hear it every second.

function show() {
  const bar = document.getElementById('net');
  if (!bar) return;
  if (!trouble) {
    fill(bar);
    delete bar.dataset.state;
    clearInterval(ticker);
    ticker = null;
    return;
  }
  const words = trouble === 'offline'
    ? 'Offline: can\u2019t reach the server; retrying\u2026'
    : 'The server is busy; retrying';
  if (bar.dataset.state !== trouble) {
    bar.dataset.state = trouble;
    const count = h('span', { class: 'net-count', 'aria-hidden': 'true' });
    const button = h('button', { type: 'button', class: 'small', onclick: retryNow }, 'Retry now');
    fill(bar, h('span', { class: 'net-text' }, words, count), button);
  }
  countdown();
  if (!ticker) ticker = setInterval(countdown, 1000);
}

function countdown() {
  const count = document.querySelector('#net .net-count');
  if (!count || !trouble) return;
  const seconds = Math.max(0, Math.ceil((due - Date.now()) / 1000));
  const text = trouble === 'busy'
    ? (seconds > 0 ? ` in ${seconds}\u00a0s` : ' now\u2026')
    : (seconds > 0 ? ` next try in ${seconds}\u00a0s` : ' trying now');
  if (count.textContent !== text) count.textContent = text;
}
