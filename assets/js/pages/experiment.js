// /experiments/{id}: one run. Its description, tags and group (editable by EDITORs and OWNERs), its
// hyperparameters and results, and a chart per metric from the server's downsampled series, in
// sections by name prefix (system metrics last, on the time axis while the page is on steps),
// with user-made panels of several metrics. The URL keeps x (step|rel|time), scale (log),
// smooth, filter, the zoom (from, to, and zx when it is on another axis than x), collapsed and
// panels.
// A run with thousands of metrics (per-layer statistics): past EAGER metrics, a chart card is
// built only when its section is open and scrolls near (CHUNK cards at a time), and its series
// is fetched only once the card is near the viewport (IntersectionObserver), in batches; past
// MANY, sections start collapsed but the first. The filter box searches every name.

import * as api from '../api.js';
import { h, fill, toast, busy, empty, confirmDanger, segmented } from '../dom.js';
import { count, dateTime, num, value, toNumber } from '../format.js';
import { MetricChart, OverlayChart, runColor, toColumns } from '../chart.js';
import { follow } from '../live.js';
import { markdown } from '../markdown.js';
import { runTiming, metadataPanel, groupLink } from '../runinfo.js';
import { Sections, parseCollapsed, formatCollapsed, xmodeOf, prefixOf, compareSections } from '../sections.js';
import { loadPanels, savePanels, panelPicker, panelCard } from '../panels.js';
import { artifactsPanel } from '../artifacts.js';

const FIRST_BATCH = 2; // metrics in the first request, so the first chart shows early
const BATCH = 3; // metrics per later request, several requests in flight
const IN_FLIGHT = 4;
const EAGER = 60; // up to this many metrics, every card is built and fetched at once
const MANY = 200; // past this many, sections start collapsed (all but the first)
const CHUNK = 24; // cards a section adds at a time as its end scrolls near
const SUMMARY_PAGES = 10; // /summary pages read at most (10,000 series each)

/** Every metric and result of the run, following `next` for at most SUMMARY_PAGES pages. */
async function loadSummary(id, signal) {
  const first = await api.get(`/experiments/${id}/summary`, null, { signal });
  let next = first.next;
  for (let i = 1; next && i < SUMMARY_PAGES; i++) {
    const page = await api.get(`/experiments/${id}/summary`, { cursor: next }, { signal });
    first.metrics.push(...page.metrics);
    first.results.push(...page.results);
    next = page.next;
  }
  first.partial = Boolean(next);
  return first;
}

export async function render(ctx) {
  const id = ctx.params.id;
  const [exp, summary, workspaces] = await Promise.all([
    api.get(`/experiments/${id}`, null, { signal: ctx.signal }),
    loadSummary(id, ctx.signal),
    api.get('/workspaces', null, { signal: ctx.signal }),
  ]);
  const ws = workspaces.find((w) => w.id === exp.workspace_id);
  const role = ws ? ws.role : 'VIEWER';
  const canEdit = role === 'OWNER' || role === 'EDITOR';
  document.title = `${exp.name} · Tora`;

  const q = ctx.query;
  const view = {
    xmode: ['rel', 'time'].includes(q.get('x')) ? q.get('x') : 'step',
    log: q.get('scale') === 'log',
    smoothing: clampSmoothing(Number(q.get('smooth') || 0)),
    filter: q.get('filter') || '',
    zoom: q.has('from') && q.has('to') ? [Number(q.get('from')), Number(q.get('to'))] : null,
  };
  // The zoom belongs to the charts of one kind of x axis (system metrics may be on another).
  view.zoomX = ['step', 'rel', 'time'].includes(q.get('zx')) ? q.get('zx') : view.xmode;
  const xOf = (name) => xmodeOf(name, view.xmode);
  const zoomFor = (x) => (view.zoom && view.zoomX === x ? view.zoom : null);
  const start = Date.parse(exp.started_at || exp.created_at) || 0; // relative time counts from here
  const saveView = () => ctx.setQuery({
    x: view.xmode === 'step' ? null : view.xmode, scale: view.log ? 'log' : null,
    smooth: view.smoothing ? String(view.smoothing) : null, filter: view.filter || null,
    from: view.zoom ? String(view.zoom[0]) : null, to: view.zoom ? String(view.zoom[1]) : null,
    zx: view.zoom && view.zoomX !== view.xmode ? view.zoomX : null,
  });

  const metrics = new Map(); // name -> {info (summary), gen, cols, chart, requested; once built: card, body, stats, readout, warn}
  const bySection = new Map(); // prefix -> {names (sorted), shown (cards built), more (its "show more" button)}
  const lazy = summary.metrics.length > EAGER;
  const results = new Map(summary.results.map((r) => [r.name, r.value]));
  const liveBadge = h('span', { class: 'live', hidden: !recentlyUpdated(summary) }, 'live');
  const resultsBox = h('div');
  const grid = h('div', { class: 'chart-sections', 'aria-label': 'Metrics' });
  // With many metrics, a URL without `collapsed` collapses all sections but the first; "~" is the
  // URL's word for "none collapsed" then.
  const collapsedParam = q.get('collapsed');
  const collapsed = parseCollapsed(collapsedParam === '~' ? '' : collapsedParam);
  if (summary.metrics.length > MANY && collapsedParam === null) {
    const prefixes = [...new Set(summary.metrics.map((m) => prefixOf(m.name)))].sort(compareSections);
    for (const p of prefixes.slice(1)) collapsed.add(p);
  }
  const sections = new Sections(grid, collapsed,
    (set) => ctx.setQuery({ collapsed: formatCollapsed(set) || (summary.metrics.length > MANY ? '~' : null) }),
    { onOpen: (prefix) => renderSection(prefix) });
  const countBox = h('span', { class: 'muted small metric-count', role: 'status', 'aria-live': 'polite' });
  let panels = loadPanels(q, exp.workspace_id);
  const panelCharts = [];
  const panelGrid = h('div', { class: 'charts' });
  const panelBox = h('section', { class: 'chart-section', 'aria-label': 'Panels', hidden: true },
    h('h2', { class: 'section-head' }, 'Panels'), panelGrid);
  const emptyCharts = empty('No metrics yet', 'Charts appear here as soon as the run logs a point with a step.');
  const chartsStatus = h('span', { class: 'muted small', role: 'status' });
  const resetZoom = h('button', { class: 'small', hidden: !view.zoom, onclick: () => setZoom(null) }, 'Reset zoom');

  // ---------- header, metadata ----------
  const groupBadge = h('span', { class: 'muted small run-group' });
  const drawGroup = () => {
    fill(groupBadge, exp.group ? ['group ', groupLink(exp)] : null);
    groupBadge.hidden = !exp.group;
  };
  drawGroup();
  const csv = h('button', { onclick: (e) => busy(e.currentTarget, () => downloadCsv(exp)) }, 'Download CSV');
  const del = role === 'OWNER' ? h('button', {
    class: 'danger',
    onclick: (e) => {
      if (!confirmDanger(`Delete the experiment ${exp.name} with all its logs? This cannot be undone.`)) return;
      busy(e.currentTarget, async () => {
        await api.del(`/experiments/${id}`);
        toast(`Deleted ${exp.name}`);
        ctx.navigate(`/workspaces/${exp.workspace_id}`, { replace: true });
      });
    },
  }, 'Delete') : null;

  fill(ctx.root,
    h('div', { class: 'page-head' },
      h('div', { class: 'grow' },
        h('div', { class: 'crumbs' }, h('a', { href: '/workspaces' }, 'Workspaces'), ' / ',
          ws ? h('a', { href: `/workspaces/${ws.id}` }, ws.name) : 'workspace'),
        // With a run state (running/finished/...) the line below says more than "live" (a recent point).
        h('div', { class: 'row' }, h('h1', {}, exp.name), groupBadge, exp.state ? null : liveBadge),
        exp.state ? runTiming(exp, ctx.signal) : null,
        h('p', { class: 'muted small' }, `Created ${dateTime(exp.created_at)} · updated ${dateTime(exp.updated_at)} · `,
          h('code', {}, exp.id), canEdit ? '' : ` · you are a ${role}`)),
      h('div', { class: 'row' }, csv, del)),
    h('div', { class: 'meta-grid' },
      aboutPanel(exp, canEdit, (group) => { exp.group = group; drawGroup(); }),
      h('section', { class: 'panel', 'aria-labelledby': 'hp-h' }, h('h2', { id: 'hp-h' }, 'Hyperparameters'),
        exp.hyperparams.length ? h('table', { class: 'kv' }, h('tbody', {}, exp.hyperparams.map((p) => h('tr', {}, h('th', {}, p.key), h('td', {}, value(p.value))))))
          : h('p', { class: 'muted' }, 'None logged.')),
      h('section', { class: 'panel', 'aria-labelledby': 'res-h' }, h('h2', { id: 'res-h' }, 'Results'), resultsBox),
      metadataPanel(exp.metadata)),
    artifactsPanel(exp, ctx.signal, canEdit),
    toolbar(),
    panelBox,
    grid,
    summary.metrics.length ? null : emptyCharts);
  drawResults();

  function drawResults() {
    fill(resultsBox, results.size
      ? h('table', { class: 'kv' }, h('tbody', {}, [...results].map(([name, v]) => h('tr', {}, h('th', {}, name), h('td', {}, num(v))))))
      : h('p', { class: 'muted' }, 'None logged.'));
  }

  // ---------- toolbar ----------
  function toolbar() {
    const smoothValue = h('output', { class: 'mono' }, view.smoothing.toFixed(2));
    const smooth = h('input', { type: 'range', min: '0', max: '0.99', step: '0.01', value: String(view.smoothing), 'aria-label': 'Smoothing (EMA weight)' });
    smooth.addEventListener('input', () => {
      view.smoothing = clampSmoothing(Number(smooth.value));
      smoothValue.textContent = view.smoothing.toFixed(2);
      for (const m of metrics.values()) if (m.chart) m.chart.set({ smoothing: view.smoothing });
      for (const p of panelCharts) if (p.chart) p.chart.set({ smoothing: view.smoothing });
      saveView();
    });
    const filter = h('input', { type: 'search', value: view.filter, placeholder: 'Filter metrics', 'aria-label': 'Filter metrics by name' });
    filter.addEventListener('input', () => {
      view.filter = filter.value.trim();
      renderAll();
      saveView();
    });
    return h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Chart options' },
      segmented('x', [['step', 'Step'], ['rel', 'Relative'], ['time', 'Wall time']], view.xmode, (k) => {
        view.xmode = k;
        view.zoom = null;
        resetZoom.hidden = true;
        for (const m of [...metrics.values(), ...panelCharts]) { // a new kind of axis: new plots
          if (m.chart) m.chart.destroy();
          m.chart = null;
          m.cols = null;
        }
        saveView();
        loadAll();
      }),
      segmented('y', [['lin', 'Linear'], ['log', 'Log']], view.log ? 'log' : 'lin', (k) => {
        view.log = k === 'log';
        for (const m of [...metrics.values(), ...panelCharts]) if (m.chart) m.chart.set({ log: view.log });
        saveView();
      }),
      h('label', { class: 'control' }, 'Smoothing', smooth, smoothValue),
      filter, countBox,
      panelPicker(() => [...metrics.keys()], (names) => { panels = [...panels, names]; savePanels(panels, ctx.setQuery, exp.workspace_id); drawPanels(); }),
      resetZoom, chartsStatus);
  }

  const matches = (name) => !view.filter || name.toLowerCase().includes(view.filter.toLowerCase());

  /** Shows the matching names of every section, and the count. */
  function renderAll() {
    let matching = 0;
    for (const [prefix, sec] of bySection) matching += renderSection(prefix, sec);
    const total = metrics.size;
    countBox.dataset.total = String(total);
    countBox.dataset.matching = String(matching);
    countBox.textContent = total === 0 ? '' : matching === total
      ? `${count(total)} metric${total === 1 ? '' : 's'}${summary.partial ? ' (more not listed)' : ''}`
      : `${count(matching)} of ${count(total)} metrics`;
  }

  /**
   * The cards of one section: its matching names, the first `shown` of them built (all when
   * not lazy), and a "show more" button that builds CHUNK more when it scrolls near. A
   * collapsed section builds none, unless a filter is on (a search opens what it finds).
   */
  function renderSection(prefix, sec = bySection.get(prefix)) {
    const names = sec.names.filter(matches);
    sections.setCount(prefix, names.length, sec.names.length, Boolean(view.filter) && names.length > 0);
    const s = sections.section(prefix);
    if (s.grid.hidden) return names.length;
    const n = lazy ? Math.min(names.length, Math.max(sec.shown, CHUNK)) : names.length;
    sec.shown = n;
    const cards = names.slice(0, n).map((name) => cardOf(metrics.get(name)));
    if (n < names.length) {
      sec.more.textContent = `Show ${Math.min(CHUNK, names.length - n)} more (${count(names.length - n)} not shown)`;
      cards.push(sec.more);
    }
    s.grid.replaceChildren(...cards);
    return names.length;
  }

  /** Registers a metric (its card is built when shown). */
  function track(info) {
    const m = { info, gen: 0, cols: null, chart: null, requested: 0, card: null };
    metrics.set(info.name, m);
    const prefix = prefixOf(info.name);
    let sec = bySection.get(prefix);
    if (!sec) {
      const more = h('button', { type: 'button', class: 'small more-charts', dataset: { section: prefix } });
      sec = { names: [], shown: 0, more };
      more.addEventListener('click', () => grow(prefix));
      nearEnd.observe(more);
      bySection.set(prefix, sec);
      sections.section(prefix);
    }
    sec.names.push(info.name);
    emptyCharts.remove();
    return m;
  }

  function grow(prefix) {
    const sec = bySection.get(prefix);
    sec.shown += CHUNK;
    renderSection(prefix, sec);
  }

  // A section's "show more" button near the viewport builds its next cards.
  const nearEnd = new IntersectionObserver((entries) => {
    for (const e of entries) if (e.isIntersecting && e.target.isConnected) grow(e.target.dataset.section);
  }, { rootMargin: '600px 0px' });
  // Cards near the viewport: the only ones whose series are fetched (lazy mode).
  const visible = new Set();
  const near = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const name = e.target.dataset.metric;
      if (e.isIntersecting) {
        visible.add(name);
        const m = metrics.get(name);
        if (m && m.gen !== generation) want(name);
      } else {
        visible.delete(name);
      }
    }
  }, { rootMargin: '300px 0px' });

  function cardOf(m) {
    if (m.card) return m.card;
    const info = m.info;
    m.stats = h('div', { class: 'chart-stats' });
    m.body = h('div', { class: 'chart-body', role: 'group', 'aria-label': `Chart of ${info.name}; + and - zoom, arrows pan, 0 resets` });
    m.readout = h('span', { class: 'readout' });
    m.warn = h('span', { class: 'warn' });
    m.card = h('section', { class: 'chart', 'aria-label': `Metric ${info.name}`, dataset: { metric: info.name, state: 'loading' } },
      h('div', { class: 'chart-head' }, h('h3', {}, info.name), m.stats),
      m.body,
      h('div', { class: 'chart-foot' }, m.readout, m.warn));
    drawStats(m);
    if (m.cols) draw(m);
    if (lazy) near.observe(m.card);
    else if (m.gen !== generation) want(info.name);
    return m.card;
  }

  function drawStats(m) {
    if (!m.card) return;
    const i = m.info;
    m.stats.textContent = `last ${num(i.last)} · min ${num(i.min)} · max ${num(i.max)} · ${count(i.count)} pts`;
    m.warn.textContent = i.nonfinite ? `${count(i.nonfinite)} NaN/Inf ▲` : '';
  }

  function chartOptions(m) {
    const x = xOf(m.info.name);
    return {
      xmode: x, log: view.log, smoothing: view.smoothing, zoom: zoomFor(x),
      syncKey: `exp-${id}-${x}`,
      onZoom: (min, max) => setZoom([min, max], x),
      onReset: () => { if (zoomFor(x)) setZoom(null); },
      onCursor: (text) => { m.readout.textContent = text || ''; },
    };
  }

  function show(m, series) {
    const x = xOf(series.name);
    m.cols = toColumns(series, x === 'rel' ? start : 0);
    m.total = series.total;
    m.requested = m.cols.x.length;
    if (m.card) draw(m);
    for (const p of panelCharts) if (p.names.includes(series.name)) refreshPanel(p);
  }

  function draw(m) {
    const x = xOf(m.info.name);
    if (m.chart) m.chart.setColumns(m.cols, zoomFor(x));
    else m.chart = new MetricChart(m.body, m.cols, chartOptions(m));
    m.card.dataset.state = 'drawn';
    m.card.dataset.x = x;
    m.card.dataset.points = String(m.total);
  }

  // ---------- panels: several metrics of this run on one chart ----------
  function drawPanels() {
    for (const p of panelCharts) if (p.chart) p.chart.destroy();
    panelCharts.length = 0;
    panelGrid.replaceChildren();
    panelBox.hidden = panels.length === 0;
    panels.forEach((names, i) => {
      const { card, body, readout } = panelCard(names, names.join(' · '), () => {
        panels = panels.filter((_, k) => k !== i);
        savePanels(panels, ctx.setQuery, exp.workspace_id);
        drawPanels();
      });
      panelGrid.append(card);
      const p = { card, body, readout, chart: null, names };
      panelCharts.push(p);
      refreshPanel(p);
    });
    if (panels.length) ctx.setQuery({ panels: JSON.stringify(panels) });
  }

  function refreshPanel(p) {
    if (!p.names.some((n) => metrics.has(n))) {
      fill(p.body, h('p', { class: 'muted small' }, 'This run has none of these metrics.'));
      p.card.dataset.state = 'drawn';
      return;
    }
    // One axis per panel: the page's, unless every metric in it is a system metric.
    const x = p.names.every((n) => xOf(n) !== view.xmode) ? xOf(p.names[0]) : view.xmode;
    for (const n of p.names) if (metrics.has(n) && metrics.get(n).gen !== generation) want(n);
    const lines = p.names.filter((n) => metrics.get(n) && metrics.get(n).cols && xOf(n) === x)
      .map((n) => ({ label: n, color: runColor(p.names.indexOf(n)), cols: metrics.get(n).chart ? metrics.get(n).chart.cols : metrics.get(n).cols }));
    if (!lines.length) return;
    if (p.chart) p.chart.setLines(lines, zoomFor(x));
    else {
      p.body.replaceChildren();
      p.chart = new OverlayChart(p.body, lines, {
        xmode: x, log: view.log, smoothing: view.smoothing, zoom: zoomFor(x),
        onZoom: (min, max) => setZoom([min, max], x),
        onReset: () => { if (zoomFor(x)) setZoom(null); },
        onCursor: (text) => { p.readout.textContent = text || ''; },
      });
    }
    p.card.dataset.state = 'drawn';
  }

  /** One bucket per CSS pixel of a chart's width: finer buys nothing the band does not show. */
  function points() {
    const card = [...grid.querySelectorAll('.chart-body')].find((b) => b.clientWidth > 0);
    const w = card ? card.clientWidth : Math.min(grid.clientWidth || 600, 600);
    return Math.max(100, Math.min(700, Math.round(w - 60)));
  }

  /** The series of `names`, all drawn on the same kind of x axis. */
  async function fetchSeries(names) {
    const x = xOf(names[0]);
    const query = { names: names.join(','), points: points(), x: x === 'step' ? 'step' : 'time' };
    const zoom = zoomFor(x);
    if (zoom) {
      const shift = x === 'rel' ? start : 0; // the server counts wall time
      query.from = zoom[0] + shift;
      query.to = zoom[1] + shift;
    }
    return (await api.get(`/experiments/${id}/series`, query, { signal: ctx.signal })).series;
  }

  /** `names` cut into lists of at most `size` whose charts share a kind of x axis, in order. */
  function batchesOf(names, size) {
    const out = [];
    for (const n of names) {
      const last = out[out.length - 1];
      if (last && last.length < size && xOf(last[0]) === xOf(n)) last.push(n);
      else out.push([n]);
    }
    return out;
  }

  let generation = 1;
  const queue = []; // names waiting for a request
  const queued = new Set();
  let inFlight = 0;
  let sent = 0; // requests of this generation
  let started = performance.now();
  const pinned = () => new Set(panels.flat());

  /** Asks for the series of `name` (for this generation), batched with its neighbours. */
  function want(name) {
    if (queued.has(name) || !metrics.has(name)) return;
    queued.add(name);
    queue.push(name);
    pump();
  }

  /**
   * Sends requests while fewer than IN_FLIGHT are out: each the next names of the queue that
   * share an x axis (FIRST_BATCH for the first, so the first chart shows early). Lazily, a name
   * whose card left the viewport before its turn is dropped (it is asked for again on return).
   */
  function pump() {
    const keep = lazy ? pinned() : null;
    while (inFlight < IN_FLIGHT && queue.length) {
      const size = sent === 0 ? FIRST_BATCH : BATCH;
      const batch = [];
      const x = xOf(queue[0]);
      for (let i = 0; i < queue.length && batch.length < size;) {
        const n = queue[i];
        if (keep && !visible.has(n) && !keep.has(n)) {
          queue.splice(i, 1);
          queued.delete(n);
        } else if (xOf(n) === x) {
          batch.push(n);
          queue.splice(i, 1);
        } else {
          i++;
        }
      }
      if (!batch.length) continue;
      inFlight++;
      sent++;
      const mine = generation;
      fetchSeries(batch).then((list) => {
        if (mine !== generation) return;
        for (const s of list) {
          const m = metrics.get(s.name);
          if (!m) continue;
          m.gen = mine;
          show(m, s);
        }
        if (list.length && !performance.getEntriesByName('tora:first-chart').length) performance.mark('tora:first-chart');
      }).catch((err) => {
        if (err.name !== 'AbortError') chartsStatus.textContent = `Could not load the charts: ${err.message}`;
      }).finally(() => {
        inFlight--;
        if (mine === generation) for (const n of batch) queued.delete(n);
        pump();
        if (mine === generation && !inFlight && !queue.length) {
          performance.mark('tora:all-charts');
          const drawn = [...metrics.values()].filter((m) => m.gen === generation).length;
          chartsStatus.textContent = `${drawn} chart${drawn === 1 ? '' : 's'} in ${Math.round(performance.now() - started)} ms`;
        }
      });
    }
  }

  /** Fetches again every chart in view (a new axis or zoom); the others when they come near. */
  function loadAll() {
    generation++;
    queue.length = 0;
    queued.clear();
    sent = 0;
    started = performance.now();
    const names = lazy ? [...new Set([...visible, ...pinned()])].filter((n) => metrics.has(n)) : [...metrics.keys()];
    // The charts on the page's axis first; system metrics (on time) after them.
    names.sort((a, b) => (xOf(a) !== view.xmode) - (xOf(b) !== view.xmode));
    if (!names.length) return;
    chartsStatus.textContent = view.zoom ? 'Loading the zoomed range…' : 'Loading charts…';
    for (const n of names) want(n);
  }

  function setZoom(zoom, x = view.xmode) {
    view.zoom = zoom && [Math.floor(zoom[0]), Math.ceil(zoom[1])]; // whole steps or milliseconds
    view.zoomX = x;
    resetZoom.hidden = !zoom;
    saveView();
    loadAll();
  }

  // ---------- live updates ----------
  let pending = [];
  let frame = 0;
  let liveTimer = 0;
  const refetch = new Set();
  const onPoints = (list) => {
    pending.push(...list);
    if (!frame) frame = requestAnimationFrame(flush);
  };
  function flush() {
    frame = 0;
    const batch = pending;
    pending = [];
    const byMetric = new Map();
    let resultsChanged = false;
    for (const p of batch) {
      const v = toNumber(p.value);
      if (p.kind === 'result' || p.step === null || p.step === undefined) {
        results.set(p.name, p.value);
        resultsChanged = true;
        continue;
      }
      if (!byMetric.has(p.name)) byMetric.set(p.name, []);
      const x = { step: p.step, time: Date.parse(p.created_at), rel: Date.parse(p.created_at) - start }[xOf(p.name)];
      byMetric.get(p.name).push({ x, value: v });
    }
    if (resultsChanged) drawResults();
    for (const [name, pts] of byMetric) {
      let m = metrics.get(name);
      if (!m) {
        m = track({ name, count: 0, last: null, min: null, max: null, nonfinite: 0 });
        bySection.get(prefixOf(name)).names.sort(byName);
        renderAll();
        refetch.add(name);
      }
      const i = m.info;
      for (const p of pts) {
        i.count++;
        if (Number.isFinite(p.value)) {
          i.last = p.value;
          i.min = i.min === null ? p.value : Math.min(i.min, p.value);
          i.max = i.max === null ? p.value : Math.max(i.max, p.value);
        } else {
          i.nonfinite++;
        }
      }
      drawStats(m);
      if (m.chart) {
        // A step logged again (a resumed run) or a late one: the server's buckets fold it in.
        const shownTo = m.chart.cols.x.length ? m.chart.cols.x[m.chart.cols.x.length - 1] : -Infinity;
        if (pts.some((p) => p.x <= shownTo)) refetch.add(name);
        m.chart.append(pts);
        m.card.dataset.points = String(i.count);
        // Buckets of one pile up while a run streams: ask the server for fresh buckets now and then.
        if (!zoomFor(xOf(name)) && m.chart.cols.x.length > Math.max(2 * m.requested, 200)) refetch.add(name);
      }
    }
    for (const p of panelCharts) if (p.names.some((n) => byMetric.has(n))) refreshPanel(p);
    if (batch.length) {
      liveBadge.hidden = false;
      clearTimeout(liveTimer);
      liveTimer = setTimeout(() => { liveBadge.hidden = true; }, 60000);
    }
    if (refetch.size) {
      const names = [...refetch];
      refetch.clear();
      for (const batch of batchesOf(names, names.length)) {
        fetchSeries(batch).then((list) => {
          for (const s of list) if (metrics.get(s.name)) show(metrics.get(s.name), s);
        }).catch((err) => { if (err.name !== 'AbortError') toast(err.message, 'error'); });
      }
    }
  }
  const stop = follow(id, onPoints, (state) => {
    liveBadge.title = `stream ${state}`;
    ctx.root.dataset.stream = state;
  });
  ctx.onLeave(() => {
    stop();
    delete ctx.root.dataset.stream;
    cancelAnimationFrame(frame);
    clearTimeout(liveTimer);
    for (const m of [...metrics.values(), ...panelCharts]) if (m.chart) m.chart.destroy();
  });

  ctx.onLeave(() => { near.disconnect(); nearEnd.disconnect(); });
  const ordered = summary.metrics.slice().sort((a, b) => byName(a.name, b.name));
  for (const info of ordered) track(info);
  renderAll();
  drawPanels();
  if (!lazy) loadAll();
  else chartsStatus.textContent = 'Loading charts…';
}

function byName(a, b) {
  return a.localeCompare(b, undefined, { numeric: true });
}

function clampSmoothing(v) {
  return Number.isFinite(v) ? Math.min(0.99, Math.max(0, v)) : 0;
}

function recentlyUpdated(summary) {
  const times = [...summary.metrics, ...summary.results].map((x) => Date.parse(x.updated_at)).filter(Number.isFinite);
  return times.length > 0 && Date.now() - Math.max(...times) < 60000;
}

async function downloadCsv(exp) {
  const data = await api.blob(`/experiments/${exp.id}/logs/csv`);
  const url = URL.createObjectURL(data);
  const a = h('a', { href: url, download: `${exp.name.replace(/[^\w.-]+/g, '_')}.csv`, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/**
 * Description, tags and group; EDITORs and OWNERs get edit controls (the server checks again).
 * `onGroup(group)` hears of a changed group.
 */
function aboutPanel(exp, canEdit, onGroup) {
  const box = h('section', { class: 'panel', 'aria-labelledby': 'about-h' });
  let description = exp.description || '';
  let tags = (exp.tags || []).slice();
  let group = exp.group || null;

  const save = async (changes) => {
    const updated = await api.put(`/experiments/${exp.id}`, changes);
    description = updated.description || '';
    tags = updated.tags || [];
    if (updated.group !== group) {
      group = updated.group || null;
      onGroup(group);
    }
  };

  function draw(editing = false) {
    const head = h('div', { class: 'editable-head' }, h('h2', { id: 'about-h' }, 'Description'),
      canEdit && !editing ? h('button', { class: 'small', onclick: () => draw(true), 'aria-label': 'Edit the description' }, 'Edit') : null);
    let descriptionView;
    if (editing) {
      const area = h('textarea', { 'aria-label': 'Description', maxlength: '10000', placeholder: 'Markdown: # heading, **bold**, `code`, - lists, [links](https://…)' });
      area.value = description;
      const saveButton = h('button', { class: 'primary small', onclick: (e) => busy(e.currentTarget, async () => {
        await save({ description: area.value.trim() || null });
        toast('Description saved');
        draw(false);
      }) }, 'Save');
      descriptionView = h('div', { class: 'stack' }, area, h('div', { class: 'row' }, saveButton,
        h('button', { class: 'small', onclick: () => draw(false) }, 'Cancel')));
      setTimeout(() => area.focus());
    } else {
      descriptionView = description ? markdown(description) : h('p', { class: 'muted' }, 'No description.');
    }
    const tagInput = h('input', { type: 'text', placeholder: 'new tag', 'aria-label': 'New tag', maxlength: '100', class: 'small' });
    const addTag = h('form', { class: 'row small' }, tagInput, h('button', { type: 'submit', class: 'small' }, 'Add tag'));
    addTag.addEventListener('submit', (e) => {
      e.preventDefault();
      const t = tagInput.value.trim();
      if (!t || tags.includes(t)) return;
      busy(addTag.querySelector('button'), async () => { await save({ tags: [...tags, t] }); draw(false); box.querySelector('input[aria-label="New tag"]').focus(); });
    });
    const tagList = tags.map((t) => h('span', { class: 'tag' }, t, canEdit ? h('button', {
      'aria-label': `Remove tag ${t}`, title: 'Remove tag',
      onclick: (e) => busy(e.currentTarget, async () => { await save({ tags: tags.filter((x) => x !== t) }); draw(false); }),
    }, '×') : null));
    const groupInput = h('input', { type: 'text', placeholder: 'group', 'aria-label': 'Group', maxlength: '128', class: 'small', value: group || '' });
    const setGroup = h('form', { class: 'row small' }, groupInput, h('button', { type: 'submit', class: 'small' }, 'Set group'));
    setGroup.addEventListener('submit', (e) => {
      e.preventDefault();
      const g = groupInput.value.trim() || null;
      if (g === group) return;
      busy(setGroup.querySelector('button'), async () => { await save({ group: g }); toast(g ? `In the group ${g}` : 'In no group'); draw(false); });
    });
    const groupView = group ? h('span', { class: 'tag group-chip' }, group, canEdit ? h('button', {
      'aria-label': `Take the run out of the group ${group}`, title: 'Remove from the group',
      onclick: (e) => busy(e.currentTarget, async () => { await save({ group: null }); draw(false); }),
    }, '×') : null) : h('span', { class: 'muted' }, 'In no group.');
    fill(box, head, descriptionView,
      h('h2', { class: 'subhead' }, 'Tags'),
      h('div', {}, tagList.length ? tagList : h('span', { class: 'muted' }, 'No tags.')),
      canEdit ? h('div', { class: 'subhead' }, addTag) : null,
      h('h2', { class: 'subhead' }, 'Group'),
      h('div', {}, groupView),
      canEdit ? h('div', { class: 'subhead' }, setGroup) : null);
  }
  draw();
  return box;
}
