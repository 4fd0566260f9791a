// /workspaces/{id}: the experiments of a workspace as a table. The URL keeps the query (q), the
// sort, the chosen columns (cols) and the page (cursor). Pages of 100 rows come from the server,
// so 10,000 experiments cost no more than 100.

import * as api from '../api.js';
import { h, fill, empty, errorBox } from '../dom.js';
import { ago, dateTime, num, value } from '../format.js';

const PAGE = 100;
const DEFAULT_COLUMNS = 4; // per kind, when the URL names none

export async function render(ctx) {
  const id = ctx.params.id;
  const ws = await api.get(`/workspaces/${id}`, null, { signal: ctx.signal });
  document.title = `${ws.name} · Tora`;

  const state = {
    q: ctx.query.get('q') || '',
    sort: ctx.query.get('sort') || '-created',
    cols: ctx.query.get('cols') ? ctx.query.get('cols').split(',').filter(Boolean) : null,
    cursor: ctx.query.get('cursor') || null,
    counted: false, // whether previous.length * PAGE is the offset of this page
    previous: [], // cursors of the pages before this one, for "Previous"
    selected: new Set(),
    rows: [],
    total: null,
    next: null,
  };

  const queryInput = h('input', {
    type: 'search', name: 'q', value: state.q, 'aria-label': 'Filter experiments',
    placeholder: 'lr < 0.01 and tag:baseline and acc >= 0.9', class: 'mono grow',
  });
  const queryError = h('p', { class: 'error small', role: 'alert' });
  const queryForm = h('form', { class: 'row grow', role: 'search' }, queryInput, h('button', { type: 'submit' }, 'Filter'));
  queryForm.addEventListener('submit', (event) => {
    event.preventDefault();
    state.q = queryInput.value.trim();
    state.cursor = null;
    state.previous = [];
    load();
  });
  const compare = h('button', { class: 'primary', disabled: true, onclick: () => ctx.navigate(`/compare?ids=${[...state.selected].join(',')}`) }, 'Compare');
  const columnsMenu = h('details', { class: 'menu' }, h('summary', { 'aria-label': 'Choose columns' }, 'Columns'), h('div', { class: 'menu-body' }));
  const summary = h('span', { class: 'muted small' });
  const tableBox = h('div');
  const pager = h('div', { class: 'pager' });

  fill(ctx.root,
    h('div', { class: 'page-head' },
      h('div', { class: 'grow' },
        h('div', { class: 'crumbs' }, h('a', { href: '/workspaces' }, 'Workspaces')),
        h('h1', {}, ws.name),
        h('p', { class: 'muted small' }, ws.description || '', ws.description ? ' · ' : '', `You are ${ws.role}. `, h('a', { href: `/workspaces/${id}/members` }, 'Members'))),
      h('div', { class: 'row' }, columnsMenu, compare)),
    h('div', { class: 'row' }, queryForm),
    queryError,
    h('p', { class: 'muted small' }, 'Filter with ', h('code', {}, 'tag:NAME'), ', ', h('code', {}, 'name ~ "resnet"'),
      ', ', h('code', {}, 'lr < 0.01'), ', ', h('code', {}, 'acc >= 0.9'), ', joined by ', h('code', {}, 'and'), ' / ', h('code', {}, 'or'), ' / ', h('code', {}, 'not'), '. ', summary),
    tableBox, pager);

  async function load() {
    queryError.textContent = '';
    ctx.setQuery({ q: state.q, sort: state.sort === '-created' ? null : state.sort, cursor: state.cursor });
    let reply;
    try {
      reply = await api.page(`/workspaces/${id}/experiments`, {
        limit: PAGE, cursor: state.cursor, sort: state.sort, q: state.q, summary: 1,
      }, { signal: ctx.signal });
    } catch (err) {
      if (err.name === 'AbortError') return;
      if (err.status === 400 && state.q) {
        queryError.textContent = err.message;
        queryInput.focus();
        return;
      }
      fill(tableBox, errorBox(err));
      return;
    }
    state.rows = reply.data;
    state.next = reply.next_cursor || null;
    state.total = reply.total ?? reply.data.length;
    draw();
  }

  function draw() {
    const available = discoverColumns(state.rows);
    const chosen = state.cols || defaultColumns(available);
    drawColumnsMenu(available, chosen);
    const start = state.previous.length * PAGE;
    const of = state.total.toLocaleString('en-US');
    if (!state.cursor) state.counted = true; // a shared link past page 1 does not know its offset
    summary.textContent = state.total === 0 ? '' : state.counted ? `${start + 1}–${start + state.rows.length} of ${of}` : `${state.rows.length} of ${of}`;
    if (state.rows.length === 0) {
      fill(tableBox, state.q
        ? empty('No experiment matches this filter', 'Change the filter or clear it.')
        : empty('No experiments in this workspace yet',
          h('p', {}, 'Log one from Python:'),
          h('pre', { class: 'mono' }, `import tora\ntora.setup("first-run", workspace_id="${id}", hyperparams={"lr": 0.01})\ntora.tmetric("loss", 0.5, step=1)\ntora.shutdown()`)));
      fill(pager);
      return;
    }
    fill(tableBox, h('div', { class: 'table-wrap' }, table(chosen)));
    performance.mark('tora:table');
    fill(pager,
      h('div', { class: 'row small' },
        // A shared link may start past page 1 with no history: "Previous" then goes to the first page.
        h('button', { disabled: !state.cursor, onclick: () => { state.cursor = state.previous.pop() || null; load(); } }, '← Previous'),
        h('button', { disabled: !state.next, onclick: () => { state.previous.push(state.cursor); state.cursor = state.next; load(); } }, 'Next →')),
      h('span', { class: 'muted small' }, state.selected.size ? `${state.selected.size} selected` : 'Select runs to compare them'));
    updateCompare();
  }

  function updateCompare() {
    compare.disabled = state.selected.size < 2;
    compare.textContent = state.selected.size ? `Compare ${state.selected.size}` : 'Compare';
  }

  function sortButton(label, key) {
    const dir = state.sort === key ? 'asc' : state.sort === `-${key}` ? 'desc' : null;
    return h('button', {
      class: 'sort', 'data-dir': dir, 'aria-label': `Sort by ${label}${dir === 'asc' ? ', descending' : ''}`,
      onclick: () => {
        state.sort = dir === 'asc' ? `-${key}` : key;
        state.cursor = null;
        state.previous = [];
        load();
      },
    }, label);
  }

  function table(chosen) {
    const allOnPage = state.rows.every((r) => state.selected.has(r.id));
    const pageBox = h('input', { type: 'checkbox', checked: allOnPage, 'aria-label': 'Select every experiment on this page' });
    pageBox.addEventListener('change', () => {
      for (const r of state.rows) pageBox.checked ? state.selected.add(r.id) : state.selected.delete(r.id);
      draw();
    });
    const head = h('tr', {},
      h('th', { class: 'check' }, pageBox),
      h('th', {}, sortButton('Name', 'name')),
      h('th', {}, sortButton('Created', 'created')),
      h('th', { class: 'hide-narrow' }, 'Tags'),
      chosen.map((col) => h('th', { class: 'num' }, sortButton(columnLabel(col), col))));
    const body = state.rows.map((row) => {
      const box = h('input', { type: 'checkbox', checked: state.selected.has(row.id), 'aria-label': `Select ${row.name}` });
      const tr = h('tr', { class: state.selected.has(row.id) ? 'selected' : '' },
        h('td', { class: 'check' }, box),
        h('td', { class: 'name' }, h('a', { href: `/experiments/${row.id}` }, row.name), row.live ? h('span', { class: 'live', title: 'a point arrived in the last minute' }, ' live') : null),
        h('td', { class: 'muted', title: dateTime(row.created_at) }, ago(row.created_at)),
        h('td', { class: 'hide-narrow' }, (row.tags || []).map((t) => h('span', { class: 'tag' }, t))),
        chosen.map((col) => h('td', { class: 'num mono' }, cell(row, col))));
      box.addEventListener('change', () => {
        box.checked ? state.selected.add(row.id) : state.selected.delete(row.id);
        tr.className = box.checked ? 'selected' : '';
        updateCompare();
        pager.lastChild.textContent = state.selected.size ? `${state.selected.size} selected` : 'Select runs to compare them';
      });
      return tr;
    });
    return h('table', { 'aria-label': 'Experiments' }, h('thead', {}, head), h('tbody', {}, body));
  }

  function drawColumnsMenu(available, chosen) {
    const body = columnsMenu.querySelector('.menu-body');
    const group = (title, cols) => cols.length ? [h('h3', {}, title), cols.map((col) => {
      const box = h('input', { type: 'checkbox', checked: chosen.includes(col) });
      box.addEventListener('change', () => {
        const next = box.checked ? [...chosen, col] : chosen.filter((c) => c !== col);
        state.cols = next;
        ctx.setQuery({ cols: next.join(',') || null });
        draw();
        columnsMenu.open = true;
      });
      return h('label', {}, box, col.slice(col.indexOf('.') + 1));
    })] : [];
    fill(body,
      available.length === 0 ? h('p', { class: 'muted small' }, 'No hyperparameters or results on this page.') : null,
      group('Hyperparameters', available.filter((c) => c.startsWith('hp.'))),
      group('Results', available.filter((c) => c.startsWith('result.'))),
      group('Metrics (last value)', available.filter((c) => c.startsWith('metric.'))));
  }

  await load();
}

/** Every hp.KEY, result.NAME and metric.NAME seen on this page, in first-seen order. */
function discoverColumns(rows) {
  const seen = new Set();
  for (const kind of ['hp', 'result', 'metric']) {
    for (const row of rows) {
      const keys = kind === 'hp' ? (row.hyperparams || []).map((p) => p.key)
        : Object.keys((row.summary && row.summary[kind === 'result' ? 'results' : 'metrics']) || {});
      for (const k of keys) seen.add(`${kind}.${k}`);
    }
  }
  return [...seen];
}

function defaultColumns(available) {
  return [
    ...available.filter((c) => c.startsWith('hp.')).slice(0, DEFAULT_COLUMNS),
    ...available.filter((c) => c.startsWith('result.')).slice(0, DEFAULT_COLUMNS),
  ];
}

function columnLabel(col) {
  return col.slice(col.indexOf('.') + 1);
}

function cell(row, col) {
  const dot = col.indexOf('.');
  const kind = col.slice(0, dot);
  const key = col.slice(dot + 1);
  if (kind === 'hp') {
    const p = (row.hyperparams || []).find((x) => x.key === key);
    return p ? value(p.value) : '';
  }
  const s = row.summary || {};
  if (kind === 'result') return s.results && key in s.results ? num(s.results[key]) : '';
  if (kind === 'metric') return s.metrics && s.metrics[key] ? num(s.metrics[key].last) : '';
  return '';
}
