// Charts on uPlot: one metric with its min/max band, NaN/Inf markers and EMA smoothing, or the
// same metric of several runs overlaid. Colours come from the CSS variables of the theme.

import uPlot from '/vendor/uplot/uPlot.esm.js';
import { num, tick } from './format.js';

const LIGHT = ['#2463d8', '#d9480f', '#2b8a3e', '#ae3ec9', '#e8590c', '#1098ad', '#c2255c', '#5f3dc4',
  '#74b816', '#495057', '#f59f00', '#0b7285', '#a61e4d', '#364fc7', '#087f5b', '#862e9c', '#d6336c',
  '#5c940d', '#1864ab', '#e67700'];
const DARK = ['#6ea6ff', '#ff8a50', '#51cf66', '#da77f2', '#ffa94d', '#3bc9db', '#f783ac', '#9775fa',
  '#a9e34b', '#ced4da', '#ffd43b', '#66d9e8', '#faa2c1', '#91a7ff', '#63e6be', '#e599f7', '#ff8787',
  '#c0eb75', '#74c0fc', '#ffc078'];

/** Steps are whole numbers: ticks at 1, 2, 5, 10, 20, 50, ... */
const STEP_INCREMENTS = Array.from({ length: 12 }, (_, k) => [1, 2, 5].map((m) => m * 10 ** k)).flat();

const dark = () => window.matchMedia('(prefers-color-scheme: dark)').matches;

/** The i-th run colour of the current theme. */
export function runColor(i) {
  const palette = dark() ? DARK : LIGHT;
  return palette[i % palette.length];
}

function themeColors() {
  const css = getComputedStyle(document.documentElement);
  const v = (name) => css.getPropertyValue(name).trim();
  return {
    axis: v('--axis'), grid: v('--grid'), band: v('--band'), line: v('--line'), raw: v('--raw'),
    nonfinite: v('--nonfinite'),
  };
}

/**
 * Exponential moving average as TensorBoard draws it: debiased, so the start is not pulled to 0;
 * null (no finite value) is kept as a gap and does not reset the average.
 */
export function ema(values, weight) {
  if (!weight) return values;
  const out = new Array(values.length);
  let last = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined || !Number.isFinite(v)) {
      out[i] = null;
      continue;
    }
    last = last * weight + (1 - weight) * v;
    n++;
    out[i] = last / (1 - weight ** n);
  }
  return out;
}

/** On a log axis only positive values can be drawn. */
function positive(values) {
  return values.map((v) => (v !== null && v > 0 ? v : null));
}

function axes(c, time) {
  const common = {
    stroke: c.axis,
    grid: { stroke: c.grid, width: 1 },
    ticks: { stroke: c.grid, width: 1, size: 4 },
    font: '11px system-ui, sans-serif',
  };
  return [
    time ? { ...common, space: 60, size: 40 } : { ...common, space: 60, size: 28, incrs: STEP_INCREMENTS, values: (u, vals) => vals.map(tick) },
    { ...common, size: 52, values: (u, vals) => vals.map(tick) },
  ];
}

/**
 * A uPlot instance in `el` that follows the width of `el`, zooms through the caller and reports
 * the hovered index. opts: {height, time, log, series, bands, data, onZoom(min, max), onReset(),
 * onCursor(idx), draw(u), syncKey}.
 */
function makePlot(el, opts) {
  const width = Math.max(200, el.clientWidth);
  const u = new uPlot({
    width,
    height: opts.height,
    ms: 1,
    pxAlign: 0,
    legend: { show: false },
    scales: {
      x: { time: Boolean(opts.time) },
      y: opts.log ? { distr: 3 } : { range: (u, min, max) => padRange(min, max) },
    },
    series: [{}, ...opts.series],
    bands: opts.bands || [],
    axes: axes(themeColors(), opts.time),
    cursor: {
      drag: { x: true, y: false, setScale: false },
      sync: opts.syncKey ? { key: opts.syncKey } : undefined,
      points: { size: 5 },
    },
    hooks: {
      setSelect: [(u) => {
        if (u.select.width < 3) return;
        const min = u.posToVal(u.select.left, 'x');
        const max = u.posToVal(u.select.left + u.select.width, 'x');
        u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        if (opts.onZoom) opts.onZoom(min, max);
      }],
      setCursor: [(u) => { if (opts.onCursor) opts.onCursor(u.cursor.idx); }],
      draw: opts.draw ? [opts.draw] : [],
    },
  }, opts.data, el);
  u.over.addEventListener('dblclick', () => { if (opts.onReset) opts.onReset(); });
  keyboardZoom(el, u, opts);
  let lastWidth = width;
  const resize = new ResizeObserver(() => {
    const w = Math.max(200, el.clientWidth);
    if (w !== lastWidth) {
      lastWidth = w;
      u.setSize({ width: w, height: opts.height });
    }
  });
  resize.observe(el);
  u.stopResize = () => resize.disconnect();
  return u;
}

/** Keyboard users zoom too: + and - around the middle, arrows pan, 0 or Escape resets. */
function keyboardZoom(el, u, opts) {
  el.tabIndex = 0;
  el.setAttribute('aria-keyshortcuts', '+ - ArrowLeft ArrowRight 0');
  el.title = 'Drag to zoom, double-click to reset; keys: + - ← → 0';
  el.onkeydown = (e) => { // a property, so a rebuilt chart replaces the handler
    const { min, max } = u.scales.x;
    if (min === null || max === null || !opts.onZoom) return;
    const span = max - min;
    const moves = {
      '+': [min + span / 4, max - span / 4], '=': [min + span / 4, max - span / 4],
      '-': [min - span / 2, max + span / 2],
      ArrowLeft: [min - span / 4, max - span / 4], ArrowRight: [min + span / 4, max + span / 4],
    };
    if (e.key === '0' || e.key === 'Escape') {
      if (opts.onReset) opts.onReset();
    } else if (moves[e.key]) {
      opts.onZoom(...moves[e.key]);
    } else {
      return;
    }
    e.preventDefault();
  };
}

function padRange(min, max) {
  if (min === null || max === null) return [0, 1];
  if (min === max) {
    const d = Math.abs(min) * 0.1 || 1;
    return [min - d, max + d];
  }
  const pad = (max - min) * 0.05;
  return [min - pad, max + pad];
}

function chartHeight() {
  return window.innerWidth < 640 ? 170 : 190;
}

/** A series from the server as mutable columns (x in steps or epoch ms, as asked). */
export function toColumns(series) {
  return {
    x: series.x.slice(), min: series.min.slice(), max: series.max.slice(), last: series.last.slice(),
    count: (series.count || series.x.map(() => 1)).slice(),
    nonfinite: (series.nonfinite || series.x.map(() => 0)).slice(),
  };
}

/**
 * One metric of one run. `cols` are the columns of toColumns(). Options: {time, log, smoothing,
 * zoom: [min, max] | null, onZoom, onReset, onCursor(text)}.
 */
export class MetricChart {
  constructor(el, cols, options) {
    this.el = el;
    this.cols = cols;
    this.options = options;
    this.build();
  }

  data() {
    const { cols, options } = this;
    const f = options.log ? positive : (v) => v;
    const smooth = ema(cols.last, options.smoothing);
    return [cols.x, f(cols.min), f(cols.max), f(cols.last), f(options.smoothing ? smooth : cols.last.map(() => null))];
  }

  build() {
    const c = themeColors();
    const { options } = this;
    const smoothing = Boolean(options.smoothing);
    this.u = makePlot(this.el, {
      height: chartHeight(),
      time: options.time,
      log: options.log,
      syncKey: options.syncKey,
      series: [
        { label: 'min', stroke: c.band, width: 1, points: { show: false }, spanGaps: true },
        { label: 'max', stroke: c.band, width: 1, points: { show: false }, spanGaps: true },
        { label: 'value', stroke: smoothing ? c.raw : c.line, width: smoothing ? 1 : 1.5, points: { show: false }, spanGaps: true },
        { label: 'smoothed', stroke: c.line, width: 1.75, points: { show: false }, spanGaps: true, show: smoothing },
      ],
      bands: [{ series: [2, 1], fill: c.band }],
      data: this.data(),
      onZoom: options.onZoom,
      onReset: options.onReset,
      onCursor: (idx) => this.cursor(idx),
      draw: (u) => this.markNonFinite(u, c.nonfinite),
    });
    if (options.zoom) this.u.setScale('x', { min: options.zoom[0], max: options.zoom[1] });
  }

  /** Red ticks along the bottom where a bucket held NaN or ±Inf. */
  markNonFinite(u, color) {
    const { x, nonfinite } = this.cols;
    const ctx = u.ctx;
    const bottom = u.bbox.top + u.bbox.height;
    const size = 5 * devicePixelRatio;
    ctx.save();
    ctx.fillStyle = color;
    for (let i = 0; i < x.length; i++) {
      if (!nonfinite[i]) continue;
      const px = u.valToPos(x[i], 'x', true);
      if (px < u.bbox.left - 1 || px > u.bbox.left + u.bbox.width + 1) continue;
      ctx.beginPath();
      ctx.moveTo(px, bottom - size * 1.6);
      ctx.lineTo(px - size, bottom);
      ctx.lineTo(px + size, bottom);
      ctx.closePath();
      ctx.fill();
    }
    ctx.restore();
  }

  cursor(idx) {
    if (!this.options.onCursor) return;
    if (idx === null || idx === undefined) { this.options.onCursor(null); return; }
    const { x, min, max, last, count, nonfinite } = this.cols;
    const at = this.options.time ? new Date(x[idx]).toLocaleString() : `step ${x[idx]}`;
    let text = `${at}: ${num(last[idx])}`;
    if (count[idx] > 1) text += ` (${count[idx]} points, ${num(min[idx])} … ${num(max[idx])})`;
    if (nonfinite[idx]) text += ` · ${nonfinite[idx]} NaN/Inf`;
    this.options.onCursor(text);
  }

  /** New columns (a finer zoom or a fresh fetch); zoom [min, max] keeps the view there. */
  setColumns(cols, zoom) {
    this.cols = cols;
    this.options.zoom = zoom || null;
    this.u.setData(this.data(), !zoom);
    if (zoom) this.u.setScale('x', { min: zoom[0], max: zoom[1] });
  }

  /** Live points [{x, value}] (value may be NaN/±Inf) appended as buckets of one. */
  append(points) {
    const cols = this.cols;
    const lastX = cols.x.length ? cols.x[cols.x.length - 1] : -Infinity;
    let added = 0;
    for (const p of points) {
      if (p.x < lastX) continue; // older than what we show: the next fetch brings it
      const finite = Number.isFinite(p.value);
      cols.x.push(p.x);
      cols.min.push(finite ? p.value : null);
      cols.max.push(finite ? p.value : null);
      cols.last.push(finite ? p.value : null);
      cols.count.push(1);
      cols.nonfinite.push(finite ? 0 : 1);
      added++;
    }
    if (added) {
      const zoom = this.options.zoom;
      this.u.setData(this.data(), !zoom);
      if (zoom) this.u.setScale('x', { min: zoom[0], max: zoom[1] });
    }
    return added;
  }

  set(changes) {
    const rebuild = 'log' in changes && changes.log !== this.options.log
      || 'smoothing' in changes && Boolean(changes.smoothing) !== Boolean(this.options.smoothing);
    Object.assign(this.options, changes);
    if (rebuild) {
      this.destroy();
      this.build();
    } else {
      this.u.setData(this.data(), !this.options.zoom);
      if (this.options.zoom) this.u.setScale('x', { min: this.options.zoom[0], max: this.options.zoom[1] });
    }
  }

  destroy() {
    if (!this.u) return;
    this.u.stopResize();
    this.u.destroy();
    this.u = null;
  }
}

/**
 * One metric of several runs. runs: [{label, color, cols}] with cols as in toColumns(); each run
 * keeps its own x values, joined onto one x axis. Options as MetricChart plus none of the band.
 */
export class OverlayChart {
  constructor(el, runs, options) {
    this.el = el;
    this.runs = runs;
    this.options = options;
    this.build();
  }

  data() {
    const { runs, options } = this;
    const f = options.log ? positive : (v) => v;
    const tables = runs.map((r) => [r.cols.x, f(ema(r.cols.last, options.smoothing))]);
    return uPlot.join(tables);
  }

  build() {
    const { options } = this;
    this.joined = this.data();
    this.u = makePlot(this.el, {
      height: chartHeight(),
      time: options.time,
      log: options.log,
      series: this.runs.map((r) => ({ label: r.label, stroke: r.color, width: 1.5, points: { show: false }, spanGaps: true })),
      data: this.joined,
      onZoom: options.onZoom,
      onReset: options.onReset,
      onCursor: (idx) => this.cursor(idx),
    });
    if (options.zoom) this.u.setScale('x', { min: options.zoom[0], max: options.zoom[1] });
  }

  cursor(idx) {
    if (!this.options.onCursor) return;
    if (idx === null || idx === undefined) { this.options.onCursor(null); return; }
    const x = this.joined[0][idx];
    const at = this.options.time ? new Date(x).toLocaleString() : `step ${x}`;
    const values = this.runs.map((r, i) => [r.label, this.joined[i + 1][idx]]).filter(([, v]) => v !== null && v !== undefined);
    this.options.onCursor(values.length ? `${at}: ${values.map(([l, v]) => `${l} ${num(v)}`).join(' · ')}` : at);
  }

  setRuns(runs, zoom) {
    this.runs = runs;
    this.options.zoom = zoom || null;
    this.joined = this.data();
    this.u.setData(this.joined, !zoom);
    if (zoom) this.u.setScale('x', { min: zoom[0], max: zoom[1] });
  }

  set(changes) {
    Object.assign(this.options, changes);
    this.destroy();
    this.build();
  }

  destroy() {
    if (!this.u) return;
    this.u.stopResize();
    this.u.destroy();
    this.u = null;
  }
}
