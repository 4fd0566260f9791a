// /workspaces: your workspaces, invitations sent to your (proven) address, and a form for a new
// workspace.

import * as api from '../api.js';
import { h, fill, field, toast, busy, empty, confirmDanger } from '../dom.js';
import { dateTime } from '../format.js';

export async function render(ctx) {
  document.title = 'Workspaces · Tora';
  const [workspaces, invitations, me, setup] = await Promise.all([
    api.get('/workspaces', null, { signal: ctx.signal }),
    api.get('/workspace-invitations', null, { signal: ctx.signal }),
    api.get('/me', null, { signal: ctx.signal }),
    api.get('/setup', null, { signal: ctx.signal }),
  ]);

  const name = h('input', { type: 'text', name: 'name', required: true, maxlength: '255', placeholder: 'e.g. vision-lab' });
  const description = h('input', { type: 'text', name: 'description', placeholder: 'optional' });
  const create = h('button', { class: 'primary', type: 'submit' }, 'Create workspace');
  const form = h('form', { class: 'row', 'aria-label': 'New workspace' },
    field('Name', name), field('Description', description), h('div', { class: 'field' }, h('label', {}, '\u00a0'), create));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!name.value.trim()) { name.focus(); return; }
    busy(create, async () => {
      const ws = await api.post('/workspaces', { name: name.value.trim(), description: description.value.trim() || undefined });
      toast(`Created ${ws.name}`);
      ctx.navigate(`/workspaces/${ws.id}`);
    });
  });

  fill(ctx.root,
    h('div', { class: 'page-head' }, h('div', { class: 'grow' }, h('h1', {}, 'Workspaces'),
      h('p', { class: 'muted small' }, 'A workspace holds experiments and the people who may see them.'),
      // Invitations by address reach only a proven address: say so to someone who may be
      // waiting for one (nothing but their Personal workspace yet), rather than show nothing.
      me.email_confirmed === false && workspaces.length <= 1 ? unconfirmed(me, setup) : null)),
    invitations.length ? invitationList(ctx, invitations) : null,
    workspaces.length
      ? h('div', { class: 'cards' }, workspaces.map((ws) => card(ctx, ws)))
      : empty('No workspaces yet', 'Create one below, or log a run with the SDK: it lands in your personal workspace.'),
    h('section', { class: 'section panel' }, h('h2', {}, 'New workspace'), form));
}

function unconfirmed(me, setup) {
  const resend = setup.mail ? h('button', { class: 'small', onclick: (event) => busy(event.currentTarget, async () => {
    const { mailed } = await api.post('/me/confirmation', undefined);
    if (mailed) toast(`Sent: open the link in the mail to ${me.email}`);
    else toast('The mail could not be sent; try again later', 'error');
  }) }, 'Mail me a confirmation link') : null;
  return h('p', { class: 'muted small' },
    `Your address ${me.email} is not confirmed, so invitations sent to it do not show up here: `,
    setup.mail ? 'confirm it through the link we mailed you, or ask the OWNER for the invitation link. ' : "ask the workspace's OWNER for the invitation link.",
    resend);
}

function invitationList(ctx, invitations) {
  return h('section', { class: 'section', 'aria-labelledby': 'inv-h' },
    h('h2', { id: 'inv-h' }, `Invitations (${invitations.length})`),
    h('div', { class: 'table-wrap' }, h('table', {}, h('tbody', {}, invitations.map((inv) => {
      const answer = (action) => (event) => busy(event.currentTarget, async () => {
        await api.put('/workspaces/any/invitations', undefined, { query: { invitationId: inv.id, action } });
        toast(action === 'accept' ? `You joined ${inv.workspaceName}` : 'Invitation declined');
        if (action === 'accept') ctx.navigate(`/workspaces/${inv.workspaceId}`);
        else ctx.navigate(location.pathname, { replace: true });
      });
      return h('tr', {},
        h('td', {}, h('strong', {}, inv.workspaceName), h('div', { class: 'muted small' },
          `as ${inv.role}`, inv.from ? ` · from ${inv.from}` : '', ` · ${dateTime(inv.created_at)}`)),
        h('td', { class: 'num' }, h('div', { class: 'row end' },
          h('button', { class: 'primary small', onclick: answer('accept'), 'aria-label': `Accept the invitation to ${inv.workspaceName}` }, 'Accept'),
          h('button', { class: 'small', onclick: answer('decline'), 'aria-label': `Decline the invitation to ${inv.workspaceName}` }, 'Decline'))));
    })))));
}

function card(ctx, ws) {
  const owner = ws.role === 'OWNER';
  const leave = (event) => {
    if (!confirmDanger(`Leave ${ws.name}? You lose access to its experiments until someone invites you again.`)) return;
    busy(event.currentTarget, async () => {
      await api.post(`/workspaces/${ws.id}/leave`, undefined);
      toast(`You left ${ws.name}`);
      ctx.navigate('/workspaces', { replace: true });
    });
  };
  const remove = (event) => {
    if (!confirmDanger(`Delete ${ws.name} with all its experiments and logs? This cannot be undone.`)) return;
    busy(event.currentTarget, async () => {
      await api.del(`/workspaces/${ws.id}`);
      toast(`Deleted ${ws.name}`);
      ctx.navigate('/workspaces', { replace: true });
    });
  };
  return h('article', { class: 'card' },
    h('div', { class: 'row' }, h('h2', { class: 'grow' }, h('a', { href: `/workspaces/${ws.id}` }, ws.name)), h('span', { class: 'role' }, ws.role)),
    ws.description ? h('p', { class: 'small' }, ws.description) : null,
    h('p', { class: 'muted small' }, `Created ${dateTime(ws.created_at)}`),
    h('div', { class: 'row small' },
      h('a', { class: 'button', href: `/workspaces/${ws.id}` }, 'Experiments'),
      h('a', { class: 'button', href: `/workspaces/${ws.id}/members` }, 'Members'),
      h('button', { class: 'small', onclick: leave, 'aria-label': `Leave ${ws.name}` }, 'Leave'),
      owner ? h('button', { class: 'small danger', onclick: remove, 'aria-label': `Delete ${ws.name}` }, 'Delete') : null));
}
