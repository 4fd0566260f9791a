// How the dashboard fetches downsampled series: one place, so the wire format can change
// without touching the pages. `fetchSeries(query, options)` answers GET /api/series
// (query: experiments, names, points, x, from, to) as [{experiment_id, x, series: [{name,
// total, raw, x, min, max, last, count, nonfinite}]}]. It asks for `format=binary` (the
// server's columns as little-endian doubles: no number is parsed from text) and rebuilds that
// shape, null where a column holds NaN.

import * as api from './api.js';

export async function fetchSeries(query, options = {}) {
  const res = await api.response('/series', {
    retry: true,
    ...options,
    query: { ...query, format: 'binary' },
  });
  return decodeSeries(await res.arrayBuffer());
}

const orNull = (v) => (Number.isNaN(v) ? null : v);

/**
 * `TSB1`, the header's length (u32 LE), the JSON header ([{experiment_id, x, series: [{name,
 * total, raw, n}]}]), zero bytes to a multiple of 8, then per series six columns of n f64 LE:
 * x, min, max, last, count, nonfinite.
 */
export function decodeSeries(buf) {
  const bytes = new Uint8Array(buf);
  if (bytes.length < 8 || String.fromCharCode(...bytes.subarray(0, 4)) !== 'TSB1') {
    throw new api.ApiError(200, 'BAD_RESPONSE', 'The server answered series in an unknown format.');
  }
  const length = new DataView(buf).getUint32(4, true);
  const head = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length)));
  let offset = Math.ceil((8 + length) / 8) * 8;
  const column = (n) => {
    const out = new Float64Array(buf, offset, n);
    offset += n * 8;
    return out;
  };
  return head.map((run) => ({
    experiment_id: run.experiment_id,
    x: run.x,
    series: run.series.map(({ name, total, raw, n }) => ({
      name,
      total,
      raw,
      x: Array.from(column(n)),
      min: Array.from(column(n), orNull),
      max: Array.from(column(n), orNull),
      last: Array.from(column(n), orNull),
      count: Array.from(column(n)),
      nonfinite: Array.from(column(n)),
    })),
  }));
}

/**
 * Runs aggregated by group: GET /api/series/groups (query: by = group | tags | hp.NAME, names,
 * points, x, from, to, and experiments=ID,... or workspace + filter) answers {by, x, groups:
 * [{key, label, runs, experiment_ids, series: [{name, x, mean, min, max, std, runs}]}]}.
 */
export function fetchGroups(query, options = {}) {
  return api.get('/series/groups', query, options);
}
