// /confirm?token_hash=..: the page a confirmation mail links to. Opening it proves the address
// (whoever reads the mailbox has the link); signed in or not.

import * as api from '../api.js';
import * as auth from '../auth.js';
import { h, fill, errorBox } from '../dom.js';

export async function render(ctx) {
  document.title = 'Confirm your address · Tora';
  const next = auth.signedIn() ? h('a', { href: '/workspaces' }, 'Go to your workspaces') : h('a', { href: '/login' }, 'Sign in');
  try {
    const user = await api.get('/signup/confirm', { token_hash: ctx.query.get('token_hash') || '', confirm_type: 'email' },
      { anonymous: true, signal: ctx.signal });
    fill(ctx.root, h('section', { class: 'auth' }, h('h1', {}, 'Address confirmed'),
      h('p', {}, h('strong', {}, user.email), ' is confirmed: invitations sent to it now show up on your Workspaces page.'),
      h('p', {}, next)));
  } catch (err) {
    if (err.name === 'AbortError') return;
    fill(ctx.root, h('section', { class: 'auth' }, h('h1', {}, 'This link does not work'), errorBox(err),
      h('p', { class: 'muted small' }, 'A confirmation link works once, for 7 days.'), h('p', {}, next)));
  }
}
