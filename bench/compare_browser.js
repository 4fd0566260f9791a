// The compare page at scale, in headless Chromium: RUNS runs × METRICS metrics × POINTS points
// (issue 15 item 2: 100 × 20 × 100,000, first chart under 300 ms and every chart under 1 s after
// navigation, warm). Builds the fixture once through the real server (columnar /points, values
// as base64 doubles), then loads /compare?ids=... with each binary given: a cold load first,
// then LOADS warm ones; prints first chart / all charts (median and worst) per binary, and
// writes bench/results/compare_browser.json.
//
//   cd tests/e2e && node ../../bench/compare_browser.js                      # TORA_BIN, default target/release/tora
//   BEFORE_BIN=/tmp/tora-main TORA_BIN=target/release/tora node ../../bench/compare_browser.js
//   RUNS=100 METRICS=20 POINTS=2000 LOADS=3 GROUP=1 ...                     # sizes; GROUP=1 also times ?group=group
//   RUNS=1000 METRICS=1 POINTS=10000 GROUP=1 ...                             # past 200 runs: only the group view, workspace form
//   FIXTURE=/tmp/tora-compare-fixture KEEP=1 ...                            # keep the database for the next run
//   PROFILE=1 ...                                                           # a CPU profile of one warm load per binary
//   BUILD_ONLY=1 KEEP=1 ...                                                 # only make the fixture
//
// Needs tests/e2e's node_modules (playwright-core): run it from tests/e2e, or with NODE_PATH.

'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const h = require('../tests/e2e/harness.js');

const RUNS = Number(process.env.RUNS || 100);
const METRICS = Number(process.env.METRICS || 20);
const POINTS = Number(process.env.POINTS || 100000);
const LOADS = Math.max(3, Number(process.env.LOADS || 3));
const GROUPS = 10; // runs are spread over this many groups (seeds of one config)
const BINS = [['before', process.env.BEFORE_BIN], ['after', process.env.TORA_BIN || path.join(h.ROOT, 'target', 'release', 'tora')]]
  .filter(([, bin]) => bin);
const FIXTURE = process.env.FIXTURE || path.join(os.tmpdir(), `tora-compare-${RUNS}x${METRICS}x${POINTS}`);
const EMAIL = 'bench@lab.org';
const PASSWORD = 'bench-password-1';

/** `tora serve` on the fixture's database; resolves to {url, stop()}. */
async function serve(bin) {
  const proc = spawn(bin, ['serve', '--bind', '127.0.0.1:0', '--db', path.join(FIXTURE, 'tora.db')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const kill = () => proc.kill('SIGKILL');
  process.once('exit', kill);
  const url = await new Promise((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`${bin} exited (${code}):\n${stderr}`)));
    readline.createInterface({ input: proc.stdout }).on('line', (line) => {
      const m = /^listening on (http:\/\/\S+)/.exec(line);
      if (m) resolve(m[1]);
    });
  });
  proc.removeAllListeners('exit');
  return {
    url,
    async stop() {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
      process.removeListener('exit', kill);
    },
  };
}

/** A training-like curve: decaying, noisy, different per run and metric. */
function curve(run, metric) {
  const v = new Float64Array(POINTS);
  let s = (run * 7919 + metric * 104729 + 1) >>> 0;
  const scale = (metric + 1) * (1 + (run % GROUPS) / 10);
  for (let i = 0; i < POINTS; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    v[i] = scale * Math.exp(-i / (POINTS / 4)) * (1 + 0.1 * Math.sin(i / 7 + run)) + 0.02 * (s / 2 ** 32);
  }
  return v;
}

const metricName = (m) => `${m < METRICS / 2 ? 'train' : 'eval'}/metric_${String(m).padStart(2, '0')}`;

async function build(bin) {
  fs.rmSync(FIXTURE, { recursive: true, force: true });
  fs.mkdirSync(FIXTURE, { recursive: true });
  const server = await serve(bin);
  const t0 = Date.now();
  try {
    const api = await h.account(server.url, EMAIL, PASSWORD);
    const ws = await api.call('POST', '/workspaces', { name: 'compare-bench' });
    const ids = [];
    for (let r = 0; r < RUNS; r++) {
      const g = r % GROUPS;
      const exp = await api.call('POST', '/experiments', {
        name: `sweep-${String(r).padStart(3, '0')}`, workspaceId: ws.id, group: `config-${g}`, tags: [g % 2 ? 'wide' : 'narrow'],
        hyperparams: [{ key: 'lr', value: 10 ** -(1 + (g % 5)) }, { key: 'width', value: 64 * (1 + (g % 2)) }, { key: 'seed', value: Math.floor(r / GROUPS) }],
      });
      await api.call('POST', `/experiments/${exp.id}/points`, { results: [{ name: 'accuracy', value: 0.8 + g / 100 }] });
      ids.push(exp.id);
    }
    const steps = JSON.stringify(Array.from({ length: POINTS }, (_, i) => i));
    // Every (run, metric) is one request of POINTS points (at most 100,000 a batch); two in flight.
    const jobs = [];
    for (let r = 0; r < RUNS; r++) for (let m = 0; m < METRICS; m += Math.max(1, Math.floor(100000 / POINTS))) jobs.push([r, m]);
    let next = 0;
    await Promise.all([0, 1].map(async () => {
      while (next < jobs.length) {
        const [r, m0] = jobs[next++];
        const metrics = [];
        for (let m = m0; m < Math.min(METRICS, m0 + Math.max(1, Math.floor(100000 / POINTS))); m++) {
          metrics.push(`{"name":${JSON.stringify(metricName(m))},"steps":${steps},"values_f64":"${Buffer.from(curve(r, m).buffer).toString('base64')}"}`);
        }
        const body = `{"metrics":[${metrics.join(',')}]}`;
        const res = await fetch(`${server.url}/api/experiments/${ids[r]}/points`, {
          method: 'POST', body, headers: { 'content-type': 'application/json', authorization: `Bearer ${api.credentials.token}` },
        });
        if (res.status >= 300) throw new Error(`points: ${res.status} ${await res.text()}`);
      }
    }));
    const seconds = (Date.now() - t0) / 1000;
    const fixture = { workspace: ws.id, ids, points: RUNS * METRICS * POINTS, seconds };
    fs.writeFileSync(path.join(FIXTURE, 'fixture.json'), JSON.stringify(fixture));
    console.log(`fixture: ${fixture.points.toLocaleString('en-US')} points in ${seconds.toFixed(0)} s (${Math.round(fixture.points / seconds).toLocaleString('en-US')} points/s) in ${FIXTURE}`);
    return fixture;
  } finally {
    await server.stop();
  }
}

async function signIn(context, url) {
  const page = await h.newPage(context);
  await page.goto(`${url}/login`);
  await page.getByLabel('E-mail').fill(EMAIL);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/workspaces');
  await page.close();
}

/** One load of `url`: {first, all, requests} in ms since navigation start. */
async function load(context, url, expect, profile) {
  const page = await h.newPage(context);
  let cdp = null;
  if (profile) {
    cdp = await context.newCDPSession(page);
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
    await cdp.send('Profiler.start');
  }
  await page.goto(url);
  await page.waitForFunction(() => performance.getEntriesByName('tora:all-charts').length > 0, null, { timeout: 120000 });
  const t = await page.evaluate(() => ({
    first: performance.getEntriesByName('tora:first-chart')[0].startTime,
    all: performance.getEntriesByName('tora:all-charts')[0].startTime,
    start: (performance.getEntriesByName('tora:compare-start')[0] || {}).startTime,
    runs: (performance.getEntriesByName('tora:compare-runs')[0] || {}).startTime,
    fetch: (performance.getEntriesByName('tora:compare-fetch')[0] || {}).startTime,
    answer: (performance.getEntriesByName('tora:compare-first-answer')[0] || {}).startTime,
    requests: performance.getEntriesByType('resource').filter((r) => r.name.includes('/api/')).length,
    bytes: performance.getEntriesByType('resource').filter((r) => r.name.includes('/api/')).reduce((n, r) => n + r.encodedBodySize, 0),
  }));
  if (process.env.TIMELINE === '1') {
    // Where the time before the first chart goes: navigation, then each resource's start and end.
    const lines = await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const out = [`html: request ${nav.requestStart.toFixed(0)}, response end ${nav.responseEnd.toFixed(0)}, DOMContentLoaded ${nav.domContentLoadedEventEnd.toFixed(0)}`];
      for (const r of performance.getEntriesByType('resource')) {
        if (r.startTime < 400) out.push(`${r.startTime.toFixed(0).padStart(5)} → ${r.responseEnd.toFixed(0).padStart(5)}  ${r.name.replace(location.origin, '').slice(0, 90)}`);
      }
      for (const m of performance.getEntriesByType('mark')) out.push(`${m.startTime.toFixed(0).padStart(5)}  mark ${m.name}`);
      return out;
    });
    console.log(lines.join('\n'));
  }
  const drawn = await page.locator('.chart[data-state="drawn"]').count();
  if (drawn !== expect) throw new Error(`${drawn} charts drawn, not ${expect}`);
  if (page.errors.length) throw new Error(page.errors.join('\n'));
  if (cdp) {
    const { profile: p } = await cdp.send('Profiler.stop');
    t.profile = p;
  }
  await page.close();
  return t;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const worst = (xs) => Math.max(...xs);

/** Self time per function of a CPU profile, the top `n`. */
function hotspots(profile, n = 15) {
  const self = new Map();
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const dt = profile.timeDeltas;
  profile.samples.forEach((id, i) => {
    const f = byId.get(id).callFrame;
    const key = `${f.functionName || '(anonymous)'} ${path.basename(f.url || '')}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) || 0) + (dt[i] || 0) / 1000);
  });
  return [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, ms]) => `${ms.toFixed(0).padStart(6)} ms  ${k}`);
}

async function main() {
  let fixture = null;
  try { fixture = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'fixture.json'), 'utf8')); } catch { /* none yet */ }
  if (!fixture) fixture = await build(BINS[BINS.length - 1][1]);
  if (process.env.BUILD_ONLY === '1') return;
  const browser = await h.launch();
  const out = { runs: RUNS, metrics: METRICS, points: POINTS, loads: LOADS, cores: os.cpus().length, results: {} };
  try {
    for (const [label, bin] of BINS) {
      const server = await serve(bin);
      try {
        const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
        await signIn(context, server.url);
        // Past 200 runs the ids= form is capped: the workspace form shows the first 200 as lines
        // and groups all of them (the 1,000 runs in 10 groups).
        const many = RUNS > 200;
        const views = many ? [] : [['runs', `${server.url}/compare?ids=${fixture.ids.join(',')}`]];
        if (process.env.GROUP === '1' && label === 'after') {
          views.push(['groups', many ? `${server.url}/compare?workspace=${fixture.workspace}&group=group`
            : `${server.url}/compare?ids=${fixture.ids.join(',')}&group=group`]);
        }
        for (const [view, url] of views) {
          const cold = await load(context, url, METRICS);
          const warm = [];
          for (let i = 0; i < LOADS; i++) warm.push(await load(context, url, METRICS));
          const firsts = warm.map((w) => w.first);
          const alls = warm.map((w) => w.all);
          const row = { cold: { first: cold.first, all: cold.all }, first: firsts, all: alls, requests: cold.requests, bytes: cold.bytes,
            page_start: median(warm.map((w) => w.start || 0)), runs_loaded: median(warm.map((w) => w.runs || 0)), series_asked: median(warm.map((w) => w.fetch || 0)), first_answer: median(warm.map((w) => w.answer || 0)) };
          out.results[`${label} ${view}`] = row;
          const f = (xs) => xs.map((x) => Math.round(x)).join(' / ');
          console.log(`${label} (${view}): ${RUNS} runs × ${METRICS} metrics × ${POINTS.toLocaleString('en-US')} points: `
            + `first chart median ${Math.round(median(firsts))} ms (worst ${Math.round(worst(firsts))}), all charts median ${Math.round(median(alls))} ms (worst ${Math.round(worst(alls))}); `
            + `warm loads ${f(firsts)} | ${f(alls)}; cold ${Math.round(cold.first)} | ${Math.round(cold.all)}; ${cold.requests} API requests, ${(cold.bytes / 1e6).toFixed(1)} MB`
            + (row.page_start ? `; the page's code ran at ${Math.round(row.page_start)} ms, had its runs at ${Math.round(row.runs_loaded)} ms, asked for the first series at ${Math.round(row.series_asked)} ms, had it at ${Math.round(row.first_answer)} ms` : ''));
          if (process.env.PROFILE === '1') {
            const p = await load(context, url, METRICS, true);
            console.log(`  profile of one warm load (${Math.round(p.all)} ms), self time:\n  ${hotspots(p.profile).join('\n  ')}`);
          }
        }
        await context.close();
      } finally {
        await server.stop();
      }
    }
  } finally {
    await browser.close();
    if (process.env.KEEP !== '1') fs.rmSync(FIXTURE, { recursive: true, force: true });
  }
  fs.mkdirSync(path.join(h.ROOT, 'bench', 'results'), { recursive: true });
  fs.writeFileSync(path.join(h.ROOT, 'bench', 'results', 'compare_browser.json'), JSON.stringify(out, null, 1));
}

main().catch((err) => { console.error(err); process.exit(1); });
