// Charts on uPlot: one metric with its min/max band, NaN/Inf markers and EMA smoothing, or
// several lines overlaid (one metric of several runs, or several metrics of one run) with a
// floating tooltip. The x axis is the step, the time since the run started (ms) or the wall
// time (epoch ms). Colours come from the CSS variables of the theme.

import uPlot from '../vendor/uplot/uPlot.esm.js';
import { num, tick } from './format.js';
import { h, fill } from './dom.js';

const LIGHT = ['#2463d8', '#d9480f', '#2b8a3e', '#ae3ec9', '#e8590c', '#1098ad', '#c2255c', '#5f3dc4',
  '#74b816', '#495057', '#f59f00', '#0b7285', '#a61e4d', '#364fc7', '#087f5b', '#862e9c', '#d6336c',
  '#5c940d', '#1864ab', '#e67700'];
const DARK = ['#6ea6ff', '#ff8a50', '#51cf66', '#da77f2', '#ffa94d', '#3bc9db', '#f783ac', '#9775fa',
  '#a9e34b', '#ced4da', '#ffd43b', '#66d9e8', '#faa2c1', '#91a7ff', '#63e6be', '#e599f7', '#ff8787',
  '#c0eb75', '#74c0fc', '#ffc078'];

/** Steps are whole numbers: ticks at 1, 2, 5, 10, 20, 50, ... */
const STEP_INCREMENTS = Array.from({ length: 12 }, (_, k) => [1, 2, 5].map((m) => m * 10 ** k)).flat();
const S = 1000;
const H = 3600 * S;
/** Relative time in ms: ticks on round seconds, minutes, hours and days. */
const ELAPSED_INCREMENTS = [1, 2, 5, 10, 20, 50, 100, 200, 500, S, 2 * S, 5 * S, 10 * S, 15 * S, 30 * S,
  60 * S, 120 * S, 300 * S, 600 * S, 900 * S, 1800 * S, H, 2 * H, 3 * H, 6 * H, 12 * H, 24 * H, 48 * H,
  168 * H, 336 * H, 720 * H, 2160 * H, 8760 * H];
/** Dash patterns that tell several metrics of one run apart on a compare panel. */
const DASHES = [undefined, [6, 3], [2, 3], [10, 3, 2, 3]];
export const dash = (i) => DASHES[i % DASHES.length];

/** A time since the start: 850ms, 42s, 5m 30s, 2h 5m, 3d 4h. */
export function elapsed(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  if (ms === 0) return '0';
  const sign = ms < 0 ? '-' : '';
  const a = Math.abs(ms);
  if (a < S) return `${sign}${Math.round(a)}ms`;
  if (a < 60 * S) return `${sign}${Number((a / S).toPrecision(3))}s`;
  const t = Math.round(a / S);
  const d = Math.floor(t / 86400);
  const hh = Math.floor((t % 86400) / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  if (d) return `${sign}${d}d${hh ? ` ${hh}h` : ''}`;
  if (hh) return `${sign}${hh}h${m ? ` ${m}m` : ''}`;
  return `${sign}${m}m${sec ? ` ${sec}s` : ''}`;
}

/** Where a cursor is, in words: "step 120", "+5m 30s", or the local date and time. */
export function xLabel(x, xmode) {
  if (xmode === 'time') return new Date(x).toLocaleString();
  if (xmode === 'rel') return `+${elapsed(x)}`;
  return `step ${x}`;
}

/** A colour of the palette (#rrggbb) made faint: raw lines under smoothed ones. */
function faint(color, alpha = 0.28) {
  const n = parseInt(color.slice(1), 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

/** Above this many lines a chart shows no dot per line under the cursor... */
const MAX_CURSOR_DOTS = 20;
/** ...and above this many its lines are 1 pixel wide. */
const THIN_ABOVE = 8;

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

/** Tick labels; a null is a tick uPlot leaves unlabelled (the minor ticks of a log axis). */
const labelled = (format) => (u, vals) => vals.map((v) => (v === null || v === undefined ? '' : format(v)));

function axes(c, xmode) {
  const common = {
    stroke: c.axis,
    grid: { stroke: c.grid, width: 1 },
    ticks: { stroke: c.grid, width: 1, size: 4 },
    font: '11px system-ui, sans-serif',
  };
  const x = {
    time: { ...common, space: 60, size: 40 },
    rel: { ...common, space: 70, size: 28, incrs: ELAPSED_INCREMENTS, values: labelled(elapsed) },
    step: { ...common, space: 60, size: 28, incrs: STEP_INCREMENTS, values: labelled(tick) },
  };
  return [x[xmode] || x.step, { ...common, size: 52, values: labelled(tick) }];
}

/**
 * A uPlot instance in `el` that follows the width of `el`, zooms through the caller and reports
 * the hovered index. opts: {height, xmode, log, series, bands, data, onZoom(min, max), onReset(),
 * onCursor(idx, u), draw(u), syncKey}.
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
      x: { time: opts.xmode === 'time' },
      y: opts.log ? { distr: 3 } : { range: (u, min, max) => padRange(min, max) },
    },
    series: [{}, ...opts.series],
    bands: opts.bands || [],
    axes: axes(themeColors(), opts.xmode),
    cursor: {
      drag: { x: true, y: false, setScale: false },
      sync: opts.syncKey ? { key: opts.syncKey } : undefined,
      points: opts.cursorDots === false ? { show: false } : { size: 5 },
    },
    hooks: {
      setSelect: [(u) => {
        if (u.select.width < 3) return;
        const min = u.posToVal(u.select.left, 'x');
        const max = u.posToVal(u.select.left + u.select.width, 'x');
        u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        if (opts.onZoom) opts.onZoom(min, max);
      }],
      setCursor: [(u) => { if (opts.onCursor) opts.onCursor(u.cursor.idx, u); }],
      draw: opts.draw ? [opts.draw] : [],
    },
  }, opts.data, el);
  u.over.addEventListener('dblclick', () => { if (opts.onReset) opts.onReset(); });
  if (opts.onLeave) u.over.addEventListener('mouseleave', opts.onLeave);
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

/**
 * A series from the server as mutable columns (x in steps or epoch ms, as asked); `offset` is
 * subtracted from x (a run's start, for the time since it started). `copy` false takes the
 * series' own arrays (an answer nothing else reads: compare's hundreds of lines).
 */
export function toColumns(series, offset = 0, copy = true) {
  const own = copy ? (a) => a.slice() : (a) => a;
  return {
    x: offset ? series.x.map((x) => x - offset) : own(series.x), min: own(series.min), max: own(series.max), last: own(series.last),
    count: series.count ? own(series.count) : series.x.map(() => 1),
    nonfinite: series.nonfinite ? own(series.nonfinite) : series.x.map(() => 0),
  };
}

/**
 * Red ticks along the bottom of `u` where a bucket held NaN or ±Inf: `x` and `nonfinite` columns,
 * in `color`, lifted by `row` marker heights (several runs on one chart).
 */
function markNonFinite(u, x, nonfinite, color, row = 0) {
  const ctx = u.ctx;
  const size = 4 * devicePixelRatio;
  const bottom = u.bbox.top + u.bbox.height - row * size * 0.6;
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

/**
 * One metric of one run. `cols` are the columns of toColumns(). Options: {xmode ('step' | 'rel' |
 * 'time'), log, smoothing, zoom: [min, max] | null, onZoom, onReset, onCursor(text)}.
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
    // No spanGaps: a bucket of only NaN/Inf is a gap in the line (and gets a marker).
    this.u = makePlot(this.el, {
      height: chartHeight(),
      xmode: options.xmode,
      log: options.log,
      syncKey: options.syncKey,
      series: [
        { label: 'min', stroke: c.band, width: 1, points: { show: false } },
        { label: 'max', stroke: c.band, width: 1, points: { show: false } },
        { label: 'value', stroke: smoothing ? c.raw : c.line, width: smoothing ? 1 : 1.5, points: { show: false } },
        { label: 'smoothed', stroke: c.line, width: 1.75, points: { show: false }, show: smoothing },
      ],
      bands: [{ series: [2, 1], fill: c.band }],
      data: this.data(),
      onZoom: options.onZoom,
      onReset: options.onReset,
      onCursor: (idx) => this.cursor(idx),
      draw: (u) => markNonFinite(u, this.cols.x, this.cols.nonfinite, c.nonfinite),
    });
    if (options.zoom) this.u.setScale('x', { min: options.zoom[0], max: options.zoom[1] });
  }

  cursor(idx) {
    if (!this.options.onCursor) return;
    if (idx === null || idx === undefined) { this.options.onCursor(null); return; }
    const { x, min, max, last, count, nonfinite } = this.cols;
    let text = `${xLabel(x[idx], this.options.xmode)}: ${num(last[idx])}`;
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

  /** Changes options; a new axis kind, scale or smoothing rebuilds the plot. */
  set(changes) {
    const rebuild = ['xmode', 'log'].some((k) => k in changes && changes[k] !== this.options[k])
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

/** The index of the bucket that holds x in ascending `xs` (the first whose x >= x), or -1. */
function bucketAt(xs, x) {
  if (!xs.length || x < xs[0] || x > xs[xs.length - 1]) return -1;
  let lo = 0;
  let hi = xs.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const TOOLTIP_ROWS = 15;

/** A box near the cursor listing a value per line, largest first. */
class Tooltip {
  constructor(parent) {
    this.parent = parent;
    this.box = h('div', { class: 'chart-tip', hidden: true, 'aria-hidden': 'true' });
    parent.append(this.box);
  }

  show(u, title, rows) {
    const shown = rows.slice(0, TOOLTIP_ROWS);
    fill(this.box, h('div', { class: 'tip-title' }, title),
      shown.map((r) => {
        const sw = h('span', { class: 'swatch' });
        sw.style.background = r.color;
        return h('div', { class: r.text === 'NaN/Inf' ? 'tip-row nonfinite' : 'tip-row' }, sw, h('span', { class: 'tip-label' }, r.label), h('span', { class: 'tip-value' }, r.text));
      }),
      rows.length > shown.length ? h('div', { class: 'tip-more' }, `and ${rows.length - shown.length} more`) : null);
    this.box.hidden = false;
    const over = u.over.getBoundingClientRect();
    const host = this.parent.getBoundingClientRect();
    const x = over.left - host.left + u.cursor.left;
    const y = over.top - host.top + u.cursor.top;
    const w = this.box.offsetWidth;
    const hgt = this.box.offsetHeight;
    let left = x + 14;
    if (left + w > host.width) left = Math.max(0, x - 14 - w);
    let top = y + 14;
    if (top + hgt > host.height + 60) top = Math.max(-hgt / 2, y - 14 - hgt);
    this.box.style.left = `${left}px`;
    this.box.style.top = `${top}px`;
  }

  hide() { this.box.hidden = true; }

  remove() { this.box.remove(); }
}

/**
 * Several lines on one chart: one metric of several runs (compare) or several metrics of one run
 * (a panel). lines: [{label, color, dash?, cols}] with cols as in toColumns(); each line keeps its
 * own x values, joined onto one x axis (a line may be empty, e.g. a run with no point in a zoomed
 * range). No line bridges a bucket of only NaN/Inf: it is a gap with a marker in the line's
 * colour. Under smoothing the raw lines stay, faint. The hover lists every line's value, largest
 * first, in a tooltip by the cursor and as text through onCursor. Options as MetricChart.
 */
export class OverlayChart {
  constructor(el, lines, options) {
    this.el = el;
    this.lines = lines;
    this.options = options;
    this.tooltip = options.tooltip === false ? null : new Tooltip(el);
    this.build();
  }

  /** The identity of the lines: another set of lines needs a new plot, not new data. */
  static key(lines) {
    return lines.map((l) => `${l.label}\u0000${l.color}\u0000${l.dash || ''}\u0000${l.band ? 'band' : ''}`).join('\u0001');
  }

  data() {
    const { lines, options } = this;
    const f = options.log ? positive : (v) => v;
    this.smoothed = lines.map((l) => (options.smoothing ? ema(l.cols.last, options.smoothing) : l.cols.last));
    const tables = lines.map((l, i) => {
      const t = options.smoothing ? [l.cols.x, f(l.cols.last), f(this.smoothed[i])] : [l.cols.x, f(l.cols.last)];
      if (l.band) t.push(f(l.cols.min), f(l.cols.max));
      return t;
    });
    return tables.length ? uPlot.join(tables) : [[]];
  }

  build() {
    const { options } = this;
    const c = themeColors();
    this.joined = this.data();
    const series = [];
    const bands = [];
    // Many lines: no hover dot per line (a DOM element each, per chart); the tooltip lists them.
    const dots = this.lines.length <= MAX_CURSOR_DOTS;
    // ...and 1-pixel lines: the canvas draws those as hairlines, 4-7x faster than 1.5 pixels
    // (20 charts of 100 lines: ~0.2 s instead of ~1.1 s in headless Chromium, software raster).
    const width = this.lines.length > THIN_ABOVE ? 1 : 1.5;
    for (const l of this.lines) {
      if (options.smoothing) series.push({ label: `${l.label} (raw)`, stroke: faint(l.color), width: 1, dash: l.dash, points: { show: false } });
      series.push({ label: l.label, stroke: l.color, width, dash: l.dash, points: { show: false } });
      if (l.band) {
        // A group's spread: the area between two invisible series, in the group's colour.
        const k = series.length; // uPlot numbers series from 1 (0 is x): k + 1 is the low edge
        series.push({ label: `${l.label} (low)`, stroke: 'transparent', width: 0, points: { show: false } },
          { label: `${l.label} (high)`, stroke: 'transparent', width: 0, points: { show: false } });
        bands.push({ series: [k + 2, k + 1], fill: faint(l.color, 0.16) });
      }
    }
    this.key = OverlayChart.key(this.lines);
    this.u = makePlot(this.el, {
      height: chartHeight(),
      xmode: options.xmode,
      log: options.log,
      series,
      bands,
      cursorDots: dots,
      data: this.joined,
      onZoom: options.onZoom,
      onReset: options.onReset,
      onCursor: (idx, u) => this.cursor(idx, u),
      onLeave: () => { if (this.tooltip) this.tooltip.hide(); },
      draw: (u) => this.lines.forEach((l, i) => markNonFinite(u, l.cols.x, l.cols.nonfinite, l.color || c.nonfinite, i % 3)),
    });
    if (options.zoom) this.u.setScale('x', { min: options.zoom[0], max: options.zoom[1] });
  }

  /** Every line's value where the cursor is, largest first; a line at NaN/Inf there last. */
  rows(x) {
    const rows = [];
    this.lines.forEach((l, i) => {
      const j = bucketAt(l.cols.x, x);
      if (j < 0) return;
      const v = this.smoothed[i][j];
      const spread = l.band && l.cols.min[j] !== null && l.cols.max[j] !== null ? ` (${num(l.cols.min[j])} … ${num(l.cols.max[j])})` : '';
      if (v !== null && v !== undefined) rows.push({ label: l.label, color: l.color, value: v, text: num(v) + spread });
      else if (l.cols.nonfinite[j]) rows.push({ label: l.label, color: l.color, value: -Infinity, text: 'NaN/Inf' });
    });
    return rows.sort((a, b) => b.value - a.value);
  }

  cursor(idx, u) {
    if (idx === null || idx === undefined || !this.joined[0].length) {
      if (this.tooltip) this.tooltip.hide();
      if (this.options.onCursor) this.options.onCursor(null);
      return;
    }
    const x = this.joined[0][idx];
    const at = xLabel(x, this.options.xmode);
    const rows = this.rows(x);
    if (this.tooltip && u && u.cursor.left >= 0) this.tooltip.show(u, at, rows);
    if (this.options.onCursor) this.options.onCursor(rows.length ? `${at}: ${rows.map((r) => `${r.label} ${r.text}`).join(' · ')}` : at);
  }

  /** New lines (a zoom, a refetch); the same lines keep the plot, others rebuild it. */
  setLines(lines, zoom) {
    this.lines = lines;
    this.options.zoom = zoom || null;
    if (OverlayChart.key(lines) !== this.key) {
      this.destroy();
      this.build();
      return;
    }
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
    if (this.tooltip) this.tooltip.hide();
    this.u.stopResize();
    this.u.destroy();
    this.u = null;
  }
}
