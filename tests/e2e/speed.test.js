// How fast the charts appear with real volumes: one run with 20 metrics × 100,000 points, a
// comparison of 20 runs with 20 metrics each, and one of 100 runs × 20 metrics × 2,000 points. The figures are printed, not asserted (the goal:
// first chart under 1 s, all under 2 s, measured from navigation start in headless Chromium).

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness.js');

const METRICS = 20;
const BIG = 100000; // points per metric of the big run
const SMALL = 5000; // points per metric of the 19 other runs in the comparison
const RUNS = 20;
const LOADS = 3;

let server;
let browser;

before(async () => {
  server = await h.startServer();
  browser = await h.launch();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

/** Logs METRICS metrics of `points` steps each, in batches of 50,000 points. */
async function ingest(api, experimentId, points, seed) {
  const total = METRICS * points;
  const batch = 50000;
  for (let start = 0; start < total; start += batch) {
    const logs = [];
    for (let i = start; i < Math.min(total, start + batch); i++) {
      const m = Math.floor(i / points);
      const step = i % points;
      const value = (m + 1) * Math.exp(-step / (points / 4)) * (1 + 0.1 * Math.sin(step / 7 + seed)) + 0.01 * ((step * 7919 + seed) % 101);
      logs.push({ msg_id: `${m}-${step}`, name: `metric_${String(m).padStart(2, '0')}`, value, step });
    }
    await api.call('POST', `/experiments/${experimentId}/logs/batch`, { logs });
  }
}

/** Loads `url` in a fresh page LOADS times; returns [{first, all}] in ms since navigation start. */
async function measure(context, url, expectCharts) {
  const runs = [];
  for (let i = 0; i < LOADS; i++) {
    const page = await h.newPage(context);
    await page.goto(url);
    await page.waitForFunction(() => performance.getEntriesByName('tora:all-charts').length > 0, null, { timeout: 60000 });
    const t = await page.evaluate(() => {
      // Time to first byte of each chart request: what the server spent on it.
      const waits = performance.getEntriesByType('resource').filter((r) => r.name.includes('series?'))
        .map((r) => r.responseStart - r.requestStart).sort((a, b) => a - b);
      return {
        first: performance.getEntriesByName('tora:first-chart')[0].startTime,
        all: performance.getEntriesByName('tora:all-charts')[0].startTime,
        requests: waits.length,
        wait: waits[Math.floor(waits.length / 2)],
      };
    });
    assert.equal(await page.locator('.chart[data-state="drawn"]').count(), expectCharts);
    assert.deepEqual(page.errors, []);
    runs.push(t);
    if (i === LOADS - 1) await h.screenshot(page, `speed-${url.includes('/compare') ? 'compare' : 'experiment'}`);
    await page.close();
  }
  return runs;
}

function report(label, runs) {
  const fmt = (xs) => xs.map((x) => `${Math.round(x)}`).join(' / ');
  console.log(`${label}: first chart ${fmt(runs.map((r) => r.first))} ms, all charts ${fmt(runs.map((r) => r.all))} ms (${LOADS} loads: cold, then warm); `
    + `${runs[0].requests} series requests, median wait for the server ${fmt(runs.map((r) => r.wait))} ms`);
}

test('charts of 20 metrics × 100k points and of a 20-run comparison appear quickly', async () => {
  const api = await h.account(server.url, 'speed@lab.org', 'speed-password');
  const ws = await api.call('POST', '/workspaces', { name: 'speed' });
  const t0 = Date.now();
  const ids = [];
  for (let r = 0; r < RUNS; r++) {
    const exp = await api.call('POST', '/experiments', {
      name: `run-${String(r).padStart(2, '0')}`, workspaceId: ws.id,
      hyperparams: [{ key: 'lr', value: 10 ** -(1 + (r % 4)) }, { key: 'width', value: 64 * (1 + (r % 3)) }, { key: 'seed', value: r }],
    });
    await api.call('POST', `/experiments/${exp.id}/logs/batch`, { logs: [{ msg_id: 'acc', name: 'accuracy', value: 0.8 + r / 200 }] });
    await ingest(api, exp.id, r === 0 ? BIG : SMALL, r);
    ids.push(exp.id);
  }
  const points = METRICS * (BIG + (RUNS - 1) * SMALL);
  console.log(`ingest: ${points.toLocaleString('en-US')} points through the batch API in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const login = await h.newPage(context);
  await login.goto(`${server.url}/login`);
  await login.getByLabel('E-mail').fill('speed@lab.org');
  await login.getByLabel('Password', { exact: true }).fill('speed-password');
  await login.getByRole('button', { name: 'Sign in' }).click();
  await login.waitForURL('**/workspaces');
  await login.close();

  report(`experiment with ${METRICS} metrics × ${BIG.toLocaleString('en-US')} points`,
    await measure(context, `${server.url}/experiments/${ids[0]}`, METRICS));
  report(`compare ${RUNS} runs × ${METRICS} metrics (one run ${BIG.toLocaleString('en-US')} points a metric, the others ${SMALL.toLocaleString('en-US')})`,
    await measure(context, `${server.url}/compare?ids=${ids.join(',')}`, METRICS));
  await context.close();
});

test('a comparison of 100 runs × 20 metrics × 2,000 points (issue 15\'s workload, scaled down)', async () => {
  // bench/compare_browser.js runs it at 100,000 points a metric against the release binary.
  const runs = 100;
  const points = 2000;
  const api = await h.account(server.url, 'wide@lab.org', 'wide-password');
  const ws = await api.call('POST', '/workspaces', { name: 'wide' });
  const t0 = Date.now();
  const steps = Array.from({ length: points }, (_, i) => i);
  const ids = [];
  for (let r = 0; r < runs; r++) {
    const exp = await api.call('POST', '/experiments', {
      name: `sweep-${String(r).padStart(3, '0')}`, workspaceId: ws.id, group: `cfg-${r % 10}`,
      hyperparams: [{ key: 'lr', value: 10 ** -(1 + (r % 5)) }, { key: 'seed', value: Math.floor(r / 10) }],
    });
    const metrics = Array.from({ length: METRICS }, (_, m) => {
      const values = new Float64Array(points);
      for (let i = 0; i < points; i++) values[i] = (m + 1) * Math.exp(-i / (points / 4)) * (1 + 0.1 * Math.sin(i / 7 + r)) + 0.001 * ((i * 7919 + r) % 101);
      return { name: `${m < METRICS / 2 ? 'train' : 'eval'}/metric_${String(m).padStart(2, '0')}`, steps, values_f64: Buffer.from(values.buffer).toString('base64') };
    });
    await api.call('POST', `/experiments/${exp.id}/points`, { metrics, results: [{ name: 'accuracy', value: 0.8 + (r % 10) / 100 }] });
    ids.push(exp.id);
  }
  console.log(`ingest: ${(runs * METRICS * points).toLocaleString('en-US')} points through /points in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const login = await h.newPage(context);
  await login.goto(`${server.url}/login`);
  await login.getByLabel('E-mail').fill('wide@lab.org');
  await login.getByLabel('Password', { exact: true }).fill('wide-password');
  await login.getByRole('button', { name: 'Sign in' }).click();
  await login.waitForURL('**/workspaces');
  await login.close();
  report(`compare ${runs} runs × ${METRICS} metrics × ${points.toLocaleString('en-US')} points`,
    await measure(context, `${server.url}/compare?ids=${ids.join(',')}`, METRICS));
  await context.close();
});

test('a workspace of 10,000 experiments pages, sorts and filters quickly', async () => {
  const api = await h.account(server.url, 'table@lab.org', 'table-password');
  const ws = await api.call('POST', '/workspaces', { name: 'ten-thousand' });
  const t0 = Date.now();
  const total = 10000;
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < total) {
      const i = next++;
      await api.call('POST', '/experiments', {
        name: `sweep-${String(i).padStart(5, '0')}`, workspaceId: ws.id, tags: i % 10 === 0 ? ['baseline'] : [],
        hyperparams: [{ key: 'lr', value: 10 ** -(1 + (i % 5)) }, { key: 'depth', value: 8 + (i % 7) * 4 }],
      });
    }
  }));
  console.log(`create: ${total.toLocaleString('en-US')} experiments in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await h.newPage(context);
  await page.goto(`${server.url}/login`);
  await page.getByLabel('E-mail').fill('table@lab.org');
  await page.getByLabel('Password', { exact: true }).fill('table-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/workspaces');

  const rows = page.locator('table[aria-label="Experiments"] tbody tr');
  await page.goto(`${server.url}/workspaces/${ws.id}`);
  await page.waitForFunction(() => performance.getEntriesByName('tora:table').length > 0);
  const first = await page.evaluate(() => performance.getEntriesByName('tora:table')[0].startTime);
  assert.equal(await rows.count(), 100);
  await page.getByText('1–100 of 10,000').waitFor();

  const timed = async (action, done) => {
    const start = Date.now();
    await action();
    await done();
    return Date.now() - start;
  };
  const nextPage = await timed(() => page.getByRole('button', { name: 'Next →' }).click(), () => page.getByText('101–200 of 10,000').waitFor());
  const sorted = await timed(() => page.getByRole('button', { name: 'Sort by lr' }).click(),
    () => page.waitForFunction(() => document.querySelector('table[aria-label="Experiments"] tbody tr td[data-col="hp.lr"]').textContent === '1e-5'));
  assert.match(page.url(), /sort=hp.lr/);
  await page.getByText('1–100 of 10,000').waitFor();
  let matches = 0;
  for (let i = 0; i < total; i++) if (i % 10 === 0 && 8 + (i % 7) * 4 >= 20) matches++;
  const filtered = await timed(async () => {
    await page.getByLabel('Filter experiments').fill('tag:baseline and depth >= 20');
    await page.getByLabel('Filter experiments').press('Enter');
  }, () => page.getByText(`1–100 of ${matches}`).waitFor());
  await h.screenshot(page, 'speed-table');
  assert.deepEqual(page.errors, []);
  console.log(`table of ${total.toLocaleString('en-US')}: first page ${Math.round(first)} ms after navigation, next page ${nextPage} ms, sort by a hyperparameter ${sorted} ms, filter ${filtered} ms`);
  await context.close();
});
