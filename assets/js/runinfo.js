// What a run is, for people: a name that tells it apart from its namesakes, its group, its state
// (running, finished, failed, crashed) with a mark of its own, how long it ran, and the metadata
// its SDK recorded (git, command, host, Python, packages).

import * as api from './api.js';
import { h, fill } from './dom.js';
import { dateTime } from './format.js';

/**
 * id -> the short id shown beside a name that several of `runs` share (null for a unique
 * name): the shortest prefix of the id, at least 6 characters, that tells the namesakes apart.
 */
export function nameSuffixes(runs) {
  const byName = new Map();
  for (const r of runs) {
    if (!byName.has(r.name)) byName.set(r.name, []);
    byName.get(r.name).push(r.id);
  }
  const out = new Map();
  for (const ids of byName.values()) {
    if (ids.length < 2) {
      out.set(ids[0], null);
      continue;
    }
    let n = 6;
    while (n < 36 && new Set(ids.map((id) => id.slice(0, n))).size < ids.length) n++;
    for (const id of ids) out.set(id, id.slice(0, n));
  }
  return out;
}

/** "run-a" or "run-a · 1f2e3d" when the name is shared. */
export function displayName(run, suffix) {
  return suffix ? `${run.name} · ${suffix}` : run.name;
}

export const STATES = {
  running: { mark: '\u25CF', help: 'running: heard from in the last 5 minutes' },
  finished: { mark: '\u2713', help: 'finished' },
  failed: { mark: '\u2717', help: 'failed: the run ended with an error' },
  crashed: { mark: '\u26A0', help: 'crashed: no heartbeat for 5 minutes and never marked finished' },
};

/** The state with its mark, e.g. "✓ finished"; `href` makes it a link (the table's filter). */
export function stateMark(state, attrs = {}) {
  const s = STATES[state];
  if (!s) return null;
  return h(attrs.href ? 'a' : 'span', { class: `state state-${state}`, title: s.help, dataset: { state }, ...attrs },
    h('span', { class: 'state-mark', 'aria-hidden': 'true' }, s.mark), state);
}

/** A tag or group as the query language reads it: a bare word, else a quoted string. */
export function queryWord(t) {
  return /^[\p{L}\p{N}_./-]+$/u.test(t) && !/^[-+.\d]/.test(t) ? t : `"${t.replace(/"/g, '\\"')}"`;
}

/** The run table's filter for a group. */
export const groupTerm = (group) => `group:${queryWord(group)}`;

/** A run's group as a chip linking to the run table of that group; null for a run in none. */
export function groupLink(run, attrs = {}) {
  if (!run.group) return null;
  return h('a', {
    class: 'tag group-chip', href: `/workspaces/${run.workspace_id}?q=${encodeURIComponent(groupTerm(run.group))}`,
    title: `Every run in the group ${run.group}`, dataset: { group: run.group }, ...attrs,
  }, run.group);
}

/** A run's duration in seconds as "45 s", "12 min 03 s", "3 h 07 min", "2 d 04 h". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '–';
  const s = Math.floor(seconds);
  const p = (n) => String(n).padStart(2, '0');
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${p(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${p(Math.floor(s / 60) % 60)} min`;
  return `${Math.floor(s / 86400)} d ${p(Math.floor(s / 3600) % 24)} h`;
}

/** Seconds a run has lasted: to its end, or to now while it runs. */
export function runSeconds(run, now = Date.now()) {
  const start = Date.parse(run.started_at || run.created_at);
  if (Number.isNaN(start)) return null;
  if (run.state === 'running') return Math.max(0, (now - start) / 1000);
  const end = Date.parse(run.ended_at);
  if (!Number.isNaN(end)) return Math.max(0, (end - start) / 1000);
  return Number.isFinite(run.duration_s) ? run.duration_s : null;
}

/**
 * The run page's line of state and times, "● running · started … · 12 min 03 s": the duration
 * ticks while the run runs, and the run is read again every 30 s then, so a run that ends while
 * someone watches shows it. Stops when `signal` aborts (the user left the page).
 */
export function runTiming(run, signal) {
  const box = h('p', { class: 'run-timing small', 'aria-label': 'Run state and times', dataset: { state: run.state } });
  let current = run;
  const clock = h('span', { class: 'duration' });
  const draw = () => {
    box.dataset.state = current.state;
    clock.textContent = duration(runSeconds(current));
    fill(box, stateMark(current.state), ' · ',
      `started ${dateTime(current.started_at || current.created_at)}`,
      current.ended_at && current.state !== 'running' ? ` · ended ${dateTime(current.ended_at)}` : null,
      ' · ', clock);
  };
  draw();
  const tick = setInterval(() => { if (current.state === 'running') clock.textContent = duration(runSeconds(current)); }, 1000);
  const poll = setInterval(async () => {
    if (current.state !== 'running') return;
    try {
      current = await api.get(`/experiments/${run.id}`, null, { signal });
      draw();
    } catch { /* left the page, or the run is gone: the page says so elsewhere */ }
  }, 30000);
  signal.addEventListener('abort', () => { clearInterval(tick); clearInterval(poll); });
  return box;
}

// ---------- metadata ----------

// Where the SDK's fields may sit: the first key found wins; whatever is left is shown as is.
const FIELDS = [
  ['Git commit', ['git.commit', 'git.sha', 'git_commit', 'commit']],
  ['Git branch', ['git.branch', 'git_branch', 'branch']],
  ['Uncommitted changes', ['git.dirty', 'git_dirty', 'dirty']],
  ['Git remote', ['git.remote', 'git.url', 'git_remote']],
  ['Command', ['command', 'cmd', 'argv', 'args']],
  ['Working directory', ['cwd', 'workdir']],
  ['Host', ['host', 'hostname', 'node']],
  ['User', ['user', 'username']],
  ['Python', ['python', 'python_version', 'python.version']],
  ['Executable', ['executable', 'python.executable']],
  ['Platform', ['platform', 'os']],
  ['SDK', ['sdk', 'tora', 'tora_version', 'sdk_version']],
];
const PACKAGES = ['packages', 'pip', 'requirements'];
const MAX_SHOWN = 200; // rows of leftover keys; the server bounds metadata to 200 keys anyway

/** Flattens {git: {commit}} to [['git.commit', v]] (two levels; deeper stays JSON). */
function flatten(meta) {
  const out = new Map();
  for (const [k, v] of Object.entries(meta)) {
    if (v && typeof v === 'object' && !Array.isArray(v) && !PACKAGES.includes(k)) {
      for (const [k2, v2] of Object.entries(v)) out.set(`${k}.${k2}`, v2);
    } else {
      out.set(k, v);
    }
  }
  return out;
}

function show(v) {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.join(' ');
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** [[name, version]] from {name: version}, ["name==version"] or a requirements text. */
function packageList(v) {
  if (Array.isArray(v)) return v.map((x) => (typeof x === 'string' ? x.split(/==|\s+/, 2) : [JSON.stringify(x), '']));
  if (v && typeof v === 'object') return Object.entries(v).map(([k, x]) => [k, show(x)]);
  if (typeof v === 'string') return v.split('\n').filter(Boolean).map((l) => l.split('==', 2));
  return [];
}

/** The run page's metadata panel, or null when the run has none. */
export function metadataPanel(meta) {
  if (!meta || typeof meta !== 'object' || Array.isArray(meta) || !Object.keys(meta).length) return null;
  const flat = flatten(meta);
  const rows = [];
  for (const [label, keys] of FIELDS) {
    const key = keys.find((k) => flat.has(k));
    if (key === undefined) continue;
    const v = flat.get(key);
    flat.delete(key);
    const text = show(v);
    const dirty = label === 'Uncommitted changes' && v === true;
    rows.push(h('tr', { dataset: { meta: key } }, h('th', {}, label),
      h('td', { class: dirty ? 'warn-text' : label === 'Git commit' ? 'mono' : null, title: text }, label === 'Git commit' ? text.slice(0, 12) : text)));
  }
  let packages = null;
  const pkgKey = PACKAGES.find((k) => flat.has(k));
  if (pkgKey) {
    const list = packageList(flat.get(pkgKey));
    flat.delete(pkgKey);
    packages = h('details', { class: 'packages' },
      h('summary', {}, `${list.length} package${list.length === 1 ? '' : 's'}`),
      h('table', { class: 'kv' }, h('tbody', {}, list.map(([n, ver]) => h('tr', {}, h('th', {}, n), h('td', {}, ver || ''))))));
  }
  let shown = 0;
  for (const [k, v] of flat) {
    if (shown++ >= MAX_SHOWN) break;
    rows.push(h('tr', { dataset: { meta: k } }, h('th', {}, k), h('td', {}, show(v))));
  }
  return h('section', { class: 'panel', 'aria-labelledby': 'meta-h' },
    h('h2', { id: 'meta-h' }, 'Run metadata'),
    rows.length ? h('table', { class: 'kv' }, h('tbody', {}, rows)) : null,
    packages);
}
