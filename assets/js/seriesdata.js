// How the dashboard fetches downsampled series: one place, so the wire format (JSON today) can
// change without touching the pages. `fetchSeries(query, options)` answers GET /api/series
// (query: experiments, names, points, x, from, to) as [{experiment_id, x, series: [{name,
// total, raw, x, min, max, last, count, nonfinite}]}].

import * as api from './api.js';

export function fetchSeries(query, options = {}) {
  return api.get('/series', query, options);
}
