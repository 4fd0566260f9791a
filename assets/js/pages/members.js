// /workspaces/{id}/members: who is in a workspace with which role; OWNERs change roles, remove
// members, invite (a single-use link, shown once) and cancel pending invitations.

import * as api from '../api.js';
import * as auth from '../auth.js';
import { h, fill, field, toast, busy, confirmDanger, secret } from '../dom.js';
import { dateTime } from '../format.js';

const ROLES = [[1, 'OWNER'], [2, 'EDITOR'], [3, 'VIEWER']];

export async function render(ctx) {
  const id = ctx.params.id;
  const [ws, members] = await Promise.all([
    api.get(`/workspaces/${id}`, null, { signal: ctx.signal }),
    api.get(`/workspaces/${id}/members`, null, { signal: ctx.signal }),
  ]);
  document.title = `Members of ${ws.name} · Tora`;
  const owner = ws.role === 'OWNER';
  const me = auth.user();
  const invitations = owner ? await api.get(`/workspaces/${id}/invitations`, null, { signal: ctx.signal }) : [];
  const refresh = () => ctx.navigate(location.pathname, { replace: true });

  const rows = members.map((m) => {
    const isMe = me && m.user_id === me.id;
    let roleCell = h('span', { class: 'role' }, m.role);
    if (owner) {
      const select = h('select', { 'aria-label': `Role of ${m.email}` },
        ROLES.map(([rid, rname]) => h('option', { value: String(rid), selected: rid === m.role_id }, rname)));
      select.addEventListener('change', () => busy(select, async () => {
        try {
          await api.put(`/workspaces/${id}/members/${m.user_id}`, { roleId: Number(select.value) });
          toast(`${m.email} is now ${select.selectedOptions[0].textContent}`);
        } catch (err) {
          select.value = String(m.role_id);
          throw err;
        }
        refresh();
      }));
      roleCell = select;
    }
    const remove = owner && !isMe ? h('button', {
      class: 'small danger', 'aria-label': `Remove ${m.email}`,
      onclick: (event) => {
        if (!confirmDanger(`Remove ${m.email} from ${ws.name}?`)) return;
        busy(event.currentTarget, async () => { await api.del(`/workspaces/${id}/members/${m.user_id}`); toast(`Removed ${m.email}`); refresh(); });
      },
    }, 'Remove') : null;
    return h('tr', {}, h('td', {}, m.email, isMe ? h('span', { class: 'muted' }, ' (you)') : null),
      h('td', {}, roleCell), h('td', { class: 'muted hide-narrow' }, dateTime(m.joined_at)), h('td', { class: 'num' }, remove));
  });

  fill(ctx.root,
    h('div', { class: 'page-head' }, h('div', { class: 'grow' },
      h('div', { class: 'crumbs' }, h('a', { href: '/workspaces' }, 'Workspaces'), ' / ', h('a', { href: `/workspaces/${id}` }, ws.name)),
      h('h1', {}, 'Members'),
      h('p', { class: 'muted small' }, owner
        ? 'OWNERs manage members and delete; EDITORs create and edit experiments; VIEWERs read.'
        : `You are ${ws.role === 'EDITOR' ? 'an' : 'a'} ${ws.role} here; only OWNERs change members.`))),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'E-mail'), h('th', {}, 'Role'), h('th', { class: 'hide-narrow' }, 'Joined'), h('th', {}, h('span', { class: 'sr-only' }, 'Actions')))),
      h('tbody', {}, rows))),
    owner ? inviteForm(id) : null,
    owner ? pending(id, invitations) : null);
}

function inviteForm(id) {
  const email = h('input', { type: 'email', name: 'email', required: true, placeholder: 'colleague@lab.org' });
  const role = h('select', { name: 'role' }, ROLES.map(([rid, rname]) => h('option', { value: String(rid), selected: rid === 3 }, rname)));
  const send = h('button', { class: 'primary', type: 'submit' }, 'Invite');
  const shown = h('div', { role: 'status' });
  const form = h('form', { class: 'row', 'aria-label': 'Invite by e-mail' },
    field('E-mail', email), field('Role', role), h('div', { class: 'field' }, h('label', {}, '\u00a0'), send));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!email.value.trim()) { email.focus(); return; }
    busy(send, async () => {
      const inv = await api.post('/workspace-invitations', { workspaceId: id, email: email.value.trim(), roleId: Number(role.value) });
      email.value = '';
      // The link is shown this once (only its hash is stored): the list below is reloaded in
      // place, so the page is not rendered again and the link stays on screen.
      fill(shown, linkBanner(inv));
      await reloadPending(id);
    });
  });
  return h('section', { class: 'section panel stack' }, h('h2', {}, 'Invite'),
    h('p', { class: 'muted small' }, 'Inviting makes a link that works once, for 7 days. People whose address is confirmed also find the invitation on their Workspaces page.'),
    form, shown);
}

function linkBanner(inv) {
  return h('div', { class: 'banner' },
    h('p', {}, h('strong', {}, `Invited ${inv.email} as ${inv.role}. `),
      inv.mailed ? 'The link was mailed to them; you can share it yourself too.' : 'Share this link with them; it works once, for 7 days.'),
    secret(inv.link, 'Copy link', { link: 'new' }),
    h('p', { class: 'muted small' }, 'It is shown only this once. Anyone holding it can join, so send it to them directly.'));
}

/** Lists pending invitations again in place, leaving a link just shown on screen. */
async function reloadPending(id) {
  const list = await api.get(`/workspaces/${id}/invitations`);
  document.getElementById('pending').replaceWith(pending(id, list));
}

function pending(id, invitations) {
  return h('section', { class: 'section', id: 'pending' }, h('h2', {}, 'Pending invitations'),
    invitations.length === 0 ? h('p', { class: 'muted' }, 'None.') : h('div', { class: 'table-wrap' }, h('table', {}, h('tbody', {},
      invitations.map((inv) => h('tr', {},
        h('td', {}, inv.email), h('td', {}, h('span', { class: 'role' }, inv.role)),
        h('td', { class: 'muted hide-narrow' }, `until ${dateTime(inv.expires_at)}`),
        h('td', { class: 'num' }, h('button', {
          class: 'small', 'aria-label': `Cancel the invitation of ${inv.email}`,
          onclick: (event) => busy(event.currentTarget, async () => {
            await api.del(`/workspaces/${id}/invitations/${inv.id}`);
            toast('Invitation cancelled');
            await reloadPending(id);
          }),
        }, 'Cancel'))))))));
}
