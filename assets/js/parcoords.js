// A parallel-coordinates plot on a canvas: one vertical axis per hyperparameter and a last axis
// for the chosen result; one line per run, coloured by that result (low = blue, high = red).

import { tick } from './format.js';

const num = (v) => tick(Number(v.toPrecision(3)));

/**
 * draw(canvas, runs, axes, target): runs [{label, values: {key: v}, result: number|null}],
 * axes: hyperparameter keys. Numeric axes are linear; any other values are evenly spaced
 * categories. Returns nothing; call again to redraw (resize, theme).
 */
export function draw(canvas, runs, keys, targetName) {
  const css = getComputedStyle(document.documentElement);
  const fg = css.getPropertyValue('--fg').trim();
  const muted = css.getPropertyValue('--muted').trim();
  const grid = css.getPropertyValue('--border').trim();
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  const ctx = canvas.getContext('2d');
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, width, height);

  const axes = keys.map((key) => axis(key, runs.map((r) => r.values[key])));
  axes.push(axis(targetName, runs.map((r) => r.result), true));
  const top = 34;
  const bottom = height - 22;
  const left = 40;
  const right = width - 48;
  const step = axes.length > 1 ? (right - left) / (axes.length - 1) : 0;
  const xAt = (i) => left + i * step;

  const results = runs.map((r) => r.result).filter((v) => v !== null && Number.isFinite(v));
  const lo = Math.min(...results);
  const hi = Math.max(...results);
  const color = (v) => {
    if (v === null || !Number.isFinite(v)) return muted;
    const t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
    return `hsl(${Math.round(220 - 220 * t)}, 75%, 52%)`;
  };

  ctx.lineWidth = 1.5;
  ctx.globalAlpha = runs.length > 50 ? 0.45 : 0.8;
  for (const r of runs) {
    ctx.strokeStyle = color(r.result);
    ctx.beginPath();
    let drawing = false;
    axes.forEach((a, i) => {
      const v = i === axes.length - 1 ? r.result : r.values[a.key];
      const y = a.pos(v);
      if (y === null) { drawing = false; return; }
      const py = bottom - y * (bottom - top);
      if (drawing) ctx.lineTo(xAt(i), py);
      else ctx.moveTo(xAt(i), py);
      drawing = true;
    });
    ctx.stroke();
  }
  ctx.globalAlpha = 1;

  ctx.font = '11px system-ui, sans-serif';
  axes.forEach((a, i) => {
    const x = xAt(i);
    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x, top);
    ctx.lineTo(x, bottom);
    ctx.stroke();
    ctx.fillStyle = fg;
    ctx.textAlign = i === 0 ? 'left' : i === axes.length - 1 ? 'right' : 'center';
    ctx.font = `${a.target ? '600 ' : ''}11px system-ui, sans-serif`;
    const label = fit(ctx, a.key, Math.max(24, step - 8));
    ctx.fillText(label, i === 0 ? x - 8 : i === axes.length - 1 ? x + 8 : x, top - 18);
    ctx.font = '10px system-ui, sans-serif';
    ctx.fillStyle = muted;
    for (const [t, text] of a.ticks) {
      const y = bottom - t * (bottom - top);
      ctx.textAlign = i === axes.length - 1 ? 'right' : 'left';
      ctx.fillText(text, i === axes.length - 1 ? x - 4 : x + 4, y + 3);
    }
  });
}

/** An axis over values: pos(v) in 0..1 (null when missing) and a few labelled ticks. */
function axis(key, values, target = false) {
  const present = values.filter((v) => v !== null && v !== undefined && !(typeof v === 'number' && !Number.isFinite(v)));
  const numeric = present.length > 0 && present.every((v) => typeof v === 'number');
  if (numeric) {
    const lo = Math.min(...present);
    const hi = Math.max(...present);
    const logScale = lo > 0 && hi / lo >= 100; // learning rates and the like
    const f = logScale ? Math.log10 : (v) => v;
    const a = f(lo);
    const b = f(hi);
    const pos = (v) => (typeof v !== 'number' || !Number.isFinite(v) ? null : b > a ? (f(v) - a) / (b - a) : 0.5);
    const ticks = lo === hi ? [[0.5, num(lo)]] : [[0, num(lo)], [0.5, num(logScale ? 10 ** ((a + b) / 2) : (lo + hi) / 2)], [1, num(hi)]];
    return { key, pos, ticks, target };
  }
  const cats = [...new Set(present.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))))].sort();
  const at = (v) => (cats.length > 1 ? cats.indexOf(v) / (cats.length - 1) : 0.5);
  const pos = (v) => (v === null || v === undefined ? null : at(typeof v === 'string' ? v : JSON.stringify(v)));
  return { key, pos, ticks: cats.slice(0, 12).map((c) => [at(c), c.length > 14 ? `${c.slice(0, 13)}…` : c]), target };
}

/** `text` shortened with an ellipsis until it is at most `width` pixels wide. */
function fit(ctx, text, width) {
  if (ctx.measureText(text).width <= width) return text;
  let n = text.length;
  while (n > 1 && ctx.measureText(`${text.slice(0, n)}…`).width > width) n--;
  return `${text.slice(0, n)}…`;
}
