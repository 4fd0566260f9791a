// History-API routing: every dashboard URL is shareable and restores its page. A page module
// exports render(ctx); ctx.signal aborts when the user leaves, ctx.onLeave(fn) registers cleanup.

import { h, fill, errorBox } from './dom.js';

let routes = [];
let current = null; // {controller, cleanups}
let guard = () => null;

/** routes: [[pattern, loader, {public}]]; pattern like '/experiments/:id'. */
export function start(table, beforeEach) {
  routes = table.map(([pattern, load, opts]) => ({ ...compile(pattern), load, opts: opts || {} }));
  guard = beforeEach;
  window.addEventListener('popstate', () => render());
  document.addEventListener('click', onClick);
  render();
}

function compile(pattern) {
  const keys = [];
  const source = pattern.replace(/:(\w+)/g, (_, k) => { keys.push(k); return '([^/]+)'; });
  return { regex: new RegExp(`^${source}/?$`), keys };
}

function onClick(event) {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const a = event.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const href = a.getAttribute('href');
  if (!href.startsWith('/') || href.startsWith('//') || href.startsWith('/api/')) return;
  event.preventDefault();
  navigate(href);
}

/** Goes to a dashboard URL (pushState) and renders it. */
export function navigate(href, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', href);
  else history.pushState(null, '', href);
  render();
}

/** Updates the query string of the current page without re-rendering (state kept in the URL). */
export function setQuery(changes) {
  const u = new URL(location.href);
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined || v === '' || v === false) u.searchParams.delete(k);
    else u.searchParams.set(k, v);
  }
  const next = u.pathname + u.search;
  if (next !== location.pathname + location.search) history.replaceState(null, '', next);
}

/** Renders the current URL again (e.g. after the theme changed). */
export function reload() {
  render();
}

async function render() {
  leave();
  const path = location.pathname;
  const query = new URLSearchParams(location.search);
  const main = document.getElementById('main');
  let route = null;
  let params = {};
  for (const r of routes) {
    const m = r.regex.exec(path);
    if (m) {
      route = r;
      r.keys.forEach((k, i) => { params[k] = decodeURIComponent(m[i + 1]); });
      break;
    }
  }
  const redirect = guard(route, path + location.search);
  if (redirect) {
    navigate(redirect, { replace: true });
    return;
  }
  const controller = new AbortController();
  const cleanups = [];
  current = { controller, cleanups };
  fill(main, h('p', { class: 'loading' }, 'Loading…'));
  if (!route) {
    document.title = 'Not found · Tora';
    fill(main, h('h1', { tabindex: '-1' }, 'Page not found'),
      h('p', {}, 'Nothing lives at ', h('code', {}, path), '. ', h('a', { href: '/workspaces' }, 'Go to your workspaces'), '.'));
    return;
  }
  const ctx = {
    params, query, root: main, signal: controller.signal,
    onLeave: (fn) => cleanups.push(fn),
    setQuery, navigate,
  };
  window.dispatchEvent(new CustomEvent('tora:route', { detail: { path } }));
  try {
    const page = await route.load();
    if (controller.signal.aborted) return;
    await page.render(ctx);
    if (controller.signal.aborted) return;
    const heading = main.querySelector('h1');
    if (heading && document.activeElement === document.body) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
  } catch (err) {
    if (controller.signal.aborted || err.name === 'AbortError') return;
    if (err.status === 401) return; // the signed-out handler takes the user to the login page
    if (err instanceof TypeError && /import/i.test(err.message)) { // the page's code did not arrive
      fill(main, h('h1', {}, 'This page could not be loaded'), errorBox('Can\u2019t reach the server: reload the page once it is back.'));
      return;
    }
    fill(main, h('h1', {}, err.status === 404 ? 'Not found' : 'Something went wrong'), errorBox(err),
      h('p', {}, h('a', { href: '/workspaces' }, 'Back to your workspaces')));
  }
}

function leave() {
  if (!current) return;
  current.controller.abort();
  for (const fn of current.cleanups) {
    try { fn(); } catch (err) { console.warn('cleanup failed', err); }
  }
  current = null;
}
