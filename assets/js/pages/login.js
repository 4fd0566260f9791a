// /login and /signup. After signing in, the user goes back to the page that sent them here.

import * as api from '../api.js';
import * as auth from '../auth.js';
import { h, fill, field } from '../dom.js';

/** Only same-site dashboard paths are followed after login. */
function nextPath(query) {
  const next = query.get('next') || '';
  return next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/login') && !next.startsWith('/signup') ? next : '/workspaces';
}

export async function render(ctx) {
  const isSignup = location.pathname === '/signup';
  const next = nextPath(ctx.query);
  if (auth.signedIn()) {
    ctx.navigate(next, { replace: true });
    return;
  }
  document.title = `${isSignup ? 'Sign up' : 'Sign in'} · Tora`;
  const keep = ctx.query.get('next') ? `?next=${encodeURIComponent(next)}` : '';

  const email = h('input', { type: 'email', name: 'email', autocomplete: 'email', required: true, autofocus: true });
  const password = h('input', {
    type: 'password', name: 'password', required: true, minlength: isSignup ? '8' : null,
    autocomplete: isSignup ? 'new-password' : 'current-password',
  });
  const message = h('p', { class: 'error', role: 'alert' });
  const submit = h('button', { class: 'primary', type: 'submit' }, isSignup ? 'Create account' : 'Sign in');
  const hint = h('div', { class: 'hint' });
  const switchLink = h('p', { class: 'hint' },
    isSignup ? 'Already have an account? ' : 'No account yet? ',
    h('a', { href: `${isSignup ? '/login' : '/signup'}${keep}` }, isSignup ? 'Sign in' : 'Sign up'));

  const form = h('form', { novalidate: true },
    field('E-mail', email),
    field(isSignup ? 'Password (at least 8 characters)' : 'Password', password),
    message, submit);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    message.textContent = '';
    if (!email.value.trim() || !password.value) {
      message.textContent = 'Enter your e-mail and password.';
      return;
    }
    if (isSignup && password.value.length < 8) {
      message.textContent = 'The password needs at least 8 characters.';
      return;
    }
    submit.disabled = true;
    try {
      if (isSignup) await api.signup(email.value.trim(), password.value);
      await api.login(email.value.trim(), password.value);
      ctx.navigate(next, { replace: true });
    } catch (err) {
      message.textContent = err.status === 401 ? 'Wrong e-mail or password.' : err.message;
      submit.disabled = false;
      password.focus();
    }
  });

  fill(ctx.root, h('section', { class: 'auth' },
    h('h1', {}, isSignup ? 'Create your Tora account' : 'Sign in to Tora'),
    ctx.query.get('next') && !isSignup ? h('p', { class: 'muted hint' }, 'Sign in to continue where you were.') : null,
    hint, form, switchLink));

  // First run: say how the first account comes about. Older servers lack /api/setup: no hint then.
  try {
    const setup = await api.get('/setup', null, { anonymous: true, signal: ctx.signal });
    if (setup.signup === 'closed') {
      switchLink.hidden = true;
      if (isSignup) fill(hint, h('div', { class: 'banner' }, 'Sign-up is closed on this server: ask an owner of a workspace to invite you, or an administrator to run ', h('code', {}, 'tora user add EMAIL'), '.'));
    }
    if (!setup.has_accounts) {
      fill(hint, h('div', { class: 'banner' },
        h('strong', {}, 'First run: '), 'this server has no accounts yet. ',
        setup.signup === 'closed'
          ? ['Create the first one on the server with ', h('code', {}, 'tora user add you@lab.org'), '.']
          : [isSignup ? 'The account you create here is the first one.' : h('a', { href: `/signup${keep}` }, 'Create the first account'), ' (or run ', h('code', {}, 'tora user add you@lab.org'), ' on the server).']));
    }
  } catch (err) {
    if (err.name === 'AbortError') return;
  }
}
