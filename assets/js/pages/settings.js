// /settings: API keys (a new key is shown once), the password, and signing out (here, or
// everywhere: every browser's login ends on the server).

import * as api from '../api.js';
import * as auth from '../auth.js';
import { h, fill, field, toast, busy, empty, confirmDanger, secret } from '../dom.js';
import { dateTime } from '../format.js';

export async function render(ctx) {
  document.title = 'Settings · Tora';
  const keys = await api.get('/api-keys', null, { signal: ctx.signal });
  const me = auth.user();
  const refresh = () => ctx.navigate('/settings', { replace: true });

  fill(ctx.root,
    h('div', { class: 'page-head' }, h('div', { class: 'grow' }, h('h1', {}, 'Settings'),
      me ? h('p', { class: 'muted small' }, `Signed in as ${me.email}`) : null),
    h('button', { onclick: signOut, title: 'End this login, here and on the server; API keys keep working' }, 'Sign out')),
    keysSection(keys, refresh),
    h('div', { class: 'grid2 section' }, passwordSection(), sessionsSection(ctx)));

  function signOut(e) {
    busy(e.currentTarget, async () => {
      if (!await api.signOut()) {
        toast('Signed out of this browser. The server could not be told, so that login stays valid there until it expires or you sign out everywhere.');
      }
      ctx.navigate('/login', { replace: true });
    });
  }
}

function sessionsSection(ctx) {
  const everywhere = h('button', { class: 'danger', type: 'button' }, 'Sign out everywhere');
  everywhere.addEventListener('click', () => {
    if (!confirmDanger('Sign out everywhere? Every browser signed in to this account, this one too, has to sign in again. API keys keep working.')) return;
    busy(everywhere, async () => {
      await api.signOutEverywhere();
      toast('Signed out everywhere');
      ctx.navigate('/login', { replace: true });
    });
  });
  return h('section', { class: 'panel stack', 'aria-labelledby': 'sessions-h' },
    h('h2', { id: 'sessions-h' }, 'Sessions'),
    h('p', { class: 'muted' }, 'Signed in on a computer you no longer use, or lost one? End every login of this account at once; scripts using API keys are not affected.'),
    h('div', {}, everywhere));
}

function keysSection(keys, refresh) {
  const name = h('input', { type: 'text', name: 'name', required: true, maxlength: '255', placeholder: 'e.g. cluster-node-3' });
  const create = h('button', { class: 'primary', type: 'submit' }, 'Create key');
  const shown = h('div', { role: 'status' });
  const form = h('form', { class: 'row', 'aria-label': 'New API key' }, field('Name', name), h('div', { class: 'field' }, h('label', {}, '\u00a0'), create));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!name.value.trim()) { name.focus(); return; }
    busy(create, async () => {
      const key = await api.post('/api-keys', { name: name.value.trim() });
      name.value = '';
      fill(shown, h('div', { class: 'banner' },
        h('p', {}, h('strong', {}, `Key “${key.name}” created. `), 'Copy it now: it is shown only this once.'),
        secret(key.key, 'Copy', { key: 'new' }),
        h('p', { class: 'muted small' }, 'Use it as ', h('code', {}, 'export TORA_API_KEY=…'), ' for the SDK, or the ', h('code', {}, 'x-api-key'), ' header.')));
      list.prepend(row(key));
      emptyNote.remove();
      tableBox.hidden = false;
    });
  });

  const row = (k) => h('tr', {},
    h('td', {}, k.name), h('td', { class: 'muted' }, dateTime(k.created_at)),
    h('td', {}, k.revoked ? h('span', { class: 'muted' }, 'revoked') : 'active'),
    h('td', { class: 'num' }, k.revoked ? null : h('button', {
      class: 'small danger', 'aria-label': `Revoke the key ${k.name}`,
      onclick: (e) => {
        if (!confirmDanger(`Revoke the key ${k.name}? Programs using it stop working at once.`)) return;
        busy(e.currentTarget, async () => { await api.del(`/api-keys/${k.id}`); toast(`Revoked ${k.name}`); refresh(); });
      },
    }, 'Revoke')));
  const list = h('tbody', {}, keys.map(row));
  const emptyNote = keys.length ? h('span') : empty('No API keys', 'Create one for your training scripts.');
  const tableBox = h('div', { class: 'table-wrap', hidden: !keys.length }, h('table', { 'aria-label': 'API keys' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Created'), h('th', {}, 'State'), h('th', {}, h('span', { class: 'sr-only' }, 'Actions')))), list));
  return h('section', { class: 'section', 'aria-labelledby': 'keys-h' },
    h('h2', { id: 'keys-h' }, 'API keys'),
    h('div', { class: 'panel stack' }, form, shown),
    h('div', { class: 'section' }, emptyNote, tableBox));
}

function passwordSection() {
  const current = h('input', { type: 'password', autocomplete: 'current-password', required: true });
  const next = h('input', { type: 'password', autocomplete: 'new-password', required: true, minlength: '8' });
  const again = h('input', { type: 'password', autocomplete: 'new-password', required: true });
  const message = h('p', { class: 'error small', role: 'alert' });
  const submit = h('button', { class: 'primary', type: 'submit' }, 'Change password');
  const form = h('form', { class: 'stack', 'aria-label': 'Change password' },
    field('Current password', current), field('New password (at least 8 characters)', next), field('New password again', again), message, submit);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    message.textContent = '';
    if (next.value.length < 8) { message.textContent = 'The new password needs at least 8 characters.'; return; }
    if (next.value !== again.value) { message.textContent = 'The two new passwords differ.'; return; }
    busy(submit, async () => {
      try {
        await api.put('/me/password', { current_password: current.value, new_password: next.value });
        // The server ends every session of the account (refresh tokens): sign this one in afresh.
        await api.login(auth.user().email, next.value);
      } catch (err) {
        message.textContent = err.message;
        return;
      }
      form.reset();
      toast('Password changed; other sessions are signed out');
    });
  });
  return h('section', { class: 'panel', 'aria-labelledby': 'pw-h' }, h('h2', { id: 'pw-h' }, 'Change password'), form);
}
