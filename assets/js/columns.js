// The run table's columns: hp.KEY (a hyperparameter), result.NAME and metric.NAME (its last
// value), which ones exist among the runs shown, and which to show when the URL names none:
// the hyperparameters that vary across those runs (a grid search's axes), the results, and the
// main metrics (loss- and accuracy-like names first, then the most common; never the system
// metrics, sys/..., which every run of the SDK has and which tell runs apart by nothing).

import { num, value } from './format.js';
import { prefixOf, SYSTEM } from './sections.js';

export const KINDS = ['hp', 'result', 'metric'];
const MAX_VARYING = 10; // hyperparameters shown by default
const MAX_RESULTS = 6;
const MAX_METRICS = 4;
const MAIN_METRIC = /loss|acc|err|f1|auc|score|reward|return|perplex|ppl|bleu|iou|precision|recall|mae|mse|rmse/i;

export const kindOf = (col) => col.slice(0, col.indexOf('.'));
export const columnLabel = (col) => col.slice(col.indexOf('.') + 1);

function keysOf(row, kind) {
  if (kind === 'hp') return (row.hyperparams || []).map((p) => p.key);
  const s = row.summary || {};
  return Object.keys((kind === 'result' ? s.results : s.metrics) || {});
}

/** How many of `rows` have each column, in first-seen order, kind by kind. */
function census(rows) {
  const seen = new Map();
  for (const kind of KINDS) {
    for (const row of rows) {
      for (const k of keysOf(row, kind)) {
        const col = `${kind}.${k}`;
        seen.set(col, (seen.get(col) || 0) + 1);
      }
    }
  }
  return seen;
}

/** Every column some run on the page has, hyperparameters first, then results, then metrics. */
export function availableColumns(rows) {
  return [...census(rows).keys()];
}

/** The columns shown when the URL names none. */
export function defaultColumns(rows) {
  const counts = census(rows);
  const all = [...counts.keys()];
  const byCount = (cols) => cols.map((c, i) => [c, i]).sort((a, b) => counts.get(b[0]) - counts.get(a[0]) || a[1] - b[1]).map(([c]) => c);
  const hps = all.filter((c) => kindOf(c) === 'hp');
  const varying = rows.length < 2 ? hps.slice(0, 4) : hps.filter((c) => {
    const key = columnLabel(c);
    const values = new Set(rows.map((r) => {
      const p = (r.hyperparams || []).find((x) => x.key === key);
      return p ? JSON.stringify(p.value) : '\u0000missing';
    }));
    return values.size > 1;
  }).slice(0, MAX_VARYING);
  const results = byCount(all.filter((c) => kindOf(c) === 'result')).slice(0, MAX_RESULTS);
  const metrics = all.filter((c) => kindOf(c) === 'metric' && prefixOf(columnLabel(c)) !== SYSTEM);
  const main = [...byCount(metrics.filter((c) => MAIN_METRIC.test(columnLabel(c)))),
    ...byCount(metrics.filter((c) => !MAIN_METRIC.test(columnLabel(c))))].slice(0, MAX_METRICS);
  return [...varying, ...results, ...main];
}

/** `cols` grouped kind by kind (the header groups them), each kind in the order given. */
export function ordered(cols) {
  return KINDS.flatMap((kind) => cols.filter((c) => kindOf(c) === kind));
}

/** The text of one cell. */
export function cellText(row, col) {
  const kind = kindOf(col);
  const key = columnLabel(col);
  if (kind === 'hp') {
    const p = (row.hyperparams || []).find((x) => x.key === key);
    return p ? value(p.value) : '';
  }
  const s = row.summary || {};
  if (kind === 'result') return s.results && key in s.results ? num(s.results[key]) : '';
  if (kind === 'metric') return s.metrics && s.metrics[key] ? num(s.metrics[key].last) : '';
  return '';
}
