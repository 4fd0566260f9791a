// Entry point: the route table, the sign-in guard and the top bar.

import * as auth from './auth.js';
import { start, navigate, reload } from './router.js';

const page = (name) => () => import(`./pages/${name}.js`);

const routes = [
  ['/login', page('login'), { public: true }],
  ['/signup', page('login'), { public: true }],
  ['/confirm', page('confirm'), { public: true }],
  ['/invitations/:token', page('invitation')],
  ['/', page('workspaces')],
  ['/workspaces', page('workspaces')],
  ['/workspaces/:id', page('experiments')],
  ['/workspaces/:id/members', page('members')],
  ['/experiments/:id', page('experiment')],
  ['/compare', page('compare')],
  ['/settings', page('settings')],
];

/** Sends a signed-out visitor to the login page, remembering where they wanted to go. */
function guard(route, here) {
  if (route && route.opts.public) return null;
  if (!auth.signedIn()) return `/login?next=${encodeURIComponent(here)}`;
  return null;
}

window.addEventListener('tora:signed-out', () => {
  if (location.pathname === '/login' || location.pathname === '/signup') return;
  navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, { replace: true });
});

window.addEventListener('tora:route', ({ detail }) => {
  const nav = document.getElementById('nav');
  const signedIn = auth.signedIn();
  nav.hidden = !signedIn;
  const u = auth.user();
  document.getElementById('who').textContent = signedIn && u ? u.email : '';
  const section = detail.path.split('/')[1] || 'workspaces';
  for (const a of nav.querySelectorAll('a[data-nav]')) {
    const active = a.dataset.nav === section || (section === 'experiments' || section === 'compare') && a.dataset.nav === 'workspaces';
    if (active) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
});

// Charts take their colours from CSS variables: draw them again when the OS theme flips.
window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => reload());

start(routes, guard);

// Every page's code, loaded once the first page is up: a page opened while the server is away
// then needs only its data, which waits for the server (net.js), not a module, which would fail.
const prefetch = () => { for (const [, load] of routes) load().catch(() => {}); };
if (window.requestIdleCallback) requestIdleCallback(prefetch, { timeout: 3000 });
else setTimeout(prefetch, 1000);
