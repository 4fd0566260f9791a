// /invitations/{token}: the page an invitation link opens. Signed in (the sign-in guard brings
// a signed-out visitor back here after login or signup), it shows what the link offers and
// lets them accept or decline; either uses the link up.

import * as api from '../api.js';
import * as auth from '../auth.js';
import { h, fill, toast, busy } from '../dom.js';
import { dateTime } from '../format.js';

export async function render(ctx) {
  const token = ctx.params.token;
  const inv = await api.get(`/invitations/${encodeURIComponent(token)}`, null, { signal: ctx.signal });
  document.title = `Invitation to ${inv.workspaceName} · Tora`;
  const me = auth.user();
  const other = me && me.email.toLowerCase() !== inv.email.toLowerCase();

  const answer = (action) => (event) => busy(event.currentTarget, async () => {
    const done = await api.post(`/invitations/${action}`, { token });
    if (action === 'accept') {
      toast(`You joined ${inv.workspaceName}`);
      ctx.navigate(`/workspaces/${done.workspaceId}`, { replace: true });
    } else {
      toast('Invitation declined');
      ctx.navigate('/workspaces', { replace: true });
    }
  });

  fill(ctx.root, h('section', { class: 'section panel stack' },
    h('h1', {}, `Invitation to ${inv.workspaceName}`),
    h('p', {}, `${inv.from || 'An OWNER'} invites you to join `, h('strong', {}, inv.workspaceName), ' as ', h('span', { class: 'role' }, inv.role), '.'),
    h('p', { class: 'muted small' }, `Made for ${inv.email}`, other ? ` (you are signed in as ${me.email})` : '',
      `; the link works once, until ${dateTime(inv.expires_at)}.`),
    inv.member
      ? h('div', { class: 'banner' }, 'You are already a member of this workspace. ',
        h('a', { href: `/workspaces/${inv.workspaceId}` }, `Open ${inv.workspaceName}`), '.')
      : h('div', { class: 'row' },
        h('button', { class: 'primary', onclick: answer('accept') }, 'Accept'),
        h('button', { onclick: answer('decline') }, 'Decline'))));
}
