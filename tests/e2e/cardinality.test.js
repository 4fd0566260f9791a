// A run with 10,000 metric names (per-layer statistics, issue 15 item 6) in headless Chromium:
// the run page says how many metrics there are, starts with its sections collapsed but the
// first, fetches only the series of the charts near the viewport, builds a section's cards a
// chunk at a time, and its search (kept in the URL) finds any metric. Times are printed, never
// asserted (bench/cardinality.py has the server's side).

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness.js');

const EMAIL = 'layers@lab.org';
const PASSWORD = 'layers-password-1';
const SECTIONS = 100; // block00 .. block99, 100 metrics each, and `loss` on its own
const METRICS = SECTIONS * 100 - 1;

let server;
let browser;
const state = {};

const nameOf = (j) => `block${String(Math.floor(j / 100)).padStart(2, '0')}/p${String(j).padStart(5, '0')}`;

before(async () => {
  server = await h.startServer();
  browser = await h.launch();
  const api = await h.account(server.url, EMAIL, PASSWORD);
  const exp = await api.call('POST', '/experiments', { name: 'wide' });
  const logs = [];
  for (const step of [0, 1, 2]) {
    logs.push({ name: 'loss', value: 1 / (step + 1), step });
    for (let j = 0; j < METRICS; j++) logs.push({ name: nameOf(j), value: j + step, step });
  }
  await h.logBatches(api, exp.id, logs);
  state.exp = exp;
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await h.newPage(context);
  await page.goto(`${server.url}/login`);
  await page.getByLabel('E-mail').fill(EMAIL);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/workspaces');
  // Every metric name the page asks series for.
  state.asked = [];
  page.on('request', (req) => {
    const url = new URL(req.url());
    if (url.pathname.endsWith('/series')) state.asked.push(...(url.searchParams.get('names') || '').split(','));
  });
  state.page = page;
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

const countOf = (page) => page.locator('.metric-count').evaluate((el) => ({ ...el.dataset, text: el.textContent }));

test('the run page of 10,000 metrics counts them, collapses sections and fetches only what is near', async () => {
  const { page } = state;
  state.asked.length = 0;
  await page.goto(`${server.url}/experiments/${state.exp.id}`);
  await page.locator('.chart[data-metric="loss"][data-state="drawn"]').waitFor();
  const first = await page.evaluate(() => performance.getEntriesByName('tora:first-chart')[0].startTime);
  console.log(`# first chart of 10,000 metrics: ${Math.round(first)} ms after navigation`);

  assert.deepEqual(await countOf(page), { total: String(METRICS + 1), matching: String(METRICS + 1), text: '10,000 metrics' });
  // Sections by prefix, all collapsed but the first: one card built, one series asked for.
  assert.equal(await page.locator('.chart-section[data-section]').count(), SECTIONS + 1);
  assert.equal(await page.getByRole('button', { name: 'block00' }).getAttribute('aria-expanded'), 'false');
  assert.equal(await page.locator('.chart').count(), 1);
  assert.deepEqual(state.asked, ['loss']);
  assert.equal(await page.locator('.chart-section[data-section="block07"] .section-head .muted').textContent(), '100');

  // Opening a section builds a chunk of cards and fetches those near the viewport only.
  await page.getByRole('button', { name: 'block07' }).click();
  await page.waitForURL((u) => !u.searchParams.get('collapsed').split(',').includes('block07'));
  await page.locator(`.chart[data-metric="${nameOf(700)}"][data-state="drawn"]`).waitFor();
  const built = await page.locator('.chart-section[data-section="block07"] .chart').count();
  assert.ok(built >= 1 && built < 100, `${built} cards built of 100`);
  await page.waitForFunction(() => !document.querySelector('.chart[data-state="loading"]')
    || [...document.querySelectorAll('.chart[data-state="loading"]')].every((c) => c.getBoundingClientRect().top > innerHeight + 300));
  const asked = new Set(state.asked);
  assert.ok(asked.size < 60, `${asked.size} series asked for`);
  for (const n of asked) assert.ok(n === 'loss' || n.startsWith('block07/'), n);
  // Each asked series is one of a built card, and each is asked for once.
  assert.equal(state.asked.length, asked.size);
  const cards = new Set(await page.locator('.chart').evaluateAll((els) => els.map((e) => e.dataset.metric)));
  for (const n of asked) assert.ok(cards.has(n), `${n} asked without a card`);

  // Scrolling to the section's end builds the next chunk.
  await page.locator('.chart-section[data-section="block07"] .more-charts').scrollIntoViewIfNeeded();
  await page.waitForFunction((b) => document.querySelectorAll('.chart-section[data-section="block07"] .chart').length > b, built);
  assert.deepEqual(page.errors, []);
});

test('the search finds any metric, opens its section, says how many match and stays in the URL', async () => {
  const { page } = state;
  await page.goto(`${server.url}/experiments/${state.exp.id}`);
  await page.locator('.chart[data-metric="loss"][data-state="drawn"]').waitFor();
  state.asked.length = 0;
  const target = nameOf(9_876);
  await page.getByLabel('Filter metrics by name').fill('P09876');
  await page.locator(`.chart[data-metric="${target}"][data-state="drawn"]`).waitFor();
  await page.waitForURL(/filter=P09876/);
  assert.deepEqual(await countOf(page), { total: String(METRICS + 1), matching: '1', text: '1 of 10,000 metrics' });
  assert.equal(await page.locator('.chart').count(), 1);
  assert.equal(await page.locator('.chart-section:not([hidden])').count(), 1);
  assert.deepEqual(state.asked, [target]);

  await page.reload();
  await page.locator(`.chart[data-metric="${target}"][data-state="drawn"]`).waitFor();
  assert.equal(await page.getByLabel('Filter metrics by name').inputValue(), 'P09876');
  const points = await page.locator(`.chart[data-metric="${target}"]`).getAttribute('data-points');
  assert.equal(points, '3');

  await page.getByLabel('Filter metrics by name').fill('block4');
  await page.waitForFunction(() => document.querySelector('.metric-count').dataset.matching === '1000');
  assert.deepEqual(page.errors, []);
});

test('a link to the run table naming a metric past the run’s first 100 shows its value', async () => {
  const { page } = state;
  // Metric names sort block00/… first: the last one is far past the 100 a page lists per run
  // unless the table asks for it by name.
  const col = `metric.${nameOf(METRICS - 1)}`;
  await page.goto(`${server.url}/workspaces/${state.exp.workspace_id}?cols=${encodeURIComponent(col)}`);
  const cell = page.locator(`td[data-col="${col}"]`);
  await cell.waitFor();
  assert.equal(Number((await cell.textContent()).replace(/[,\s]/g, '')), METRICS - 1 + 2, 'its last value, at step 2');
  assert.deepEqual(page.errors, []);
});
