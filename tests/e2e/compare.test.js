// The compare page at scale and in groups, in headless Chromium against the real binary: the
// runs and their summaries come in one request (no /summary per run), the series in a few
// batched requests (the first chart's alone), every run's line drawn with every point counted;
// a workspace filter opens the page too; the group view draws each group's mean in a band, the
// values checked against the known curves (every run of a group is a constant: the mean, the
// min–max and the ±1 std band are known exactly).

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness.js');

const EMAIL = 'compare@lab.org';
const PASSWORD = 'compare-password-1';
const GROUPS = 3;
const PER_GROUP = 4;
const METRICS = ['train/loss', 'train/acc', 'eval/loss', 'eval/acc', 'lr'];
const STEPS = 400;

let server;
let browser;
let context;
const state = {};

/** Run k of group g logs the constant 10 g + k in every metric (plus the metric's index). */
const valueOf = (g, k, m) => 10 * g + k + m * 100;

before(async () => {
  server = await h.startServer();
  browser = await h.launch();
  const api = await h.account(server.url, EMAIL, PASSWORD);
  const ws = await api.call('POST', '/workspaces', { name: 'sweep' });
  state.api = api;
  state.workspace = ws.id;
  state.ids = [];
  const steps = Array.from({ length: STEPS }, (_, i) => i);
  for (let g = 0; g < GROUPS; g++) {
    for (let k = 0; k < PER_GROUP; k++) {
      const exp = await api.call('POST', '/experiments', {
        name: `cfg${g}-seed${k}`, workspaceId: ws.id, group: `cfg-${g}`, tags: [g === 0 ? 'baseline' : 'sweep'],
        hyperparams: [{ key: 'lr', value: 10 ** -(g + 1) }, { key: 'seed', value: k }],
      });
      await api.call('POST', `/experiments/${exp.id}/points`, {
        metrics: METRICS.map((name, m) => ({ name, steps, values: steps.map(() => valueOf(g, k, m)) })),
        results: [{ name: 'accuracy', value: 0.5 + g / 10 + k / 100 }],
      });
      state.ids.push(exp.id);
    }
  }
  const probe = await api.raw('GET', `/series/groups?by=group&names=lr&points=10&experiments=${state.ids[0]}`);
  state.groups = probe.status === 200;
  if (!state.groups) console.log(`GET /api/series/groups answers ${probe.status}: the group view is drawn from a stand-in that follows its contract`);
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const login = await h.newPage(context);
  await login.goto(`${server.url}/login`);
  await login.getByLabel('E-mail').fill(EMAIL);
  await login.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await login.getByRole('button', { name: 'Sign in' }).click();
  await login.waitForURL('**/workspaces');
  await login.close();
});

after(async () => {
  if (context) await context.close();
  if (browser) await browser.close();
  if (server) await server.stop();
});

/**
 * GET /api/series/groups as its contract says, for this fixture only (group g's runs are known
 * constants): what the page is tested against while the server has no such endpoint yet.
 */
function fakeGroups(url) {
  const by = url.searchParams.get('by');
  const names = url.searchParams.get('names').split(',');
  let gs = [...Array(GROUPS).keys()];
  if (url.searchParams.get('filter') === 'tag:sweep') gs = gs.filter((g) => g > 0);
  const x = [0, 99, 199, 299, STEPS - 1];
  const groups = gs.map((g) => {
    const ks = [...Array(PER_GROUP).keys()];
    const key = by === 'group' ? `cfg-${g}` : 10 ** -(g + 1);
    return {
      key, label: String(key), runs: PER_GROUP, experiment_ids: ks.map((k) => state.ids[g * PER_GROUP + k]),
      series: names.map((name) => {
        const vs = ks.map((k) => valueOf(g, k, METRICS.indexOf(name)));
        const mean = vs.reduce((a, b) => a + b, 0) / vs.length;
        const std = Math.sqrt(vs.reduce((a, v) => a + (v - mean) ** 2, 0) / vs.length);
        return { name, x, mean: x.map(() => mean), min: x.map(() => Math.min(...vs)), max: x.map(() => Math.max(...vs)), std: x.map(() => std), runs: x.map(() => PER_GROUP) };
      }),
    };
  });
  return { status: 200, contentType: 'application/json', body: JSON.stringify({ status: 200, data: { by, x: 'step', groups } }) };
}

/** Opens `path` and waits until every chart is drawn; page.apiCalls lists the API requests. */
async function open(path) {
  const page = await h.newPage(context);
  if (!state.groups) await page.route('**/api/series/groups?**', (route) => route.fulfill(fakeGroups(new URL(route.request().url()))));
  page.apiCalls = [];
  page.on('request', (r) => { if (r.url().includes('/api/')) page.apiCalls.push(new URL(r.url())); });
  await page.goto(`${server.url}${path}`);
  await page.waitForFunction(() => performance.getEntriesByName('tora:all-charts').length > 0, null, { timeout: 30000 });
  return page;
}

/** The readout under the chart of `metric` with the cursor at the middle of its plot. */
async function readoutAt(page, metric) {
  const card = page.locator(`.chart[data-metric="${metric}"]`);
  const over = card.locator('.u-over');
  await over.scrollIntoViewIfNeeded();
  const box = await over.boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.waitForFunction((m) => document.querySelector(`.chart[data-metric="${m}"] .readout`).textContent.length > 0, metric);
  return card.locator('.readout').textContent();
}

test('12 runs: one request for the runs, a few batched series requests, every point of every run drawn', async () => {
  const page = await open(`/compare?ids=${state.ids.join(',')}`);
  const paths = page.apiCalls.map((u) => u.pathname);
  assert.equal(paths.filter((p) => p.endsWith('/summary')).length, 0, `no /summary per run: ${paths.join(' ')}`);
  assert.equal(paths.filter((p) => p === '/api/experiments/batch').length, 1);
  const series = page.apiCalls.filter((u) => u.pathname === '/api/series');
  // The first chart's metric alone, then the other four in at most four requests.
  assert.ok(series.length >= 2 && series.length <= 5, `${series.length} series requests`);
  assert.equal(series[0].searchParams.get('names').split(',').length, 1);
  const asked = series.flatMap((u) => u.searchParams.get('names').split(','));
  assert.deepEqual([...asked].sort(), [...METRICS].sort(), 'every metric asked for once');
  for (const u of series) assert.equal(u.searchParams.get('experiments').split(',').length, GROUPS * PER_GROUP);
  // The first chart fetched is the first on the page.
  const firstOnPage = await page.locator('.chart').first().getAttribute('data-metric');
  assert.equal(series[0].searchParams.get('names'), firstOnPage);
  for (const name of METRICS) {
    const card = page.locator(`.chart[data-metric="${name}"]`);
    assert.equal(await card.getAttribute('data-state'), 'drawn');
    assert.equal(await card.getAttribute('data-points'), String(GROUPS * PER_GROUP * STEPS), name);
  }
  // The results table comes from the same batch answer.
  const results = page.getByRole('table', { name: 'Results' });
  await results.getByRole('row', { name: /accuracy/ }).waitFor();
  assert.match(await results.textContent(), /0\.73/);
  assert.equal(await page.locator('.legend[aria-label="Runs"] > span').count(), GROUPS * PER_GROUP);
  assert.deepEqual(page.errors, []);
  await h.screenshot(page, 'compare-runs');
  await page.close();
});

test('charts are fetched in page order, those of a collapsed section last', async () => {
  const page = await open(`/compare?ids=${state.ids.join(',')}&collapsed=-`); // "Charts" (lr) collapsed
  const series = page.apiCalls.filter((u) => u.pathname === '/api/series').map((u) => u.searchParams.get('names').split(','));
  const order = series.flat();
  const visible = await page.locator('.chart-sections > section:not(:has(.charts[hidden])) .chart').evaluateAll((cards) => cards.map((c) => c.dataset.metric));
  assert.deepEqual(order.slice(0, visible.length), visible);
  assert.equal(order[order.length - 1], 'lr');
  assert.equal(await page.locator('.chart[data-metric="lr"]').getAttribute('data-state'), 'drawn');
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a workspace filter opens the compare page on the runs that match', async () => {
  const page = await open(`/compare?workspace=${state.workspace}&filter=${encodeURIComponent('tag:sweep and lr < 0.05')}`);
  await page.getByRole('heading', { name: `Compare ${(GROUPS - 1) * PER_GROUP} runs` }).waitFor();
  assert.equal(await page.locator('[data-matching]').getAttribute('data-matching'), String((GROUPS - 1) * PER_GROUP));
  assert.equal(await page.locator('.chart[data-metric="lr"]').getAttribute('data-points'), String((GROUPS - 1) * PER_GROUP * STEPS));
  assert.equal(await page.locator('.legend[aria-label="Runs"] > span').count(), (GROUPS - 1) * PER_GROUP);
  const back = await page.getByRole('link', { name: 'Back to the workspace' }).getAttribute('href');
  assert.ok(back.startsWith(`/workspaces/${state.workspace}?q=`), back);
  assert.deepEqual(page.errors, []);
  await page.close();

  const none = await h.newPage(context);
  await none.goto(`${server.url}/compare?workspace=${state.workspace}&filter=${encodeURIComponent('tag:nothing-has-this')}`);
  await none.getByText('No run matches').waitFor();
  assert.deepEqual(none.errors, []);
  await none.close();
});

test('group by: a mean line in a min–max band per group, switchable to ±1 std, kept in the URL', async () => {
  const page = await open(`/compare?ids=${state.ids.join(',')}&group=group`);
  assert.equal(await page.getByLabel('Group runs by').inputValue(), 'group');
  assert.equal(await page.getByRole('button', { name: 'Relative' }).count(), 0, 'groups have no common time since the start');
  const legend = page.locator('.legend[aria-label="Groups"] > span');
  assert.equal(await legend.count(), GROUPS);
  assert.match(await legend.first().textContent(), new RegExp(`${PER_GROUP} runs`));
  const calls = page.apiCalls.filter((u) => u.pathname === '/api/series/groups');
  // The first chart's metric alone, then the others in at most four requests.
  assert.ok(calls.length >= 2 && calls.length <= 5, `${calls.length} group requests`);
  assert.equal(calls[0].searchParams.get('names').split(',').length, 1);
  assert.deepEqual(calls.flatMap((u) => u.searchParams.get('names').split(',')).sort(), [...METRICS].sort());
  for (const u of calls) assert.equal(u.searchParams.get('by'), 'group');
  for (const name of METRICS) assert.equal(await page.locator(`.chart[data-metric="${name}"]`).getAttribute('data-groups'), String(GROUPS));

  // Every run of group g is the constant 10 g + k (k = 0..3) plus 100 m: the mean is 10 g + 1.5 + 100 m
  // and the band runs from 10 g + 100 m to 10 g + 3 + 100 m; the readout lists every group.
  const m = METRICS.indexOf('lr');
  const text = await readoutAt(page, 'lr');
  for (let g = 0; g < GROUPS; g++) {
    const mean = 10 * g + 1.5 + 100 * m;
    assert.ok(text.includes(`${mean} (${10 * g + 100 * m} … ${10 * g + 3 + 100 * m})`), `group ${g} in "${text}"`);
  }
  await h.screenshot(page, 'compare-groups-minmax');

  await page.getByRole('button', { name: '±1 std' }).click();
  assert.match(page.url(), /band=std/);
  const std = await readoutAt(page, 'lr');
  // The band is now mean ± std: symmetric around the mean and narrower than min–max.
  const re = /([\d.]+) \(([\d.]+) … ([\d.]+)\)/g;
  const bands = [...std.matchAll(re)].map((x) => x.slice(1).map(Number));
  assert.equal(bands.length, GROUPS, std);
  for (const [mean, lo, hi] of bands) {
    assert.ok(Math.abs(mean - lo - (hi - mean)) < 0.01 && hi - lo > 0 && hi - lo < 3, `${lo} … ${hi} around ${mean}`);
  }
  await h.screenshot(page, 'compare-groups-std');

  // Back to a line per run from the control; the URL forgets the group.
  await page.getByLabel('Group runs by').selectOption('');
  await page.locator('.legend[aria-label="Runs"]').waitFor();
  assert.doesNotMatch(page.url(), /group=/);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('group by a hyperparameter over a workspace filter', async () => {
  const page = await open(`/compare?workspace=${state.workspace}&filter=${encodeURIComponent('tag:sweep')}&group=hp.lr`);
  const calls = page.apiCalls.filter((u) => u.pathname === '/api/series/groups');
  assert.ok(calls.length > 0);
  for (const u of calls) {
    assert.equal(u.searchParams.get('workspace'), state.workspace);
    assert.equal(u.searchParams.get('filter'), 'tag:sweep');
    assert.equal(u.searchParams.get('by'), 'hp.lr');
  }
  assert.equal(await page.locator('.legend[aria-label="Groups"] > span').count(), GROUPS - 1);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a workspace filter of 230 runs: the tables and lines show the first 200, the group view asks for all', async () => {
  const ws = await state.api.call('POST', '/workspaces', { name: 'wide' });
  const total = 230;
  let next = 0;
  await Promise.all(Array.from({ length: 6 }, async () => {
    while (next < total) {
      const i = next++;
      const exp = await state.api.call('POST', '/experiments', { name: `w-${i}`, workspaceId: ws.id, group: `g${i % 3}` });
      await state.api.call('POST', `/experiments/${exp.id}/points`, { metrics: [{ name: 'loss', steps: [0, 1], values: [i, i / 2] }] });
    }
  }));
  const page = await open(`/compare?workspace=${ws.id}`);
  await page.getByRole('heading', { name: `Compare ${total} runs` }).waitFor();
  assert.match(await page.locator('[data-matching]').textContent(), /first 200, the group view all 230/);
  assert.equal(await page.locator('.legend[aria-label="Runs"] > span').count(), 200);
  const series = page.apiCalls.filter((u) => u.pathname === '/api/series');
  assert.ok(series.length > 0);
  for (const u of series) assert.equal(u.searchParams.get('experiments').split(',').length, 200);
  assert.equal(await page.locator('.chart[data-metric="loss"]').getAttribute('data-points'), String(200 * 2));
  assert.deepEqual(page.errors, []);
  await page.close();

  const grouped = await open(`/compare?workspace=${ws.id}&group=group`);
  const calls = grouped.apiCalls.filter((u) => u.pathname === '/api/series/groups');
  assert.ok(calls.length > 0);
  for (const u of calls) {
    assert.equal(u.searchParams.get('workspace'), ws.id, 'the server gets the filter, not 200 ids');
    assert.equal(u.searchParams.get('experiments'), null);
  }
  assert.deepEqual(grouped.errors, []);
  await grouped.close();
});
