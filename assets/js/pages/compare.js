// /compare?ids=a,b,c: runs side by side. Every shared metric overlaid (in sections by name
// prefix, plus user-made panels of several metrics), the hyperparameters with the differing rows
// highlighted, the results, and a parallel-coordinates plot from the hyperparameters to a chosen
// result. System metrics (sys/) come last, on the time axis while the page is on steps. The URL
// also keeps x (step|rel|time), scale, smooth, from/to (zx: the axis they are on, when not x),
// collapsed, panels, target and diff.

import * as api from '../api.js';
import { h, fill, empty, errorBox, segmented } from '../dom.js';
import { num, value, toNumber } from '../format.js';
import { displayName, nameSuffixes, stateMark, groupLink } from '../runinfo.js';
import { OverlayChart, runColor, toColumns, dash } from '../chart.js';
import { draw as drawParcoords } from '../parcoords.js';
import { Sections, parseCollapsed, formatCollapsed, xmodeOf } from '../sections.js';
import { loadPanels, savePanels, panelPicker, panelCard } from '../panels.js';
import { followWorkspace } from '../live.js';

const MAX_RUNS = 200;
const IN_FLIGHT = 2;
const REFETCH_EVERY = 2000; // ms: a streaming run's charts are fetched again at most this often
const MAX_STREAMS = 3; // workspace streams one compare page keeps open

export async function render(ctx) {
  const ids = (ctx.query.get('ids') || '').split(',').map((s) => s.trim()).filter(Boolean).slice(0, MAX_RUNS);
  document.title = 'Compare · Tora';
  if (ids.length === 0) {
    fill(ctx.root, h('h1', {}, 'Compare runs'),
      empty('No runs chosen', 'Select two or more experiments in a workspace table and press Compare.'));
    return;
  }
  const found = await api.post('/experiments/batch', { ids }, { signal: ctx.signal, retry: true }); // a read
  const byId = new Map(found.map((e) => [e.id, e]));
  const runs = ids.filter((id) => byId.has(id)).map((id) => byId.get(id));
  const missing = ids.length - runs.length;
  const summaries = await Promise.all(runs.map((r) => api.get(`/experiments/${r.id}/summary`, null, { signal: ctx.signal })));
  const suffixes = nameSuffixes(runs); // the run table's short ids, so a run reads the same on both
  runs.forEach((r, i) => {
    r.label = displayName(r, suffixes.get(r.id));
    r.color = runColor(i);
    r.summary = summaries[i];
  });
  document.title = `Compare ${runs.length} runs · Tora`;

  const q = ctx.query;
  const view = {
    xmode: ['rel', 'time'].includes(q.get('x')) ? q.get('x') : 'step',
    log: q.get('scale') === 'log',
    smoothing: Math.min(0.99, Math.max(0, Number(q.get('smooth')) || 0)),
    diff: q.get('diff') === '1',
    zoom: q.has('from') && q.has('to') && Number.isFinite(Number(q.get('from'))) && Number.isFinite(Number(q.get('to')))
      ? [Number(q.get('from')), Number(q.get('to'))] : null,
  };
  // The zoom belongs to the charts of one kind of x axis (system metrics may be on another).
  view.zoomX = ['step', 'rel', 'time'].includes(q.get('zx')) ? q.get('zx') : view.xmode;
  const xOf = (name) => xmodeOf(name, view.xmode);
  const zoomFor = (x) => (view.zoom && view.zoomX === x ? view.zoom : null);
  // A panel is on the page's axis, unless every metric in it is a system metric.
  const panelX = (names) => (names.every((n) => xOf(n) !== view.xmode) ? xOf(names[0]) : view.xmode);
  const chartX = (c) => (c.names ? panelX(c.names) : xOf(c.name));
  const save = () => ctx.setQuery({
    x: view.xmode === 'step' ? null : view.xmode, scale: view.log ? 'log' : null, smooth: view.smoothing || null,
    diff: view.diff ? '1' : null, from: view.zoom ? String(view.zoom[0]) : null, to: view.zoom ? String(view.zoom[1]) : null,
    zx: view.zoom && view.zoomX !== view.xmode ? view.zoomX : null,
  });
  // Panels are kept per workspace: the first run's (a comparison usually stays in one).
  const workspaceId = runs[0] ? runs[0].workspace_id : null;
  let panels = loadPanels(q, workspaceId);
  const startOf = (r) => Date.parse(r.started_at || r.created_at) || 0;

  // Metrics: those every run has first, then those only some have.
  const metricRuns = new Map();
  for (const r of runs) for (const m of r.summary.metrics) metricRuns.set(m.name, (metricRuns.get(m.name) || 0) + 1);
  const metricNames = [...metricRuns.keys()].filter((n) => metricRuns.get(n) > 1 || runs.length === 1)
    .sort((a, b) => (metricRuns.get(b) - metricRuns.get(a)) || a.localeCompare(b, undefined, { numeric: true }));

  const swatch = (r) => {
    const s = h('span', { class: 'swatch', 'aria-hidden': 'true' });
    s.style.background = r.color;
    return s;
  };
  const legend = h('div', { class: 'legend', 'aria-label': 'Runs' }, runs.map((r) => h('span', {},
    swatch(r), h('a', { href: `/experiments/${r.id}` }, r.label), ' ', stateMark(r.state), r.group ? ' ' : null, groupLink(r))));
  const chartsStatus = h('span', { class: 'muted small', role: 'status' });
  const grid = h('div', { class: 'chart-sections', 'aria-label': 'Metrics' });
  const panelGrid = h('div', { class: 'charts' });
  const panelBox = h('section', { class: 'chart-section', 'aria-label': 'Panels', hidden: true },
    h('h2', { class: 'section-head' }, 'Panels'), panelGrid);
  const resetZoom = h('button', { class: 'small', hidden: !view.zoom, onclick: () => setZoom(null) }, 'Reset zoom');
  const sections = new Sections(grid, parseCollapsed(q.get('collapsed')), (set) => ctx.setQuery({ collapsed: formatCollapsed(set) }));

  fill(ctx.root,
    h('div', { class: 'page-head' }, h('div', { class: 'grow' },
      runs[0] ? h('div', { class: 'crumbs' }, h('a', { href: `/workspaces/${runs[0].workspace_id}` }, 'Back to the workspace')) : null,
      h('h1', {}, `Compare ${runs.length} runs`),
      missing ? h('p', { class: 'error small' }, `${missing} of the runs in the link are deleted or not visible to you.`) : null)),
    runs.length === 0 ? empty('None of these runs is visible to you', 'They may have been deleted, or you are not a member of their workspace.') : [
      hyperparamSection(),
      resultsSection(),
      parcoordsSection(),
      h('h2', { class: 'section' }, 'Metrics'),
      toolbar(),
      h('div', { class: 'section' }, legend),
      panelBox,
      metricNames.length ? grid : empty('No shared metrics', 'These runs have no metric name in common.'),
    ]);

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
      segmented('x', [['step', 'Step'], ['rel', 'Relative'], ['time', 'Wall time']], view.xmode, (k) => {
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
      resetZoom, chartsStatus);
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
      h('div', { class: 'chart-head' }, h('h3', {}, name), h('div', { class: 'chart-stats' }, n === runs.length ? `${n} runs` : `${n} of ${runs.length} runs`)),
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
    if (!c.names.every((n) => loaded.has(n) || !metricRuns.has(n))) return; // not all fetched yet
    const lines = [];
    const x = panelX(c.names);
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
    const card = [...ctx.root.querySelectorAll('.chart-body')].find((b) => b.clientWidth > 0);
    const w = card ? card.clientWidth : Math.min(grid.clientWidth || 600, 600);
    // Many overlaid lines hide detail anyway: fewer buckets each keeps the payload small.
    return Math.max(100, Math.min(runs.length > 8 ? 300 : 700, Math.round(w - 60)));
  }

  /**
   * One metric of every run: [{run, cols}], every run present (empty columns where it has no
   * point in range). Relative time is wall time minus each run's start, so a zoomed range is a
   * different wall-time range per run: one request per run then.
   */
  async function fetchMetric(name) {
    const x = xOf(name);
    const zoom = zoomFor(x);
    const base = { names: name, points: points(), x: x === 'step' ? 'step' : 'time' };
    const perRun = x === 'rel' && zoom;
    const requests = perRun
      ? runs.map((r) => ({ ...base, experiments: r.id, from: zoom[0] + startOf(r), to: zoom[1] + startOf(r) }))
      : [{ ...base, experiments: runs.map((r) => r.id).join(','), ...(zoom ? { from: zoom[0], to: zoom[1] } : {}) }];
    const lists = await Promise.all(requests.map((query) => api.get('/series', query, { signal: ctx.signal })));
    const byRun = new Map(lists.flat().map((e) => [e.experiment_id, e.series.find((x) => x.name === name)]));
    return runs.map((run) => {
      const s = byRun.get(run.id);
      const cols = toColumns(s || { x: [], min: [], max: [], last: [] }, x === 'rel' ? startOf(run) : 0);
      return { run, cols };
    });
  }

  let generation = 0;
  async function loadAll() {
    const mine = ++generation;
    const started = performance.now();
    chartsStatus.textContent = view.zoom ? 'Loading the zoomed range…' : 'Loading charts…';
    loaded.clear();
    // Metrics of the panels first, then the rest in section order, system metrics last.
    const queue = [...new Set([...panels.flat().filter((n) => metricRuns.has(n)), ...metricNames])]
      .sort((a, b) => (xOf(a) !== view.xmode) - (xOf(b) !== view.xmode));
    let first = true;
    const one = async (name) => {
      const got = await fetchMetric(name);
      if (mine !== generation) return;
      loaded.set(name, got);
      const c = charts.get(name);
      if (c) draw(c, got.map(({ run, cols }) => ({ label: run.label, color: run.color, cols })));
      for (const p of panelCharts) if (p.names.includes(name)) refreshPanel(p);
      if (first) { first = false; performance.mark('tora:first-chart'); }
    };
    if (!queue.length) return;
    try {
      await one(queue.shift()); // alone, so the first chart does not share the server with the rest
      await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, queue.length) }, async () => {
        while (queue.length) await one(queue.shift());
      }));
    } catch (err) {
      if (err.name === 'AbortError') return;
      fill(chartsStatus, errorBox(err));
      return;
    }
    if (mine !== generation) return;
    performance.mark('tora:all-charts');
    chartsStatus.textContent = `${metricNames.length} charts × ${runs.length} runs in ${Math.round(performance.now() - started)} ms`;
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
      const [got] = await api.get('/series', query, { signal: ctx.signal });
      if (mine !== generation || !got) return; // the view changed meanwhile: loadAll has it
      for (const name of these) {
        const list = loaded.get(name);
        if (!list) continue;
        const s = got.series.find((e) => e.name === name);
        const k = list.findIndex((e) => e.run.id === run.id);
        if (k < 0) continue;
        list[k] = { run, cols: toColumns(s || { x: [], min: [], max: [], last: [] }, shift) };
        const c = charts.get(name);
        if (c) draw(c, list.map((e) => ({ label: e.run.label, color: e.run.color, cols: e.cols })));
      }
    }
    for (const p of panelCharts) refreshPanel(p);
  }

  /** Refetches a run now, or once REFETCH_EVERY has passed since its last refetch. */
  function pace(run) {
    let p = paced.get(run.id);
    if (!p) { p = { timer: 0, busy: false, again: false, last: 0 }; paced.set(run.id, p); }
    if (p.busy || p.timer) { p.again = true; return; }
    const go = async () => {
      p.timer = 0;
      p.busy = true;
      p.last = performance.now();
      try {
        await refetchRun(run);
      } catch (err) {
        if (err.name !== 'AbortError') chartsStatus.textContent = `Could not update ${run.label}: ${err.message}`;
      }
      p.busy = false;
      if (p.again) { p.again = false; pace(run); }
    };
    const wait = Math.max(0, p.last + REFETCH_EVERY - performance.now());
    p.timer = setTimeout(go, wait);
  }

  const compared = new Map(runs.map((r) => [r.id, r]));
  const states = new Map();
  const greeted = new Set(); // workspaces whose stream said hello once: later hellos are reconnections
  // A browser keeps about six connections to a server over HTTP/1.1 and each stream holds one:
  // follow the MAX_STREAMS workspaces with the most compared runs, the others stay as loaded.
  const perWorkspace = new Map();
  for (const r of runs) perWorkspace.set(r.workspace_id, (perWorkspace.get(r.workspace_id) || 0) + 1);
  const followed = [...perWorkspace.keys()].sort((a, b) => perWorkspace.get(b) - perWorkspace.get(a)).slice(0, MAX_STREAMS);
  const stops = followed.map((ws) => followWorkspace(ws, {
    // A (re)connection may have missed progress: fetch every run again (no replay).
    hello: () => {
      if (greeted.has(ws)) for (const r of runs) if (r.workspace_id === ws) pace(r);
      greeted.add(ws);
    },
    progress: (d) => { if (compared.has(d.id) && loaded.size) pace(compared.get(d.id)); },
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
  if (runs.length && (metricNames.length || panels.length)) await loadAll();
}
