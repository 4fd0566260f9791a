// /workspaces/{id}: the experiments of a workspace as a table. The URL keeps the query (q), the
// sort, the chosen columns (cols) and the page (cursor). Pages of 100 rows come from the server,
// so 10,000 experiments cost no more than 100. Without chosen columns the table shows what
// tells the runs apart (columns.js), and a Group column once a run on the page is in a group
// (a click filters on it). One workspace stream keeps it current: new runs, states,
// last values (live.js, followWorkspace). Selected runs can be compared, tagged, grouped, moved or deleted together.
// "Group by" (kept in the URL as `by`: group, tags or hp.KEY) folds every matching run into
// collapsible group rows with their counts and the mean (min–max) of each column shown, read
// from the server (/experiments/groups); a group's runs are read a page at a time when opened
// (/experiments/rows), and a group's box selects all its runs, for Compare.

import * as api from '../api.js';
import { h, fill, empty, errorBox, toast, busy, confirmDanger } from '../dom.js';
import { ago, dateTime, num } from '../format.js';
import { availableColumns, defaultColumns, ordered, kindOf, columnLabel, cellText } from '../columns.js';
import { nameSuffixes, displayName, stateMark, duration, runSeconds, queryWord, groupTerm } from '../runinfo.js';
import { firstRun } from '../gettingstarted.js';
import { followWorkspace } from '../live.js';

const PAGE = 100;
const GROUP_PAGE = 50; // runs of an opened group read at a time
const GROUPS = { hp: 'Hyperparameters', result: 'Results', metric: 'Metrics (last value)' };

export async function render(ctx) {
  const id = ctx.params.id;
  const [ws, workspaces] = await Promise.all([
    api.get(`/workspaces/${id}`, null, { signal: ctx.signal }),
    api.get('/workspaces', null, { signal: ctx.signal }),
  ]);
  document.title = `${ws.name} · Tora`;
  const canEdit = ws.role === 'OWNER' || ws.role === 'EDITOR';
  const moveTargets = workspaces.filter((w) => w.id !== id && (w.role === 'OWNER' || w.role === 'EDITOR'));

  const state = {
    q: ctx.query.get('q') || '',
    sort: ctx.query.get('sort') || '-created',
    cols: ctx.query.get('cols') ? ctx.query.get('cols').split(',').filter(Boolean) : null,
    cursor: ctx.query.get('cursor') || null,
    counted: false, // whether previous.length * PAGE is the offset of this page
    previous: [], // cursors of the pages before this one, for "Previous"
    selected: new Map(), // id -> row, across pages
    rows: [],
    total: null,
    next: null,
    drawn: null, // the column key of the table on screen, to patch it in place when unchanged
    by: ctx.query.get('by') || '', // group rows by this key (group, tags, hp.KEY), or none
    groups: null, // the server's groups for `by`, with their aggregates
    groupsKey: null, // what `groups` was read for (by, q, sort, columns)
    open: new Map(), // JSON of an opened group's key -> {rows: its runs read so far}
  };

  const queryInput = h('input', {
    type: 'search', name: 'q', value: state.q, 'aria-label': 'Filter experiments',
    placeholder: 'lr < 0.01 and tag:baseline and state:running', class: 'mono grow',
  });
  const queryError = h('p', { class: 'error small', role: 'alert' });
  const queryForm = h('form', { class: 'row grow', role: 'search' }, queryInput, h('button', { type: 'submit' }, 'Filter'));
  queryForm.addEventListener('submit', (event) => {
    event.preventDefault();
    setFilter(queryInput.value.trim());
  });
  const compare = h('button', { class: 'primary', disabled: true, onclick: () => ctx.navigate(`/compare?ids=${[...state.selected.keys()].join(',')}`) }, 'Compare');
  const exportCsv = h('button', { title: 'Every run that matches the filter, with every column', onclick: (e) => busy(e.currentTarget, download) }, 'Export CSV');
  const columns = columnPicker();
  const groupBy = h('select', { class: 'small', 'aria-label': 'Group by' });
  groupBy.addEventListener('change', () => {
    state.by = groupBy.value;
    state.open.clear();
    state.groups = null;
    state.drawn = null;
    ctx.setQuery({ by: state.by || null });
    load();
  });
  const groupByBox = h('label', { class: 'row small' }, 'Group by', groupBy);
  const summary = h('span', { class: 'muted small', role: 'status' });
  const tableBox = h('div');
  const pager = h('div', { class: 'pager' });
  const bulkBar = bulkActions();
  const filterRow = h('div', { class: 'row' }, queryForm);
  const hint = h('p', { class: 'muted small' }, 'Filter with ', h('code', {}, 'tag:NAME'), ', ', h('code', {}, 'group:NAME'), ', ', h('code', {}, 'state:running'), ', ', h('code', {}, 'name ~ "resnet"'),
    ', ', h('code', {}, 'lr < 0.01'), ', ', h('code', {}, 'acc >= 0.9'), ', joined by ', h('code', {}, 'and'), ' / ', h('code', {}, 'or'), ' / ', h('code', {}, 'not'), '. ', summary);

  fill(ctx.root,
    h('div', { class: 'page-head' },
      h('div', { class: 'grow' },
        h('div', { class: 'crumbs' }, h('a', { href: '/workspaces' }, 'Workspaces')),
        h('h1', {}, ws.name),
        h('p', { class: 'muted small' }, ws.description || '', ws.description ? ' · ' : '', `You are ${ws.role}. `, h('a', { href: `/workspaces/${id}/members` }, 'Members'))),
      h('div', { class: 'row' }, exportCsv, groupByBox, columns.menu, compare)),
    filterRow, queryError, hint, bulkBar.box, tableBox, pager);

  function setFilter(q) {
    state.q = q;
    queryInput.value = q;
    state.cursor = null;
    state.previous = [];
    load();
  }

  /** Adds `term` (tag:x, state:running) to the filter, unless it is there already. */
  function narrow(term) {
    const q = state.q.trim();
    const there = new RegExp(`(^|[\\s(])${term.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}($|[\\s)])`, 'i');
    if (there.test(q)) return;
    setFilter(!q ? term : /\bor\b/i.test(q) ? `(${q}) and ${term}` : `${q} and ${term}`);
  }

  let loading = 0;
  /** Reads the current page. `quiet` (a live refresh): a refused query does not take the focus. */
  async function load({ quiet = false } = {}) {
    const mine = ++loading;
    if (!quiet) queryError.textContent = '';
    ctx.setQuery({ q: state.q, sort: state.sort === '-created' ? null : state.sort, cursor: state.cursor });
    let reply;
    try {
      reply = await api.page(`/workspaces/${id}/experiments`, {
        limit: PAGE, cursor: state.cursor, sort: state.sort, q: state.q, summary: 1,
        // A run with more than 100 metrics lists its first 100 by name: the chosen ones are
        // asked for by name, so a link naming a later metric still shows its values.
        columns: summaryColumns(state.cols),
      }, { signal: ctx.signal });
    } catch (err) {
      if (err.name === 'AbortError' || mine !== loading) return;
      if (err.status === 400 && state.q) {
        queryError.textContent = err.message;
        if (!quiet) queryInput.focus();
        return;
      }
      fill(tableBox, errorBox(err));
      return;
    }
    if (mine !== loading) return; // a newer load is on its way
    state.rows = reply.data;
    state.next = reply.next_cursor || null;
    state.total = reply.total ?? reply.data.length;
    if (state.by) await loadGroups(mine);
    if (mine !== loading) return;
    draw();
  }

  /** Reads the groups of every matching run for `state.by`, with the chosen columns' aggregates. */
  async function loadGroups(mine = loading) {
    const cols = chosenColumns();
    const key = JSON.stringify([state.by, state.q, state.sort, cols]);
    try {
      const reply = await api.get(`/workspaces/${id}/experiments/groups`, {
        by: state.by, q: state.q || null, sort: state.sort, cols: cols.join(',') || null,
      }, { signal: ctx.signal });
      if (mine !== loading) return;
      state.groups = reply.groups;
      state.groupsKey = key;
    } catch (err) {
      if (err.name === 'AbortError' || mine !== loading) return;
      state.groups = null;
      state.groupsKey = null;
      queryError.textContent = err.message;
      return;
    }
    // Opened groups stay open: their rows are read again (runs may have come or gone). A group
    // closed while they were on their way stays closed.
    await Promise.all(state.groups.filter((g) => state.open.has(groupId(g))).map(async (g) => {
      const shown = Math.max(GROUP_PAGE, state.open.get(groupId(g)).rows.length);
      const rows = await readRows(g, 0, shown);
      if (state.open.has(groupId(g))) state.open.set(groupId(g), { rows });
    }));
  }

  const groupId = (g) => JSON.stringify(g.key);

  /** Reads the rows of `g` from index `from`, `count` at most. The caller decides where they go:
   * the group may have been opened, closed or read again while they were on their way. */
  async function readRows(g, from, count) {
    const ids = g.experiment_ids.slice(from, from + count);
    const rows = [];
    for (let i = 0; i < ids.length; i += 500) {
      rows.push(...await api.get(`/workspaces/${id}/experiments/rows`, { ids: ids.slice(i, i + 500).join(',') }, { signal: ctx.signal }));
    }
    return rows;
  }

  function chosenColumns() {
    if (state.cols) return ordered(state.cols);
    // Sorted by a column: keep it, even when the sorted page no longer varies in it.
    const sorted = state.sort.replace(/^-/, '');
    const cols = defaultColumns(state.rows);
    return ordered(/^(hp|result|metric)\./.test(sorted) && !cols.includes(sorted) ? [...cols, sorted] : cols);
  }

  function draw() {
    const chosen = chosenColumns();
    columns.draw(availableColumns(state.rows), chosen);
    const start = state.previous.length * PAGE;
    const of = state.total.toLocaleString('en-US');
    if (!state.cursor) state.counted = true; // a shared link past page 1 does not know its offset
    summary.textContent = state.total === 0 ? '' : state.counted ? `${start + 1}–${start + state.rows.length} of ${of}` : `${state.rows.length} of ${of}`;
    exportCsv.disabled = state.total === 0;
    // A workspace with no runs at all: only the way to log the first one.
    const blank = state.total === 0 && !state.q && !state.cursor;
    for (const el of [exportCsv, groupByBox, columns.menu, compare, filterRow, hint]) el.hidden = blank;
    if (state.rows.length === 0) {
      state.drawn = null;
      fill(tableBox, state.q
        ? empty('No experiment matches this filter', h('p', {}, 'Change the filter or ', h('button', { class: 'small', onclick: () => setFilter('') }, 'clear it'), '.'))
        : state.cursor || state.total > 0
          ? empty('No experiments on this page', h('p', {}, h('button', { class: 'small', onclick: () => { state.cursor = null; state.previous = []; load(); } }, 'Go to the first page')))
          : firstRun(id, canEdit));
      fill(pager);
      updateSelection();
      return;
    }
    drawGroupBy();
    if (state.by && state.groups) {
      if (state.groupsKey !== JSON.stringify([state.by, state.q, state.sort, chosen])) {
        // The columns changed: their aggregates are read again, then drawn.
        loadGroups().then(draw);
      }
      state.drawn = null;
      fill(tableBox, h('div', { class: 'table-wrap' }, groupedTable(chosen)));
      const inGroups = `${state.groups.length} group${state.groups.length === 1 ? '' : 's'} of ${state.groups.reduce((n, g) => n + g.runs, 0).toLocaleString('en-US')} runs`;
      summary.textContent = inGroups;
      fill(pager, h('p', { class: 'muted small' }, inGroups));
      updateSelection();
      return;
    }
    const key = drawnKey(chosen);
    if (state.drawn === key) {
      patch();
    } else {
      state.drawn = key;
      fill(tableBox, h('div', { class: 'table-wrap' }, table(chosen)));
      performance.mark('tora:table');
    }
    fill(pager,
      h('div', { class: 'row small' },
        // A shared link may start past page 1 with no history: "Previous" then goes to the first page.
        h('button', { disabled: !state.cursor, onclick: () => { state.cursor = state.previous.pop() || null; load(); } }, '← Previous'),
        h('button', { disabled: !state.next, onclick: () => { state.previous.push(state.cursor); state.cursor = state.next; load(); } }, 'Next →')));
    updateSelection();
  }

  /** The "Group by" choices: none, group, tags, and every hyperparameter some run on the page has. */
  function drawGroupBy() {
    const hps = availableColumns(state.rows).filter((c) => kindOf(c) === 'hp');
    if (state.by.startsWith('hp.') && !hps.includes(state.by)) hps.push(state.by);
    const choices = [['', 'No groups'], ['group', 'Group'], ['tags', 'Tags'], ...hps.map((c) => [c, columnLabel(c)])];
    const key = JSON.stringify(choices);
    if (groupBy.dataset.choices !== key) {
      groupBy.dataset.choices = key;
      fill(groupBy, choices.map(([v, label]) => h('option', { value: v }, label)));
    }
    groupBy.value = state.by;
  }

  /** What decides the table's shape: its rows (and their names), its columns, whether runs have a state. */
  function drawnKey(chosen) {
    return JSON.stringify([state.rows.map((r) => [r.id, r.name, r.tags, r.group]), chosen, hasState(), state.sort]);
  }

  /** Whether the table has a Group column: some run on the page is in a group. */
  function hasGroups() {
    return state.rows.some((r) => r.group);
  }

  function hasState() {
    return state.rows.some((r) => typeof r.state === 'string');
  }

  function updateSelection() {
    const n = state.selected.size;
    compare.disabled = n < 2;
    compare.textContent = n ? `Compare ${n}` : 'Compare';
    bulkBar.update(n);
    const pageBox = tableBox.querySelector('thead input[type="checkbox"]');
    const shown = state.by && state.groups ? state.groups.flatMap((g) => g.experiment_ids) : state.rows.map((r) => r.id);
    if (pageBox) pageBox.checked = shown.length > 0 && shown.every((r) => state.selected.has(r));
    for (const tbody of tableBox.querySelectorAll('tbody.group')) {
      const g = state.groups && state.groups.find((x) => groupId(x) === tbody.dataset.group);
      const box = tbody.querySelector('tr.group-row input[type="checkbox"]');
      if (g && box) box.checked = g.experiment_ids.length > 0 && g.experiment_ids.every((r) => state.selected.has(r));
    }
  }

  function sortButton(label, key, title) {
    const dir = state.sort === key ? 'asc' : state.sort === `-${key}` ? 'desc' : null;
    return h('button', {
      class: 'sort', 'data-dir': dir, title, 'aria-label': `Sort by ${label}${dir === 'asc' ? ', descending' : ''}`,
      onclick: () => {
        state.sort = dir === 'asc' ? `-${key}` : key;
        state.cursor = null;
        state.previous = [];
        load();
      },
    }, label);
  }

  function filterLink(term, attrs, ...children) {
    const href = `/workspaces/${id}?q=${encodeURIComponent(term)}`;
    return h('a', { href, ...attrs, onclick: (e) => { e.preventDefault(); narrow(term); } }, ...children);
  }

  function table(chosen) {
    const withState = hasState();
    const withGroups = hasGroups();
    const pageBox = h('input', { type: 'checkbox', 'aria-label': 'Select every experiment on this page' });
    pageBox.addEventListener('change', () => {
      for (const r of state.rows) pageBox.checked ? state.selected.set(r.id, r) : state.selected.delete(r.id);
      for (const box of tableBox.querySelectorAll('tbody input[type="checkbox"]')) box.checked = pageBox.checked;
      for (const tr of tableBox.querySelectorAll('tbody tr')) tr.classList.toggle('selected', pageBox.checked);
      updateSelection();
    });
    const suffixes = nameSuffixes(state.rows);
    const body = state.rows.map((row) => runRow(row, chosen, withState, withGroups, suffixes));
    return h('table', { 'aria-label': 'Experiments' }, tableHead(chosen, withState, withGroups, pageBox), h('tbody', {}, body));
  }

  /** The header rows: the fixed columns, then the chosen ones under their kind. */
  function tableHead(chosen, withState, withGroups, pageBox) {
    const fixed = [
      h('th', { class: 'check' }, pageBox),
      h('th', {}, sortButton('Name', 'name')),
      withState ? h('th', {}, 'State') : null,
      h('th', {}, sortButton('Created', 'created')),
      withState ? h('th', { class: 'num' }, 'Duration') : null,
      withGroups ? h('th', {}, sortButton('Group', 'group')) : null,
      h('th', { class: 'hide-narrow' }, 'Tags'),
    ].filter(Boolean);
    const groups = [];
    for (const col of chosen) {
      const kind = kindOf(col);
      if (groups.length && groups[groups.length - 1].kind === kind) groups[groups.length - 1].span++;
      else groups.push({ kind, span: 1 });
    }
    const groupRow = chosen.length ? h('tr', { class: 'groups' },
      h('th', { colspan: String(fixed.length), class: 'group-blank' }),
      groups.map((g) => h('th', { colspan: String(g.span), class: `group group-${g.kind}` }, GROUPS[g.kind]))) : null;
    const head = h('tr', {}, fixed,
      chosen.map((col) => h('th', { class: `num col-${kindOf(col)}`, dataset: { col } },
        sortButton(columnLabel(col), col, `${GROUPS[kindOf(col)]}: ${columnLabel(col)}`))));
    return h('thead', {}, groupRow, head);
  }

  /** One run's row. */
  function runRow(row, chosen, withState, withGroups, suffixes) {
    const picked = state.selected.has(row.id);
    const label = displayName(row, suffixes.get(row.id));
    const box = h('input', { type: 'checkbox', checked: picked, 'aria-label': `Select ${label}` });
    const tr = h('tr', { class: picked ? 'selected' : '', dataset: { id: row.id } },
      h('td', { class: 'check' }, box),
      h('td', { class: 'name' }, h('a', { href: `/experiments/${row.id}` }, row.name),
        suffixes.get(row.id) ? h('span', { class: 'run-id mono', title: `id ${row.id}` }, ` ${suffixes.get(row.id)}`) : null,
        !withState && row.live ? h('span', { class: 'live', title: 'a point arrived in the last minute' }, ' live') : null),
      withState ? h('td', { class: 'state-cell', dataset: { cell: 'state' } }, stateCell(row)) : null,
      h('td', { class: 'muted nowrap', title: dateTime(row.created_at) }, ago(row.created_at)),
      withState ? h('td', { class: 'num', dataset: { cell: 'duration' } }, duration(runSeconds(row))) : null,
      withGroups ? h('td', { class: 'group-cell', dataset: { cell: 'group' } }, groupLinkOf(row)) : null,
      h('td', { class: 'hide-narrow tags' }, tagLinks(row)),
      chosen.map((col) => h('td', { class: 'num mono', dataset: { col } }, cellText(row, col))));
    box.addEventListener('change', () => {
      box.checked ? state.selected.set(row.id, row) : state.selected.delete(row.id);
      tr.classList.toggle('selected', box.checked);
      updateSelection();
    });
    return tr;
  }

  /** The table in groups: per group a row with its box, its toggle, its count and its columns'
   * aggregates, then (opened) its runs a page at a time. */
  function groupedTable(chosen) {
    const withState = hasState();
    const withGroups = hasGroups();
    const fixedCount = 4 + (withState ? 2 : 0) + (withGroups ? 1 : 0) - 1; // after the box column
    const everyId = state.groups.flatMap((g) => g.experiment_ids);
    const allBox = h('input', { type: 'checkbox', 'aria-label': 'Select every experiment in every group' });
    allBox.addEventListener('change', () => {
      for (const runId of everyId) allBox.checked ? state.selected.set(runId, state.selected.get(runId) || { id: runId, name: runId }) : state.selected.delete(runId);
      draw();
    });
    const sections = state.groups.map((g) => {
      const gid = groupId(g);
      const open = state.open.get(gid);
      const picked = g.experiment_ids.length > 0 && g.experiment_ids.every((r) => state.selected.has(r));
      const box = h('input', { type: 'checkbox', checked: picked, 'aria-label': `Select the ${g.runs} runs of ${g.label}` });
      box.addEventListener('change', () => {
        const rows = new Map((open ? open.rows : []).map((r) => [r.id, r]));
        for (const runId of g.experiment_ids) {
          box.checked ? state.selected.set(runId, rows.get(runId) || state.selected.get(runId) || { id: runId, name: runId }) : state.selected.delete(runId);
        }
        draw();
      });
      const toggle = h('button', {
        class: 'link group-toggle', 'aria-expanded': open ? 'true' : 'false', title: open ? 'Hide its runs' : 'Show its runs',
        onclick: (e) => busy(e.currentTarget, async () => {
          if (state.open.has(gid)) state.open.delete(gid);
          else state.open.set(gid, { rows: await readRows(g, 0, GROUP_PAGE) });
          draw();
        }),
      }, open ? '▾ ' : '▸ ', h('span', { class: 'group-label' }, g.label));
      const head = h('tr', { class: 'group-row', dataset: { group: gid } },
        h('td', { class: 'check' }, box),
        h('td', { colspan: String(fixedCount) }, toggle, ' ', h('span', { class: 'muted small group-count' }, `${g.runs} run${g.runs === 1 ? '' : 's'}`)),
        chosen.map((col) => aggregateCell(g.columns[col], col)));
      const body = [head];
      if (open) {
        const suffixes = nameSuffixes(open.rows);
        body.push(...open.rows.map((row) => runRow(row, chosen, withState, withGroups, suffixes)));
        const left = g.experiment_ids.length - open.rows.length;
        if (left > 0) {
          body.push(h('tr', { class: 'group-more' }, h('td', { colspan: String(1 + fixedCount + chosen.length) },
            h('button', { class: 'small', onclick: (e) => busy(e.currentTarget, async () => {
              const from = open.rows.length;
              const rows = await readRows(g, from, GROUP_PAGE);
              // Only onto the rows they follow: not onto a group since closed or read again.
              const now = state.open.get(gid);
              if (now && now.rows.length === from) now.rows = [...now.rows, ...rows];
              draw();
            }) }, `Show ${Math.min(left, GROUP_PAGE)} more of ${left}`))));
        }
      }
      return h('tbody', { class: 'group', dataset: { group: gid } }, body);
    });
    allBox.checked = everyId.length > 0 && everyId.every((r) => state.selected.has(r));
    return h('table', { 'aria-label': 'Experiments', class: 'grouped' }, tableHead(chosen, withState, withGroups, allBox), sections);
  }

  /** A group's aggregate of one column: the mean, with min–max beneath. */
  function aggregateCell(stat, col) {
    if (!stat || !stat.count) return h('td', { class: 'num mono', dataset: { col } }, '');
    const range = stat.min === stat.max ? '' : `${num(stat.min)}–${num(stat.max)}`;
    return h('td', { class: 'num mono aggregate', dataset: { col }, title: `mean of ${stat.count} run${stat.count === 1 ? '' : 's'}; min ${num(stat.min)}, max ${num(stat.max)}` },
      h('span', { class: 'mean' }, num(stat.mean)), range ? h('span', { class: 'range muted small' }, range) : null);
  }

  function stateCell(row) {
    return row.state ? stateMark(row.state, {
      href: `/workspaces/${id}?q=${encodeURIComponent(`state:${row.state}`)}`,
      'aria-label': `${row.state}: show only ${row.state} runs`,
      onclick: (e) => { e.preventDefault(); narrow(`state:${row.state}`); },
    }) : '';
  }

  function tagLinks(row) {
    return (row.tags || []).map((t) => filterLink(`tag:${queryWord(t)}`, { class: 'tag', title: `Show only runs tagged ${t}` }, t));
  }

  function groupLinkOf(row) {
    return row.group ? filterLink(groupTerm(row.group), { class: 'tag group-chip', title: `Show only the runs in the group ${row.group}` }, row.group) : '';
  }

  /** Updates the values of a table whose rows and columns did not change (live progress). */
  function patch() {
    const byId = new Map(state.rows.map((r) => [r.id, r]));
    for (const tr of tableBox.querySelectorAll('tbody tr')) {
      const row = byId.get(tr.dataset.id);
      if (!row) continue;
      for (const td of tr.querySelectorAll('td[data-col]')) {
        const text = cellText(row, td.dataset.col);
        if (td.textContent !== text) td.textContent = text;
      }
      const st = tr.querySelector('td[data-cell="state"]');
      if (st && (st.firstChild ? st.firstChild.dataset.state : '') !== (row.state || '')) fill(st, stateCell(row));
      const du = tr.querySelector('td[data-cell="duration"]');
      if (du) du.textContent = duration(runSeconds(row));
    }
  }

  // ---------- column picker ----------
  function columnPicker() {
    const list = h('div', { class: 'menu-list' });
    const search = h('input', { type: 'search', placeholder: 'Find a column', 'aria-label': 'Find a column', class: 'small' });
    const reset = h('button', { class: 'small', type: 'button', onclick: () => {
      state.cols = null;
      ctx.setQuery({ cols: null });
      draw();
    } }, 'Default columns');
    const menu = h('details', { class: 'menu' }, h('summary', { 'aria-label': 'Choose columns' }, 'Columns'),
      h('div', { class: 'menu-body' }, search, list, h('div', { class: 'row menu-foot' }, reset)));
    const applySearch = () => {
      const needle = search.value.trim().toLowerCase();
      for (const group of list.querySelectorAll('.menu-group')) {
        let any = false;
        for (const label of group.querySelectorAll('label')) {
          label.hidden = Boolean(needle) && !label.dataset.col.toLowerCase().includes(needle);
          any = any || !label.hidden;
        }
        group.hidden = !any;
      }
    };
    search.addEventListener('input', applySearch);
    let shown = null;
    function drawMenu(available, chosen) {
      const key = JSON.stringify([available, chosen]);
      if (key === shown) return;
      shown = key;
      const group = (kind) => {
        const cols = available.filter((c) => kindOf(c) === kind);
        return cols.length ? h('div', { class: 'menu-group' }, h('h3', {}, GROUPS[kind]), cols.map((col) => {
          const box = h('input', { type: 'checkbox', checked: chosen.includes(col) });
          box.addEventListener('change', () => {
            const now = chosenColumns();
            const next = box.checked ? [...now, col] : now.filter((c) => c !== col);
            state.cols = next;
            ctx.setQuery({ cols: next.join(',') || null });
            draw();
          });
          return h('label', { dataset: { col } }, box, columnLabel(col));
        })) : null;
      };
      fill(list,
        available.length === 0 ? h('p', { class: 'muted small' }, 'No hyperparameters, results or metrics on this page.') : null,
        group('hp'), group('result'), group('metric'));
      applySearch();
    }
    return { menu, draw: drawMenu };
  }

  // ---------- bulk actions ----------
  function bulkActions() {
    const count = h('strong', {});
    const tagInput = h('input', { type: 'text', class: 'small', placeholder: 'tag', 'aria-label': 'Tag for the selected runs', maxlength: '100' });
    const run = (button, action, extra, done) => busy(button, async () => {
      const ids = [...state.selected.keys()];
      const reply = await api.post('/experiments/bulk', { ids, action, ...extra });
      toast(done(reply.changed ?? ids.length));
      state.selected.clear();
      await load();
    });
    const tagButton = (action, text) => h('button', { class: 'small', type: 'button', onclick: (e) => {
      const t = tagInput.value.trim();
      if (!t) { tagInput.focus(); return; }
      run(e.currentTarget, action, { tags: [t] }, (n) => `${action === 'tag' ? 'Tagged' : 'Untagged'} ${n} run${n === 1 ? '' : 's'} ${action === 'tag' ? 'with' : 'from'} ${t}`)
        .then(() => { tagInput.value = ''; });
    } }, text);
    const groupInput = h('input', { type: 'text', class: 'small', placeholder: 'group', 'aria-label': 'Group for the selected runs', maxlength: '128' });
    const plural = (n) => `${n} run${n === 1 ? '' : 's'}`;
    const setGroup = h('button', { class: 'small', type: 'button', onclick: (e) => {
      const g = groupInput.value.trim();
      if (!g) { groupInput.focus(); return; }
      run(e.currentTarget, 'group', { group: g }, (n) => `Put ${plural(n)} in the group ${g}`).then(() => { groupInput.value = ''; });
    } }, 'Set group');
    const noGroup = h('button', { class: 'small', type: 'button', onclick: (e) => {
      run(e.currentTarget, 'group', { group: null }, (n) => `Took ${plural(n)} out of their group`);
    } }, 'No group');
    const target = h('select', { class: 'small', 'aria-label': 'Workspace to move the selected runs to' },
      h('option', { value: '' }, 'Move to…'), moveTargets.map((w) => h('option', { value: w.id }, w.name)));
    const move = h('button', { class: 'small', type: 'button', onclick: (e) => {
      const w = moveTargets.find((x) => x.id === target.value);
      if (!w) { target.focus(); return; }
      if (!confirmDanger(`Move ${state.selected.size} run${state.selected.size === 1 ? '' : 's'} to ${w.name}? Who may see them changes with it.`)) return;
      run(e.currentTarget, 'move', { workspace_id: w.id }, (n) => `Moved ${n} run${n === 1 ? '' : 's'} to ${w.name}`);
    } }, 'Move');
    const del = h('button', { class: 'small danger', type: 'button', onclick: (e) => {
      const picked = [...state.selected.values()];
      const n = picked.length;
      const names = picked.slice(0, 5).map((r) => r.name).join(', ') + (n > 5 ? ', …' : '');
      if (!confirmDanger(`Delete ${n} run${n === 1 ? '' : 's'} (${names}) with all their logs? This cannot be undone.`)) return;
      run(e.currentTarget, 'delete', {}, (k) => `Deleted ${k} run${k === 1 ? '' : 's'}`);
    } }, 'Delete');
    const clear = h('button', { class: 'small link', type: 'button', onclick: () => {
      state.selected.clear();
      for (const box of tableBox.querySelectorAll('input[type="checkbox"]')) box.checked = false;
      for (const tr of tableBox.querySelectorAll('tbody tr.selected')) tr.classList.remove('selected');
      updateSelection();
    } }, 'Clear selection');
    const box = h('div', { class: 'bulk row small', role: 'group', 'aria-label': 'Selected runs', hidden: true },
      count,
      canEdit ? [h('span', { class: 'row' }, tagInput, tagButton('tag', 'Add tag'), tagButton('untag', 'Remove tag'))] : null,
      canEdit ? h('span', { class: 'row' }, groupInput, setGroup, noGroup) : null,
      canEdit && moveTargets.length ? h('span', { class: 'row' }, target, move) : null,
      ws.role === 'OWNER' ? del : null,
      clear);
    return {
      box,
      update(n) {
        box.hidden = n === 0;
        count.textContent = `${n} selected`;
      },
    };
  }

  async function download() {
    const data = await api.blob(`/workspaces/${id}/experiments.csv`, { query: { q: state.q || null, sort: state.sort } });
    const url = URL.createObjectURL(data);
    const a = h('a', { href: url, download: `${ws.name.replace(/[^\w.-]+/g, '_')}-runs.csv`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // ---------- live ----------
  let redraw = 0;
  let reloadTimer = 0;
  const later = () => { if (!redraw) redraw = setTimeout(() => { redraw = 0; draw(); }, 250); };
  const reloadSoon = () => { clearTimeout(reloadTimer); reloadTimer = setTimeout(() => load({ quiet: true }), 500); };
  const stop = followWorkspace(id, {
    // (Re)connected. Nothing is replayed, and the table on screen may have been read before the
    // stream began: read it again (an unchanged table is patched in place, not rebuilt).
    hello: reloadSoon,
    run(exp) {
      const i = state.rows.findIndex((r) => r.id === exp.id);
      // A new run, or one that may have left or joined the filter: ask the server where it goes.
      if (i < 0 || state.q) { reloadSoon(); return; }
      state.rows[i] = { ...state.rows[i], ...exp, summary: state.rows[i].summary };
      if (state.selected.has(exp.id)) state.selected.set(exp.id, state.rows[i]);
      later();
    },
    deleted({ id: gone }) {
      const before = state.rows.length;
      state.rows = state.rows.filter((r) => r.id !== gone);
      state.selected.delete(gone);
      if (state.rows.length !== before) {
        state.total = Math.max(0, state.total - 1);
        later();
      }
    },
    progress(p) {
      const row = state.rows.find((r) => r.id === p.id);
      if (!row) return;
      const s = row.summary || (row.summary = { results: {}, metrics: {} });
      s.metrics = s.metrics || {};
      s.results = s.results || {};
      for (const [name, m] of Object.entries(p.metrics || {})) {
        s.metrics[name] = { ...(s.metrics[name] || {}), last: m.value, last_step: m.step };
      }
      for (const [name, v] of Object.entries(p.results || {})) s.results[name] = v;
      if (p.active_at) row.active_at = p.active_at;
      if (row.state === 'crashed') row.state = 'running'; // crashed is inferred: a point revives it
      later();
    },
  }, (s) => { ctx.root.dataset.stream = s; });
  // Running runs' durations tick.
  const clock = setInterval(() => {
    for (const tr of tableBox.querySelectorAll('tbody tr')) {
      const row = state.rows.find((r) => r.id === tr.dataset.id);
      const td = tr.querySelector('td[data-cell="duration"]');
      if (row && td && row.state === 'running') td.textContent = duration(runSeconds(row));
    }
  }, 1000);
  ctx.onLeave(() => {
    stop();
    clearTimeout(redraw);
    clearTimeout(reloadTimer);
    clearInterval(clock);
    delete ctx.root.dataset.stream;
  });

  await load();
}

/** The chosen results and metrics as the `columns` a page is read with (the server takes 100). */
function summaryColumns(cols) {
  const named = (cols || []).filter((c) => kindOf(c) === 'result' || kindOf(c) === 'metric');
  return named.slice(0, 100).join(',') || null;
}
