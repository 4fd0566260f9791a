// /compare?ids=a,b,c: runs side by side. Every shared metric overlaid (in sections by name
// prefix, plus user-made panels of several metrics), the hyperparameters with the differing rows
// highlighted, the results, and a parallel-coordinates plot from the hyperparameters to a chosen
// result. System metrics (sys/) come last, on the time axis while the page is on steps. The URL
// also keeps x (step|rel|time), scale, smooth, from/to (zx: the axis they are on, when not x),
// collapsed, panels, target and diff; group=KEY (group, tags, hp.NAME) draws each group of runs
// as a mean line in a band (band=minmax|std), aggregated on the server.
// /compare?workspace=ID&filter=Q: the runs of a workspace that match a filter (up to
// MAX_FILTERED; the per-run views show the first MAX_RUNS, the group view all of them).
//
// Loading: one request for the runs with their summaries, then the series: the first chart's
// metric alone (small, so it comes back first), then the other metrics several to a request
// (within the server's MAX_BUCKETS), two requests in flight, each chart drawn as its answer
// arrives, charts nearest the top of the page first.

import * as api from '../api.js';
import { h, fill, empty, errorBox, segmented } from '../dom.js';
import { num, value, toNumber } from '../format.js';
import { displayName, nameSuffixes, stateMark, groupLink } from '../runinfo.js';
import { OverlayChart, runColor, toColumns, dash } from '../chart.js';
import { draw as drawParcoords } from '../parcoords.js';
import { Sections, parseCollapsed, formatCollapsed, xmodeOf } from '../sections.js';
import { loadPanels, savePanels, panelPicker, panelCard } from '../panels.js';
import { followWorkspace } from '../live.js';
import { fetchSeries, fetchGroups } from '../seriesdata.js';
// (uPlot and net.js come with the modules above; index.html preloads every module at once.)

const MAX_RUNS = 200; // runs a link names, and runs drawn one line each (the server's /series cap)
const MAX_FILTERED = 1000; // runs of a workspace filter (the group view draws them all)
const MAX_BUCKETS = 250000; // buckets one /series request may ask for (src/api/series.rs)
const IN_FLIGHT = 2;
const BATCHES = 4; // the metrics after the first go in about this many requests
const BATCH_MS = 600; // ...each expected to take about this long at most (see batchSize)
const REFETCH_EVERY = 2000; // ms: a streaming run's charts are fetched again at most this often
const MAX_STREAMS = 3; // workspace streams one compare page keeps open
const TABLES_WAIT = 400; // ms: the tables wait this long at most for the first chart's answer
const NO_SERIES = { x: [], min: [], max: [], last: [] };

const chunk = (list, size) => Array.from({ length: Math.ceil(list.length / size) }, (_, i) => list.slice(i * size, (i + 1) * size));

/** A group-by key of the URL: group, tags or hp.NAME; anything else is none. */
function groupKeyOf(text) {
  if (text === 'group' || text === 'tags') return text;
  return text && /^hp\.[^,]{1,200}$/.test(text) ? text : null;
}

/** A run summary of the batch or list endpoint ({results: {name: v}, metrics: {name: {last}}}) as the page reads it. */
function summaryOf(s) {
  return {
    metrics: Object.entries((s && s.metrics) || {}).map(([name, m]) => ({ name, last: m.last })),
    results: Object.entries((s && s.results) || {}).map(([name, v]) => ({ name, value: v })),
  };
}

/** The runs of a link (ids=) or of a workspace filter, with summaries; {all, missing, total}. */
async function loadRuns(ctx) {
  const q = ctx.query;
  const ids = (q.get('ids') || '').split(',').map((s) => s.trim()).filter(Boolean).slice(0, MAX_RUNS);
  if (ids.length) {
    const found = await api.post('/experiments/batch', { ids, summary: true }, { signal: ctx.signal, retry: true }); // a read
    const byId = new Map(found.map((e) => [e.id, e]));
    const all = ids.filter((id) => byId.has(id)).map((id) => byId.get(id));
    return { all, missing: ids.length - all.length, total: all.length };
  }
  const ws = q.get('workspace');
  if (!ws) return null;
  const all = [];
  let cursor = null;
  let total = 0;
  do {
    const reply = await api.page(`/workspaces/${encodeURIComponent(ws)}/experiments`, {
      q: q.get('filter') || '', limit: 500, cursor, summary: 1,
    }, { signal: ctx.signal });
    all.push(...reply.data);
    total = reply.total ?? all.length;
    cursor = reply.next_cursor;
  } while (cursor && all.length < MAX_FILTERED);
  return { all: all.slice(0, MAX_FILTERED), missing: 0, total, workspace: ws, filter: q.get('filter') || '' };
}

export async function render(ctx) {
  performance.mark('tora:compare-start');
  document.title = 'Compare · Tora';
  const chosen = await loadRuns(ctx);
  if (!chosen) {
    fill(ctx.root, h('h1', {}, 'Compare runs'),
      empty('No runs chosen', 'Select two or more experiments in a workspace table and press Compare.'));
    return;
  }
  performance.mark('tora:compare-runs');
  const { missing, total: matching } = chosen;
  const everyRun = chosen.all; // the group view's (up to MAX_FILTERED)
  const runs = everyRun.slice(0, MAX_RUNS); // drawn one line each
  const suffixes = nameSuffixes(runs); // the run table's short ids, so a run reads the same on both
  for (const r of everyRun) r.summary = summaryOf(r.summary);
  runs.forEach((r, i) => {
    r.label = displayName(r, suffixes.get(r.id));
    r.color = runColor(i);
  });
  document.title = `Compare ${everyRun.length} runs · Tora`;

  const q = ctx.query;
  const view = {
    xmode: ['rel', 'time'].includes(q.get('x')) ? q.get('x') : 'step',
    log: q.get('scale') === 'log',
    smoothing: Math.min(0.99, Math.max(0, Number(q.get('smooth')) || 0)),
    diff: q.get('diff') === '1',
    zoom: q.has('from') && q.has('to') && Number.isFinite(Number(q.get('from'))) && Number.isFinite(Number(q.get('to')))
      ? [Number(q.get('from')), Number(q.get('to'))] : null,
    group: groupKeyOf(q.get('group')),
    band: q.get('band') === 'std' ? 'std' : 'minmax',
  };
  // Groups are aggregated over steps or wall time: the time since each run started has no
  // common buckets, so a group view on it is drawn on steps.
  if (view.group && view.xmode === 'rel') view.xmode = 'step';
  // The zoom belongs to the charts of one kind of x axis (system metrics may be on another).
  view.zoomX = ['step', 'rel', 'time'].includes(q.get('zx')) ? q.get('zx') : view.xmode;
  const xOf = (name) => (view.group ? view.xmode : xmodeOf(name, view.xmode));
  const zoomFor = (x) => (view.zoom && view.zoomX === x ? view.zoom : null);
  // A panel is on the page's axis, unless every metric in it is a system metric.
  const panelX = (names) => (names.every((n) => xOf(n) !== view.xmode) ? xOf(names[0]) : view.xmode);
  const chartX = (c) => (c.names ? panelX(c.names) : xOf(c.name));
  const save = () => ctx.setQuery({
    x: view.xmode === 'step' ? null : view.xmode, scale: view.log ? 'log' : null, smooth: view.smoothing || null,
    diff: view.diff ? '1' : null, from: view.zoom ? String(view.zoom[0]) : null, to: view.zoom ? String(view.zoom[1]) : null,
    zx: view.zoom && view.zoomX !== view.xmode ? view.zoomX : null,
    group: view.group, band: view.group && view.band !== 'minmax' ? view.band : null,
  });
  // Panels are kept per workspace: the first run's (a comparison usually stays in one).
  const workspaceId = runs[0] ? runs[0].workspace_id : null;
  let panels = loadPanels(q, workspaceId);
  const startOf = (r) => Date.parse(r.started_at || r.created_at) || 0;

  // Metrics: those every run has first, then those only some have.
  const metricRuns = new Map();
  for (const r of everyRun) for (const m of r.summary.metrics) metricRuns.set(m.name, (metricRuns.get(m.name) || 0) + 1);
  const metricNames = [...metricRuns.keys()].filter((n) => metricRuns.get(n) > 1 || everyRun.length === 1)
    .sort((a, b) => (metricRuns.get(b) - metricRuns.get(a)) || a.localeCompare(b, undefined, { numeric: true }));

  const swatch = (r) => {
    const s = h('span', { class: 'swatch', 'aria-hidden': 'true' });
    s.style.background = r.color;
    return s;
  };
  // The runs, or in the group view the groups (once the first answer names them).
  const legend = view.group ? h('div', { class: 'legend', 'aria-label': 'Groups' })
    : h('div', { class: 'legend', 'aria-label': 'Runs' }, runs.map((r) => h('span', {},
      swatch(r), h('a', { href: `/experiments/${r.id}` }, r.label), ' ', stateMark(r.state), r.group ? ' ' : null, groupLink(r))));
  const chartsStatus = h('span', { class: 'muted small', role: 'status' });
  const grid = h('div', { class: 'chart-sections', 'aria-label': 'Metrics' });
  const panelGrid = h('div', { class: 'charts' });
  const panelBox = h('section', { class: 'chart-section', 'aria-label': 'Panels', hidden: true },
    h('h2', { class: 'section-head' }, 'Panels'), panelGrid);
  const resetZoom = h('button', { class: 'small', hidden: !view.zoom, onclick: () => setZoom(null) }, 'Reset zoom');
  const sections = new Sections(grid, parseCollapsed(q.get('collapsed')), (set) => ctx.setQuery({ collapsed: formatCollapsed(set) }));
  // The hyperparameters, results and parallel coordinates: filled with the first chart (see
  // the end of render).
  const tablesBox = h('div');

  fill(ctx.root,
    h('div', { class: 'page-head' }, h('div', { class: 'grow' },
      runs[0] || chosen.workspace ? h('div', { class: 'crumbs' }, h('a', { href: backLink() }, 'Back to the workspace')) : null,
      h('h1', {}, `Compare ${everyRun.length} runs`),
      chosen.workspace ? h('p', { class: 'muted small', dataset: { matching: String(matching) } }, filteredNote()) : null,
      missing ? h('p', { class: 'error small' }, `${missing} of the runs in the link are deleted or not visible to you.`) : null)),
    everyRun.length === 0 ? (chosen.workspace ? empty('No run matches', 'No run of this workspace matches the filter.')
      : empty('None of these runs is visible to you', 'They may have been deleted, or you are not a member of their workspace.')) : [
      tablesBox,
      h('h2', { class: 'section' }, 'Metrics'),
      toolbar(),
      h('div', { class: 'section' }, legend),
      panelBox,
      metricNames.length ? grid : empty('No shared metrics', 'These runs have no metric name in common.'),
    ]);

  function backLink() {
    if (!chosen.workspace) return `/workspaces/${runs[0].workspace_id}`;
    return `/workspaces/${encodeURIComponent(chosen.workspace)}${chosen.filter ? `?q=${encodeURIComponent(chosen.filter)}` : ''}`;
  }

  function filteredNote() {
    const what = chosen.filter ? `The runs matching “${chosen.filter}”` : 'Every run of the workspace';
    const counted = matching > everyRun.length ? ` (the first ${everyRun.length} of ${matching})` : '';
    const drawn = everyRun.length > runs.length
      ? `; the tables and the lines show the first ${runs.length}, the group view all ${everyRun.length}` : '';
    return `${what}${counted}${drawn}.`;
  }

  // ---------- hyperparameters and results ----------
  function hyperparamSection() {
    const keys = [];
    for (const r of runs) for (const p of r.hyperparams) if (!keys.includes(p.key)) keys.push(p.key);
    const get = (r, k) => { const p = r.hyperparams.find((x) => x.key === k); return p ? p.value : undefined; };
    const differs = (k) => new Set(runs.map((r) => JSON.stringify(get(r, k) ?? null))).size > 1;
    const only = h('input', { type: 'checkbox', checked: view.diff });
    const body = h('tbody');
    const drawBody = () => fill(body, keys.filter((k) => !view.diff || differs(k)).map((k) => h('tr', { class: differs(k) ? 'differs' : '', dataset: { key: k } },
      h('th', { scope: 'row' }, k, differs(k) ? h('span', { class: 'sr-only' }, ' (differs)') : null),
      runs.map((r) => h('td', { class: 'mono' }, value(get(r, k)))))));
    only.addEventListener('change', () => { view.diff = only.checked; save(); drawBody(); });
    drawBody();
    return h('section', { class: 'section', 'aria-labelledby': 'cmp-hp' },
      h('div', { class: 'editable-head' }, h('h2', { id: 'cmp-hp' }, 'Hyperparameters'),
        h('label', { class: 'control' }, only, 'only rows that differ')),
      keys.length ? h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Hyperparameters' }, runHead('Key'), body))
        : h('p', { class: 'muted' }, 'None of these runs has hyperparameters.'));
  }

  function runHead(first) {
    return h('thead', {}, h('tr', {}, h('th', {}, first), runs.map((r) => h('th', { class: 'run', scope: 'col' }, swatch(r), ' ', r.label))));
  }

  function resultsSection() {
    const names = [];
    for (const r of runs) for (const res of r.summary.results) if (!names.includes(res.name)) names.push(res.name);
    const get = (r, n) => { const x = r.summary.results.find((res) => res.name === n); return x ? x.value : undefined; };
    return h('section', { class: 'section', 'aria-labelledby': 'cmp-res' }, h('h2', { id: 'cmp-res' }, 'Results'),
      names.length ? h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Results' }, runHead('Result'),
        h('tbody', {}, names.map((n) => h('tr', {}, h('th', { scope: 'row' }, n), runs.map((r) => h('td', { class: 'num mono' }, get(r, n) === undefined ? '–' : num(get(r, n)))))))))
        : h('p', { class: 'muted' }, 'No results logged.'));
  }

  // ---------- parallel coordinates ----------
  function parcoordsSection() {
    const targets = [];
    for (const r of runs) for (const res of r.summary.results) if (!targets.includes(res.name)) targets.push(res.name);
    for (const n of metricNames) if (!targets.includes(`last ${n}`)) targets.push(`last ${n}`);
    const keys = [];
    for (const r of runs) for (const p of r.hyperparams) if (!keys.includes(p.key)) keys.push(p.key);
    if (!keys.length || !targets.length || runs.length < 2) return null;
    let target = targets.includes(q.get('target')) ? q.get('target') : targets[0];
    const select = h('select', { class: 'shrink', 'aria-label': 'Result on the last axis' }, targets.map((t) => h('option', { value: t, selected: t === target }, t)));
    const canvas = h('canvas', { class: 'parcoords', role: 'img' });
    const paint = () => {
      canvas.setAttribute('aria-label', `Parallel coordinates of ${keys.join(', ')} against ${target}`);
      const data = runs.map((r) => ({
        label: r.label,
        values: Object.fromEntries(r.hyperparams.map((p) => [p.key, p.value])),
        result: targetValue(r, target),
      }));
      drawParcoords(canvas, data, keys.slice(0, 12), target);
    };
    select.addEventListener('change', () => { target = select.value; ctx.setQuery({ target }); paint(); });
    const resize = new ResizeObserver(() => paint());
    resize.observe(canvas);
    ctx.onLeave(() => resize.disconnect());
    return h('section', { class: 'section panel', 'aria-labelledby': 'cmp-pc' },
      h('div', { class: 'editable-head' }, h('h2', { id: 'cmp-pc' }, 'Hyperparameters → result'),
        h('label', { class: 'control' }, 'colour and last axis', select)),
      canvas);
  }

  function targetValue(r, target) {
    if (target.startsWith('last ')) {
      const m = r.summary.metrics.find((x) => x.name === target.slice(5));
      if (m) return toNumber(m.last);
    }
    const res = r.summary.results.find((x) => x.name === target);
    return res ? toNumber(res.value) : null;
  }

  // ---------- overlaid metrics ----------
  function toolbar() {
    const out = h('output', { class: 'mono' }, view.smoothing.toFixed(2));
    const smooth = h('input', { type: 'range', min: '0', max: '0.99', step: '0.01', value: String(view.smoothing), 'aria-label': 'Smoothing (EMA weight)' });
    smooth.addEventListener('input', () => {
      view.smoothing = Number(smooth.value);
      out.textContent = view.smoothing.toFixed(2);
      for (const c of allCharts()) if (c.chart) c.chart.set({ smoothing: view.smoothing });
      save();
    });
    return h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Chart options' },
      // Groups have no common "time since the start": steps or wall time only.
      segmented('x', [['step', 'Step'], ...(view.group ? [] : [['rel', 'Relative']]), ['time', 'Wall time']], view.xmode, (k) => {
        view.xmode = k;
        view.zoom = null;
        resetZoom.hidden = true;
        for (const c of allCharts()) dropChart(c); // a new kind of axis: new plots
        save();
        loadAll();
      }),
      segmented('y', [['lin', 'Linear'], ['log', 'Log']], view.log ? 'log' : 'lin', (k) => {
        view.log = k === 'log';
        for (const c of allCharts()) if (c.chart) c.chart.set({ log: view.log });
        save();
      }),
      h('label', { class: 'control' }, 'Smoothing', smooth, out),
      metricNames.length ? panelPicker(() => metricNames, (names) => { panels = [...panels, names]; savePanels(panels, ctx.setQuery, workspaceId); drawPanels(); }) : null,
      groupControl(),
      view.group ? segmented('band', [['minmax', 'Min–max'], ['std', '±1 std']], view.band, (k) => {
        view.band = k;
        save();
        redrawGroups();
      }) : null,
      resetZoom, chartsStatus);
  }

  /** Group by: nothing (a line per run), the runs' group, their tag sets or a hyperparameter. */
  function groupControl() {
    const keys = [];
    for (const r of runs) for (const p of r.hyperparams) if (!keys.includes(p.key)) keys.push(p.key);
    const options = [['', 'Nothing (a line per run)'], ['group', 'Group'], ['tags', 'Tags'],
      ...keys.sort((a, b) => a.localeCompare(b, undefined, { numeric: true })).map((k) => [`hp.${k}`, k])];
    if (view.group && !options.some(([k]) => k === view.group)) options.push([view.group, view.group.replace(/^hp\./, '')]);
    const select = h('select', { class: 'shrink', 'aria-label': 'Group runs by' },
      options.map(([k, text]) => h('option', { value: k, selected: k === (view.group || '') }, text)));
    select.addEventListener('change', () => {
      // Another kind of chart: the page is drawn again from its URL.
      ctx.setQuery({ group: select.value || null, band: select.value && view.band !== 'minmax' ? view.band : null });
      ctx.navigate(location.pathname + location.search, { replace: true });
    });
    return h('label', { class: 'control' }, 'Group by', select);
  }

  function dropChart(c) {
    if (c.chart) c.chart.destroy();
    c.chart = null;
  }

  function chartOptions(c) {
    const x = chartX(c);
    return {
      xmode: x, log: view.log, smoothing: view.smoothing, zoom: zoomFor(x),
      onZoom: (min, max) => setZoom([min, max], x),
      onReset: () => { if (zoomFor(x)) setZoom(null); },
      onCursor: (text) => { c.readout.textContent = text || ''; },
    };
  }

  /** Draws `lines` in chart c (a metric's card or a panel), or says that the range is empty. */
  function draw(c, lines) {
    if (!lines.some((l) => l.cols.x.length)) {
      dropChart(c);
      fill(c.body, h('p', { class: 'muted small' }, 'No points in this range.'));
    } else if (c.chart) {
      c.chart.setLines(lines, zoomFor(chartX(c)));
    } else {
      fill(c.body);
      c.chart = new OverlayChart(c.body, lines, chartOptions(c));
    }
    c.card.dataset.state = 'drawn';
    c.card.dataset.x = chartX(c);
    c.card.dataset.points = String(lines.reduce((n, l) => n + l.cols.count.reduce((a, b) => a + b, 0), 0));
  }

  const charts = new Map();
  for (const name of metricNames) {
    const body = h('div', { class: 'chart-body', role: 'group', 'aria-label': `Chart of ${name}; + and - zoom, arrows pan, 0 resets` });
    const readout = h('span', { class: 'readout' });
    const n = metricRuns.get(name);
    const card = h('section', { class: 'chart', 'aria-label': `Metric ${name}`, dataset: { metric: name, state: 'loading' } },
      h('div', { class: 'chart-head' }, h('h3', {}, name), h('div', { class: 'chart-stats' }, n === everyRun.length ? `${n} runs` : `${n} of ${everyRun.length} runs`)),
      body, h('div', { class: 'chart-foot' }, readout));
    sections.grid(name).append(card);
    charts.set(name, { card, body, readout, chart: null, name });
  }
  sections.refresh();

  // ---------- panels: several metrics, every run ----------
  const panelCharts = [];
  const loaded = new Map(); // metric -> [{run, cols}] of the last fetch

  function drawPanels() {
    for (const c of panelCharts) dropChart(c);
    panelCharts.length = 0;
    panelGrid.replaceChildren();
    panelBox.hidden = panels.length === 0;
    panels.forEach((names, i) => {
      const key = names.map((n, k) => h('span', { class: 'panel-key' }, h('span', { class: `dash-key dash-${k % 4}`, 'aria-hidden': 'true' }), n));
      const { card, body, readout } = panelCard(names, key, () => {
        panels = panels.filter((_, k) => k !== i);
        savePanels(panels, ctx.setQuery, workspaceId);
        drawPanels();
      });
      panelGrid.append(card);
      const c = { card, body, readout, chart: null, names };
      panelCharts.push(c);
      refreshPanel(c);
    });
    if (panels.length) ctx.setQuery({ panels: JSON.stringify(panels) });
  }

  function refreshPanel(c) {
    if (!c.names.some((n) => metricRuns.has(n))) {
      fill(c.body, h('p', { class: 'muted small' }, 'None of these runs has these metrics.'));
      c.card.dataset.state = 'drawn';
      return;
    }
    const have = view.group ? groupsLoaded : loaded;
    if (!c.names.every((n) => have.has(n) || !metricRuns.has(n))) return; // not all fetched yet
    const lines = [];
    const x = panelX(c.names);
    if (view.group) {
      c.names.forEach((name, k) => {
        for (const g of groupsLoaded.get(name) || []) {
          const line = groupLine(g, name, c.names.length > 1 ? `${g.label} · ${name}` : g.label);
          if (line) lines.push({ ...line, dash: dash(k) });
        }
      });
      draw(c, lines);
      return;
    }
    c.names.forEach((name, k) => {
      if (xOf(name) !== x) return; // one axis per panel
      for (const { run, cols } of loaded.get(name) || []) {
        lines.push({ label: c.names.length > 1 ? `${run.label} · ${name}` : run.label, color: run.color, dash: dash(k), cols });
      }
    });
    draw(c, lines);
  }

  function setZoom(zoom, x = view.xmode) {
    view.zoom = zoom && [Math.floor(zoom[0]), Math.ceil(zoom[1])]; // whole steps or milliseconds
    view.zoomX = x;
    resetZoom.hidden = !zoom;
    save();
    loadAll();
  }

  const allCharts = () => [...charts.values(), ...panelCharts];

  function points() {
    const most = runs.length > 8 || view.group ? 300 : 700;
    // On a wide screen a card is at least 380 px wide (.charts): room for 300 buckets, known
    // without reading a width (which would lay the page out before the first request).
    if (most === 300 && window.innerWidth > 640) return most;
    const card = [...ctx.root.querySelectorAll('.chart-body')].find((b) => b.clientWidth > 0);
    const w = card ? card.clientWidth : Math.min(grid.clientWidth || 600, 600);
    // Many overlaid lines hide detail anyway: fewer buckets each keeps the payload small.
    return Math.max(100, Math.min(most, Math.round(w - 60)));
  }

  /**
   * The metrics to fetch, in the order they are drawn: those of the panels (at the top), then
   * the charts by their place on the page, those in collapsed sections last.
   */
  function drawingOrder() {
    const names = [...new Set([...panels.flat().filter((n) => metricRuns.has(n)), ...metricNames])];
    const rank = new Map(names.map((n, i) => [n, i]));
    const hidden = (n) => { const c = charts.get(n); return c ? c.card.closest('[hidden]') !== null : false; }; // a collapsed section
    const before = (a, b) => {
      const ca = charts.get(a);
      const cb = charts.get(b);
      if (!ca || !cb) return (ca ? 1 : 0) - (cb ? 1 : 0) || rank.get(a) - rank.get(b); // panels' first
      return ca.card.compareDocumentPosition(cb.card) & Node.DOCUMENT_POSITION_FOLLOWING ? -1 : 1;
    };
    return names.sort((a, b) => (hidden(a) - hidden(b)) || before(a, b));
  }

  /**
   * How many metrics go in one request after the first: the rest in about BATCHES requests,
   * within the server's MAX_BUCKETS, and few enough that a request should take about
   * BATCH_MS by what the first (one metric) took: a slow server (or a debug build) is asked
   * one metric at a time, as a request over the server's query budget would fail.
   */
  function batchSize(rest, pts, lines, firstMs) {
    const fit = Math.max(1, Math.floor(MAX_BUCKETS / (Math.max(1, lines) * pts)));
    const paced = Math.max(1, Math.floor(BATCH_MS / Math.max(1, firstMs)));
    return Math.max(1, Math.min(fit, paced, Math.ceil(rest / BATCHES)));
  }

  /**
   * The /series queries for `names` of every run: one per kind of x axis, except that a zoom on
   * the time since each run started is another wall-time range per run (one request per run).
   */
  function seriesQueries(names, pts) {
    const out = [];
    for (const x of new Set(names.map(xOf))) {
      const these = names.filter((n) => xOf(n) === x).join(',');
      const zoom = zoomFor(x);
      const base = { names: these, points: pts, x: x === 'step' ? 'step' : 'time' };
      if (x === 'rel' && zoom) {
        for (const r of runs) out.push({ ...base, experiments: r.id, from: zoom[0] + startOf(r), to: zoom[1] + startOf(r) });
      } else {
        out.push({ ...base, experiments: runs.map((r) => r.id).join(','), ...(zoom ? { from: zoom[0], to: zoom[1] } : {}) });
      }
    }
    return out;
  }

  /** `names` of every run: Map name -> [{run, cols}], every run present (empty where it has none). */
  async function fetchBatch(names, pts) {
    const lists = await Promise.all(seriesQueries(names, pts).map((query) => fetchSeries(query, { signal: ctx.signal })));
    const byRun = new Map();
    for (const e of lists.flat()) {
      let m = byRun.get(e.experiment_id);
      if (!m) byRun.set(e.experiment_id, m = new Map());
      for (const s of e.series) m.set(s.name, s);
    }
    return new Map(names.map((name) => [name, runs.map((run) => {
      const s = byRun.has(run.id) ? byRun.get(run.id).get(name) : undefined;
      return { run, cols: toColumns(s || NO_SERIES, xOf(name) === 'rel' ? startOf(run) : 0, !s) };
    })]));
  }

  /** The group view's query for `names` (the runs of the link, or the workspace filter). */
  function groupQuery(names, pts) {
    const x = view.xmode === 'time' ? 'time' : 'step';
    const zoom = zoomFor(view.xmode);
    const runsOf = chosen.workspace ? { workspace: chosen.workspace, filter: chosen.filter } : { experiments: everyRun.map((r) => r.id).join(',') };
    return { by: view.group, names: names.join(','), points: pts, x, ...runsOf, ...(zoom ? { from: zoom[0], to: zoom[1] } : {}) };
  }

  let generation = 0;
  /**
   * Fetches and draws every chart (a line per run, or in the group view a band per group): the
   * first chart's metric alone, then the others in batches (batchSize), IN_FLIGHT at a time,
   * each answer drawn as it arrives. A newer call (zoom, x axis) makes an older one stop.
   */
  async function loadAll({ beforeFirst = null, afterFirst = null } = {}) {
    const mine = ++generation;
    const started = performance.now();
    chartsStatus.textContent = view.zoom ? 'Loading the zoomed range…' : 'Loading charts…';
    loaded.clear();
    groupsLoaded.clear();
    const pts = points();
    const order = drawingOrder();
    if (!order.length) return;
    if (mine === 1) performance.mark('tora:compare-fetch');
    const lines = view.group ? 1 : runs.length; // a group request's buckets: the server caps them
    const fetchNames = (names) => (view.group ? fetchGroups(groupQuery(names, pts), { signal: ctx.signal }) : fetchBatch(names, pts));
    const show = (names, got) => {
      if (view.group) {
        for (const name of names) groupsLoaded.set(name, got.groups || []);
        showGroupLegend(got.groups || []);
        for (const name of names) { const c = charts.get(name); if (c) drawGroups(c, name); }
      } else {
        for (const [name, list] of got) {
          loaded.set(name, list);
          const c = charts.get(name);
          if (c) draw(c, list.map(({ run, cols }) => ({ label: run.label, color: run.color, cols })));
        }
      }
      for (const p of panelCharts) if (p.names.some((n) => names.includes(n))) refreshPanel(p);
    };
    try {
      const t0 = performance.now();
      const head = [order[0]];
      const got = await fetchNames(head); // alone, so the first chart does not share the server with the rest
      if (mine !== generation) return;
      if (mine === 1) performance.mark('tora:compare-first-answer');
      // The other requests go out before the first chart is drawn: the server works meanwhile.
      const rest = order.slice(1);
      const queue = chunk(rest, batchSize(rest.length, pts, lines, performance.now() - t0));
      const others = Promise.all(Array.from({ length: Math.min(IN_FLIGHT, queue.length) }, async () => {
        while (queue.length) {
          const names = queue.shift();
          const answer = await fetchNames(names);
          if (mine !== generation) return;
          show(names, answer);
        }
      }));
      if (beforeFirst) beforeFirst();
      show(head, got);
      performance.mark('tora:first-chart');
      if (afterFirst) afterFirst();
      await others;
    } catch (err) {
      if (err.name === 'AbortError') return;
      if (view.group && err.status === 404 && !groupsLoaded.size) {
        // A server from before groups: say so rather than "not found".
        fill(chartsStatus, errorBox('This server cannot group runs (it has no /api/series/groups): choose "Nothing" under Group by.'));
        return;
      }
      fill(chartsStatus, errorBox(err));
      return;
    }
    if (mine !== generation) return;
    performance.mark('tora:all-charts');
    const what = view.group ? `${groupCount} groups of ${everyRun.length} runs` : `${runs.length} runs`;
    chartsStatus.textContent = `${metricNames.length} charts × ${what} in ${Math.round(performance.now() - started)} ms`;
  }

  // ---------- groups: a mean line in a band per group ----------
  const groupsLoaded = new Map(); // metric -> groups of the last answer that had it
  const groupColors = new Map(); // JSON of a group's key -> colour, kept across answers
  let groupCount = 0;

  function groupColor(g) {
    const k = JSON.stringify(g.key ?? null);
    if (!groupColors.has(k)) groupColors.set(k, runColor(groupColors.size));
    return groupColors.get(k);
  }

  /** One group's series of `name` as a line with its band (min–max or mean ± std), or null. */
  function groupLine(g, name, label = g.label) {
    const s = (g.series || []).find((x) => x.name === name);
    if (!s) return null;
    const std = view.band === 'std';
    const around = (sign) => s.mean.map((m, j) => (m === null || s.std[j] === null || s.std[j] === undefined ? null : m + sign * s.std[j]));
    return {
      label, color: groupColor(g), band: true,
      cols: {
        x: s.x, last: s.mean, min: std ? around(-1) : s.min, max: std ? around(1) : s.max,
        count: s.runs || s.x.map(() => 1), nonfinite: s.x.map(() => 0),
      },
    };
  }

  function drawGroups(c, name) {
    const groups = groupsLoaded.get(name) || [];
    draw(c, groups.map((g) => groupLine(g, name, `${g.label} (${g.runs})`)).filter(Boolean));
    c.card.dataset.groups = String(groups.length);
  }

  function redrawGroups() {
    for (const [name] of groupsLoaded) { const c = charts.get(name); if (c) drawGroups(c, name); }
    for (const p of panelCharts) refreshPanel(p);
  }

  function showGroupLegend(groups) {
    groupCount = Math.max(groupCount, groups.length);
    if (legend.dataset.groups === String(groups.length)) return;
    legend.dataset.groups = String(groups.length);
    fill(legend, groups.map((g) => h('span', { class: 'legend-group' },
      swatch({ color: groupColor(g) }), g.label, h('span', { class: 'muted' }, ` ${g.runs} run${g.runs === 1 ? '' : 's'}`))));
  }

  // ---------- live: one workspace stream per workspace of the compared runs ----------
  const charted = () => [...new Set([...metricNames, ...panels.flat().filter((n) => metricRuns.has(n))])];
  const paced = new Map(); // run id -> {timer, busy, again}

  /** Every charted metric of one run fetched again, then redrawn in its charts and panels. */
  async function refetchRun(run) {
    const names = charted();
    if (!names.length) return;
    const mine = generation;
    // One request per kind of x axis (system metrics may be on time while the rest is on steps).
    for (const x of new Set(names.map(xOf))) {
      const these = names.filter((n) => xOf(n) === x);
      const shift = x === 'rel' ? startOf(run) : 0;
      const query = { experiments: run.id, names: these.join(','), points: points(), x: x === 'step' ? 'step' : 'time' };
      const zoom = zoomFor(x);
      if (zoom) { query.from = zoom[0] + shift; query.to = zoom[1] + shift; }
      const [got] = await fetchSeries(query, { signal: ctx.signal });
      if (mine !== generation || !got) return; // the view changed meanwhile: loadAll has it
      for (const name of these) {
        const list = loaded.get(name);
        if (!list) continue;
        const s = got.series.find((e) => e.name === name);
        const k = list.findIndex((e) => e.run.id === run.id);
        if (k < 0) continue;
        list[k] = { run, cols: toColumns(s || NO_SERIES, shift) };
        const c = charts.get(name);
        if (c) draw(c, list.map((e) => ({ label: e.run.label, color: e.run.color, cols: e.cols })));
      }
    }
    for (const p of panelCharts) refreshPanel(p);
  }

  /**
   * Refetches a run now, or once REFETCH_EVERY has passed since its last refetch. In the group
   * view a run's progress moves its group's aggregate: every group is fetched again (paced as one).
   */
  function pace(run) {
    if (view.group) run = { id: '', label: 'the groups', groups: true };
    let p = paced.get(run.id);
    if (!p) { p = { timer: 0, busy: false, again: false, last: 0 }; paced.set(run.id, p); }
    if (p.busy || p.timer) { p.again = true; return; }
    const go = async () => {
      p.timer = 0;
      p.busy = true;
      p.last = performance.now();
      try {
        if (run.groups) await loadAll();
        else await refetchRun(run);
      } catch (err) {
        if (err.name !== 'AbortError') chartsStatus.textContent = `Could not update ${run.label}: ${err.message}`;
      }
      p.busy = false;
      if (p.again) { p.again = false; pace(run); }
    };
    const wait = Math.max(0, p.last + REFETCH_EVERY - performance.now());
    p.timer = setTimeout(go, wait);
  }

  const followedRuns = view.group ? everyRun : runs;
  const compared = new Map(followedRuns.map((r) => [r.id, r]));
  const states = new Map();
  const greeted = new Set(); // workspaces whose stream said hello once: later hellos are reconnections
  // A browser keeps about six connections to a server over HTTP/1.1 and each stream holds one:
  // follow the MAX_STREAMS workspaces with the most compared runs, the others stay as loaded.
  const perWorkspace = new Map();
  for (const r of followedRuns) perWorkspace.set(r.workspace_id, (perWorkspace.get(r.workspace_id) || 0) + 1);
  const followed = [...perWorkspace.keys()].sort((a, b) => perWorkspace.get(b) - perWorkspace.get(a)).slice(0, MAX_STREAMS);
  let stops = [];
  const follow = () => followed.map((ws) => followWorkspace(ws, {
    // A (re)connection may have missed progress: fetch every run again (no replay).
    hello: () => {
      if (greeted.has(ws)) for (const r of followedRuns) if (r.workspace_id === ws) pace(r);
      greeted.add(ws);
    },
    progress: (d) => { if (compared.has(d.id) && (loaded.size || groupsLoaded.size)) pace(compared.get(d.id)); },
  }, (st) => {
    states.set(ws, st);
    const all = [...states.values()];
    ctx.root.dataset.stream = all.every((x) => x === 'live') && states.size === stops.length ? 'live' : (all.includes('reconnecting') ? 'reconnecting' : st);
  }));

  ctx.onLeave(() => {
    for (const stop of stops) stop();
    for (const p of paced.values()) clearTimeout(p.timer);
    delete ctx.root.dataset.stream;
    for (const c of allCharts()) dropChart(c);
  });
  drawPanels();
  // The tables once the first answer is in and the other requests are out (in the task that
  // draws the first chart: no frame shows the chart without them, so nothing moves), or after
  // TABLES_WAIT if that answer is slow; the live streams once the first chart is drawn.
  let built = false;
  const tables = () => {
    if (built || ctx.signal.aborted) return;
    built = true;
    const t0 = performance.now();
    if (everyRun.length) fill(tablesBox, hyperparamSection(), resultsSection(), parcoordsSection());
    performance.measure('tora:compare-tables', { start: t0 });
  };
  let following = false;
  const live = () => {
    if (following || ctx.signal.aborted) return;
    following = true;
    stops = follow();
  };
  const late = setTimeout(tables, TABLES_WAIT);
  ctx.onLeave(() => clearTimeout(late));
  const loading = everyRun.length && (metricNames.length || panels.length) ? loadAll({ beforeFirst: tables, afterFirst: live }) : null;
  try {
    await loading;
  } finally {
    tables(); // also without charts, or when loading failed or stopped early
    live();
    clearTimeout(late);
  }
}
