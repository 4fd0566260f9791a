// /compare?ids=a,b,c: runs side by side. Every shared metric overlaid, the hyperparameters with
// the differing rows highlighted, the results, and a parallel-coordinates plot from the
// hyperparameters to a chosen result. The URL also keeps x, scale, smooth, target and diff.

import * as api from '../api.js';
import { h, fill, empty, errorBox, segmented } from '../dom.js';
import { num, value, toNumber, shortId } from '../format.js';
import { OverlayChart, runColor, toColumns } from '../chart.js';
import { draw as drawParcoords } from '../parcoords.js';

const MAX_RUNS = 200;
const IN_FLIGHT = 2;

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
  const names = runs.map((r) => r.name);
  runs.forEach((r, i) => {
    r.label = names.filter((n) => n === r.name).length > 1 ? `${r.name} (${shortId(r.id)})` : r.name;
    r.color = runColor(i);
    r.summary = summaries[i];
  });
  document.title = `Compare ${runs.length} runs · Tora`;

  const q = ctx.query;
  const view = {
    time: q.get('x') === 'time',
    log: q.get('scale') === 'log',
    smoothing: Math.min(0.99, Math.max(0, Number(q.get('smooth')) || 0)),
    diff: q.get('diff') === '1',
    zoom: null,
  };
  const save = () => ctx.setQuery({ x: view.time ? 'time' : null, scale: view.log ? 'log' : null, smooth: view.smoothing || null, diff: view.diff ? '1' : null });

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
    swatch(r), h('a', { href: `/experiments/${r.id}` }, r.label))));
  const chartsStatus = h('span', { class: 'muted small', role: 'status' });
  const grid = h('div', { class: 'charts', 'aria-label': 'Metrics' });
  const resetZoom = h('button', { class: 'small', hidden: true, onclick: () => setZoom(null) }, 'Reset zoom');

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
    const select = h('select', { 'aria-label': 'Result on the last axis' }, targets.map((t) => h('option', { value: t, selected: t === target }, t)));
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
      for (const c of charts.values()) if (c.chart) c.chart.set({ smoothing: view.smoothing });
      save();
    });
    return h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Chart options' },
      segmented('x', [['step', 'Step'], ['time', 'Time']], view.time ? 'time' : 'step', (k) => { view.time = k === 'time'; view.zoom = null; resetZoom.hidden = true; save(); loadAll(); }),
      segmented('y', [['lin', 'Linear'], ['log', 'Log']], view.log ? 'log' : 'lin', (k) => {
        view.log = k === 'log';
        for (const c of charts.values()) if (c.chart) c.chart.set({ log: view.log });
        save();
      }),
      h('label', { class: 'control' }, 'Smoothing', smooth, out),
      resetZoom, chartsStatus);
  }

  const charts = new Map();
  for (const name of metricNames) {
    const body = h('div', { class: 'chart-body', role: 'group', 'aria-label': `Chart of ${name}; + and - zoom, arrows pan, 0 resets` });
    const readout = h('span', { class: 'readout' });
    const n = metricRuns.get(name);
    const card = h('section', { class: 'chart', 'aria-label': `Metric ${name}`, dataset: { metric: name, state: 'loading' } },
      h('div', { class: 'chart-head' }, h('h3', {}, name), h('div', { class: 'chart-stats' }, n === runs.length ? `${n} runs` : `${n} of ${runs.length} runs`)),
      body, h('div', { class: 'chart-foot' }, readout));
    grid.append(card);
    charts.set(name, { card, body, readout, chart: null });
  }

  function setZoom(zoom) {
    view.zoom = zoom && [Math.floor(zoom[0]), Math.ceil(zoom[1])]; // whole steps or milliseconds
    resetZoom.hidden = !zoom;
    loadAll();
  }

  function points() {
    const card = grid.querySelector('.chart-body');
    const w = card ? card.clientWidth : Math.min(grid.clientWidth || 600, 600);
    // Many overlaid lines hide detail anyway: fewer buckets each keeps the payload small.
    return Math.max(100, Math.min(runs.length > 8 ? 300 : 700, Math.round(w - 60)));
  }

  let generation = 0;
  async function loadAll() {
    const mine = ++generation;
    const started = performance.now();
    chartsStatus.textContent = 'Loading charts…';
    const queue = metricNames.slice();
    let first = true;
    const one = async (name) => {
      const query = { experiments: runs.map((r) => r.id).join(','), names: name, points: points(), x: view.time ? 'time' : 'step' };
      if (view.zoom) { query.from = view.zoom[0]; query.to = view.zoom[1]; }
      const list = await api.get('/series', query, { signal: ctx.signal });
      if (mine !== generation) return;
      const c = charts.get(name);
      const lines = [];
      for (const perRun of list) {
        const run = runs.find((r) => r.id === perRun.experiment_id);
        const s = perRun.series.find((x) => x.name === name);
        if (run && s && s.x.length) lines.push({ label: run.label, color: run.color, cols: toColumns(s) });
      }
      if (lines.length === 0) {
        if (c.chart) { c.chart.destroy(); c.chart = null; }
        fill(c.body, h('p', { class: 'muted small' }, 'No points in this range.'));
      } else if (c.chart) c.chart.setRuns(lines, view.zoom);
      else {
        fill(c.body);
        c.chart = new OverlayChart(c.body, lines, {
          time: view.time, log: view.log, smoothing: view.smoothing, zoom: view.zoom,
          onZoom: (min, max) => setZoom([min, max]),
          onReset: () => { if (view.zoom) setZoom(null); },
          onCursor: (text) => { c.readout.textContent = text || ''; },
        });
      }
      c.card.dataset.state = 'drawn';
      if (first) { first = false; performance.mark('tora:first-chart'); }
    };
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

  ctx.onLeave(() => { for (const c of charts.values()) if (c.chart) c.chart.destroy(); });
  if (runs.length && metricNames.length) await loadAll();
}
