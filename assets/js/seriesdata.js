// How the dashboard fetches downsampled series: one place, so the wire format (JSON today) can
// change without touching the pages. `fetchSeries(query, options)` answers GET /api/series
// (query: experiments, names, points, x, from, to) as [{experiment_id, x, series: [{name,
// total, raw, x, min, max, last, count, nonfinite}]}].

import * as api from './api.js';

export function fetchSeries(query, options = {}) {
  return api.get('/series', query, options);
}

/**
 * Runs aggregated by group: GET /api/series/groups (query: by = group | tags | hp.NAME, names,
 * points, x, from, to, and experiments=ID,... or workspace + filter) answers {by, x, groups:
 * [{key, label, runs, experiment_ids, series: [{name, x, mean, min, max, std, runs}]}]}.
 */
export function fetchGroups(query, options = {}) {
  return api.get('/series/groups', query, options);
}
