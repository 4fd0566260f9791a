// The run table in groups, in headless Chromium against the real binary: a sweep of 123 runs
// grouped by `group` and by a hyperparameter (kept in the URL), each group a row with its count
// and the mean (min–max) of the columns shown, opened a page of runs at a time, and a whole
// group selected for Compare.

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness.js');

const OWNER = { email: 'gro@lab.org', password: 'gro-password-1' };
const GROUP_ROWS = 'table[aria-label="Experiments"] tr.group-row';

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

/** What the table shows for a number (format.js num, for the values used here). */
const shown = (v) => String(Number(v.toPrecision(5)));

test('a sweep read in groups: counts, aggregates, a group opened page by page, a group compared', async (t) => {
  const api = await h.account(server.url, OWNER.email, OWNER.password);
  const ws = await api.call('POST', '/workspaces', { name: 'sweep' });
  const runs = []; // {id, group, lr, acc}
  const specs = [];
  for (let i = 0; i < 60; i++) specs.push({ group: 'sweep-a', lr: 0.1 });
  for (let i = 0; i < 60; i++) specs.push({ group: 'sweep-b', lr: 0.01 });
  for (let i = 0; i < 3; i++) specs.push({ group: null, lr: null });
  for (const [i, s] of specs.entries()) {
    const hyperparams = [{ key: 'seed', value: i }];
    if (s.lr !== null) hyperparams.push({ key: 'lr', value: s.lr });
    const run = await api.call('POST', '/experiments', { name: `run-${String(i).padStart(3, '0')}`, workspaceId: ws.id, group: s.group, hyperparams });
    const acc = 0.5 + ((i * 37) % 100) / 250;
    await api.call('POST', `/experiments/${run.id}/logs/batch`, {
      logs: [{ name: 'acc', value: acc }, ...[0, 1, 2].map((step) => ({ name: 'loss', value: 1 / (1 + step + i), step }))],
    });
    runs.push({ id: run.id, group: s.group, lr: s.lr, acc });
  }

  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await h.newPage(context, [/status of 404 .*\/stream-token/]);
  await page.goto(`${server.url}/login`);
  await page.getByLabel('E-mail').fill(OWNER.email);
  await page.getByLabel('Password', { exact: true }).fill(OWNER.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/workspaces');

  const groupRows = () => page.$$eval(GROUP_ROWS, (trs) => trs.map((tr) => ({
    label: tr.querySelector('.group-label').textContent,
    count: tr.querySelector('.group-count').textContent,
    acc: (tr.querySelector('td[data-col="result.acc"] .mean') || {}).textContent,
    range: (tr.querySelector('td[data-col="result.acc"] .range') || {}).textContent,
  })));

  await t.test('grouped by group: one row per group with its count and the mean (min–max) of acc', async () => {
    await page.goto(`${server.url}/workspaces/${ws.id}?by=group`);
    await page.locator(GROUP_ROWS).first().waitFor();
    assert.equal(await page.getByLabel('Group by').inputValue(), 'group');
    const rows = await groupRows();
    const expected = ['sweep-a', 'sweep-b', null].map((g) => {
      const accs = runs.filter((r) => r.group === g).map((r) => r.acc);
      const mean = accs.reduce((a, b) => a + b, 0) / accs.length;
      return {
        label: g || '(no group)',
        count: `${accs.length} runs`,
        acc: shown(mean),
        range: `${shown(Math.min(...accs))}–${shown(Math.max(...accs))}`,
      };
    });
    assert.deepEqual(rows, expected);
    // Collapsed: no run rows yet.
    assert.equal(await page.locator('table[aria-label="Experiments"] tbody tr[data-id]').count(), 0);
  });

  await t.test('a group opens 50 runs at a time, then the rest', async () => {
    const section = page.locator('tbody.group').nth(0);
    await section.getByRole('button', { name: /sweep-a/ }).click();
    await section.locator('tr[data-id]').nth(49).waitFor();
    assert.equal(await section.locator('tr[data-id]').count(), 50);
    await section.getByRole('button', { name: 'Show 10 more of 10' }).click();
    await section.locator('tr[data-id]').nth(59).waitFor();
    const ids = await section.locator('tr[data-id]').evaluateAll((trs) => trs.map((tr) => tr.dataset.id));
    assert.deepEqual(new Set(ids), new Set(runs.filter((r) => r.group === 'sweep-a').map((r) => r.id)));
    // A run's own cells are there as in the flat table.
    const one = runs.find((r) => r.id === ids[0]);
    assert.equal(await section.locator(`tr[data-id="${one.id}"] td[data-col="result.acc"]`).textContent(), shown(one.acc));
    await h.screenshot(page, 'groups-table-1440-light');
    await section.getByRole('button', { name: /sweep-a/ }).click();
    await page.waitForFunction(() => !document.querySelector('tbody.group tr[data-id]'));
  });

  await t.test('a group closed while a live refresh reads its runs stays closed', async (st) => {
    const section = page.locator('tbody.group').nth(0);
    await section.getByRole('button', { name: /sweep-a/ }).click();
    await section.locator('tr[data-id]').nth(49).waitFor();
    // Hold the refresh's read of the open group's runs until the group has been closed.
    const held = [];
    await page.route(/\/experiments\/rows\?/, (route) => { held.push(route); });
    // A new run in the workspace: the live stream tells the page, which reads the groups again.
    const late = await api.call('POST', '/experiments', { name: 'run-late', workspaceId: ws.id, group: 'sweep-a', hyperparams: [{ key: 'lr', value: 0.1 }] });
    st.after(() => api.call('DELETE', `/experiments/${late.id}`)); // the later stories count 60
    for (let i = 0; held.length === 0; i++) {
      assert.ok(i < 300, 'the live refresh did not read the open group again');
      await new Promise((r) => setTimeout(r, 50));
    }
    await section.getByRole('button', { name: /sweep-a/ }).click();
    await page.waitForFunction(() => !document.querySelector('tbody.group tr[data-id]'));
    for (const route of held) await route.continue();
    await page.unroute(/\/experiments\/rows\?/);
    // The refresh ends by drawing the new count; the group is still closed.
    await page.locator(GROUP_ROWS).first().locator('.group-count', { hasText: '61 runs' }).waitFor();
    assert.equal(await section.locator('tr[data-id]').count(), 0);
    assert.equal(await section.getByRole('button', { name: /sweep-a/ }).getAttribute('aria-expanded'), 'false');
  });

  await t.test('by a hyperparameter, kept in the URL', async () => {
    await page.getByLabel('Group by').selectOption('hp.lr');
    await page.waitForURL(/by=hp\.lr/);
    await page.waitForFunction(() => document.querySelector('tr.group-row .group-label')?.textContent === '0.01');
    assert.deepEqual((await groupRows()).map((r) => [r.label, r.count]), [['0.01', '60 runs'], ['0.1', '60 runs'], ['(no lr)', '3 runs']]);
    await page.reload();
    await page.locator(GROUP_ROWS).first().waitFor();
    assert.equal(await page.getByLabel('Group by').inputValue(), 'hp.lr');
  });

  await t.test('a whole group selected goes to Compare', async () => {
    const section = page.locator('tbody.group').nth(0); // lr 0.01: sweep-b
    await section.getByRole('checkbox', { name: /Select the 60 runs of 0.01/ }).check();
    const compare = page.getByRole('button', { name: 'Compare 60' });
    await compare.waitFor();
    await compare.click();
    await page.waitForURL('**/compare?ids=*');
    const ids = new URL(page.url()).searchParams.get('ids').split(',');
    assert.deepEqual(new Set(ids), new Set(runs.filter((r) => r.lr === 0.01).map((r) => r.id)));
  });

  await t.test('at 375 px the grouped table scrolls inside its box, the page does not', async () => {
    const narrow = await browser.newContext({ viewport: { width: 375, height: 800 }, colorScheme: 'dark' });
    const p = await h.newPage(narrow, [/status of 404 .*\/stream-token/]);
    await p.goto(`${server.url}/login`);
    await p.getByLabel('E-mail').fill(OWNER.email);
    await p.getByLabel('Password', { exact: true }).fill(OWNER.password);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.waitForURL('**/workspaces');
    await p.goto(`${server.url}/workspaces/${ws.id}?by=group`);
    await p.locator(GROUP_ROWS).first().waitFor();
    await p.locator('tbody.group').nth(2).getByRole('button', { name: /no group/ }).click();
    await p.locator('tbody.group').nth(2).locator('tr[data-id]').nth(2).waitFor();
    assert.ok(await p.evaluate(() => document.documentElement.scrollWidth) <= 375);
    await h.screenshot(p, 'groups-table-375-dark');
    assert.deepEqual(p.errors, []);
    await narrow.close();
  });

  assert.deepEqual(page.errors, []);
  await context.close();
});
