// The dashboard as a researcher uses it, in headless Chromium against the real binary: sign up,
// make a workspace, log through the API, watch the chart and a live point, compare, download CSV,
// share with a viewer, survive an expired session, and the same pages on a 375 px phone.

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const h = require('./harness.js');

const OWNER = { email: 'ana@lab.org', password: 'ana-password-1' };
const VIEWER = { email: 'bo@lab.org', password: 'bo-password-1' };
const LINE = [36, 99, 216]; // --line of the light theme, the colour of a metric's curve
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

let server;
let browser;
const pages = [];
const allowed = []; // console errors a step causes on purpose (regexes), for every page


before(async () => {
  server = await h.startServer();
  browser = await h.launch();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

async function open(context) {
  const page = await h.newPage(context, allowed);
  pages.push(page);
  return page;
}

async function signIn(page, who) {
  await page.getByLabel('E-mail').fill(who.email);
  await page.getByLabel('Password', { exact: true }).fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** Logs a metric curve and a result through the batch API, as the SDK would. */
function curve(name, steps, f, extra = []) {
  const logs = [];
  for (let s = 0; s < steps; s++) logs.push({ msg_id: `${name}-${s}`, name, value: f(s), step: s });
  return logs.concat(extra);
}

test('a researcher follows runs from signup to sharing them', async (t) => {
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true, colorScheme: 'light' });
  await desktop.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
  const page = await open(desktop);
  const state = {};

  await t.test('the login page shows the first-run hint while there are no accounts', async (st) => {
    const setup = await fetch(`${server.url}/api/setup`);
    if (setup.status === 404) {
      st.skip('this server has no GET /api/setup yet');
      allowed.push(/status of 404 .*\/api\/setup\)$/);
      return;
    }
    await page.goto(`${server.url}/login`);
    await page.getByText('First run').waitFor();
    await h.screenshot(page, 'login-first-run');
  });

  await t.test('sign up lands on the workspaces page', async () => {
    await page.goto(`${server.url}/signup`);
    await page.getByLabel('E-mail').fill(OWNER.email);
    await page.getByLabel('Password (at least 8 characters)').fill(OWNER.password);
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.waitForURL('**/workspaces');
    await page.getByRole('heading', { name: 'Workspaces', level: 1 }).waitFor();
  });

  await t.test('create a workspace: it opens with an empty state', async () => {
    await page.getByLabel('Name').fill('vision-lab');
    await page.getByLabel('Description').fill('ResNet sweeps on CIFAR-10');
    await page.getByRole('button', { name: 'Create workspace' }).click();
    await page.waitForURL(new RegExp(`/workspaces/${UUID}$`));
    state.workspace = new URL(page.url()).pathname.split('/')[2];
    await page.getByText('No experiments in this workspace yet').waitFor();
    await h.screenshot(page, 'workspace-empty');
  });

  await t.test('an API key is shown once with a copy button', async () => {
    await page.getByRole('link', { name: 'Settings' }).click();
    await page.getByLabel('Name').fill('laptop');
    await page.getByRole('button', { name: 'Create key' }).click();
    const key = await page.locator('code[data-key="new"]').textContent();
    assert.match(key, /^tora_sk_[A-Za-z0-9]{40}$/);
    await page.getByRole('button', { name: 'Copy' }).click();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), key);
    await h.screenshot(page, 'settings-new-key');
    state.api = h.client(server.url, { key });
  });

  await t.test('runs logged through the API show up in the table; the filter narrows it', async () => {
    const { api } = state;
    const runs = {};
    for (const [name, lr] of [['run-a', 0.01], ['run-b', 0.001]]) {
      const exp = await api.call('POST', '/experiments', {
        name, workspaceId: state.workspace, tags: ['baseline'],
        hyperparams: [{ key: 'lr', value: lr }, { key: 'batch', value: 64 }, { key: 'optimizer', value: 'adam' }],
      });
      const k = lr * 100;
      const logs = curve('loss', 500, (s) => 2 * Math.exp(-s * k / 100) + 0.02 * Math.sin(s), [{ msg_id: 'nan', name: 'loss', value: 'NaN', step: 250 }])
        .concat(curve('accuracy', 500, (s) => 1 - Math.exp(-s * k / 120)))
        .concat([{ msg_id: 'final', name: 'test_accuracy', value: 0.9 + k / 100 }]);
      await h.logBatches(api, exp.id, logs, 5000);
      runs[name] = exp;
    }
    state.runs = runs;
    await page.goto(`${server.url}/workspaces/${state.workspace}`);
    const rows = page.locator('table[aria-label="Experiments"] tbody tr');
    await rows.nth(1).waitFor();
    assert.equal(await rows.count(), 2);
    await h.screenshot(page, 'workspace-table');

    await page.getByLabel('Filter experiments').fill('lr < 0.005');
    await page.getByLabel('Filter experiments').press('Enter');
    await page.waitForURL(/q=lr/);
    await page.waitForFunction(() => document.querySelectorAll('table[aria-label="Experiments"] tbody tr').length === 1);
    assert.equal(await rows.first().locator('td.name a').textContent(), 'run-b');

    const refusedQuery = /status of 400 .*[?&]q=lr\+%3C&/; // the refused query, shown to the user under the input
    allowed.push(refusedQuery);
    await page.getByLabel('Filter experiments').fill('lr <');
    await page.getByLabel('Filter experiments').press('Enter');
    await page.getByRole('alert').filter({ hasText: /column/ }).waitFor();
    await page.getByLabel('Filter experiments').fill('');
    await page.getByLabel('Filter experiments').press('Enter');
    await page.waitForFunction(() => document.querySelectorAll('table[aria-label="Experiments"] tbody tr').length === 2);
    allowed.splice(allowed.indexOf(refusedQuery), 1);
  });

  await t.test('the experiment page draws a chart per metric', async () => {
    await page.getByRole('link', { name: 'run-a' }).click();
    await page.waitForURL(`**/experiments/${state.runs['run-a'].id}`);
    await page.locator('.chart[data-metric="loss"][data-state="drawn"]').waitFor();
    await page.locator('.chart[data-metric="accuracy"][data-state="drawn"]').waitFor();
    const pixels = await h.seriesPixels(page, '.chart[data-metric="loss"] canvas', LINE);
    assert.ok(pixels > 100, `the loss curve left only ${pixels} pixels of its colour`);
    await page.getByText('1 NaN/Inf').waitFor();
    await h.screenshot(page, 'experiment');
  });

  await t.test('chart options: log scale, smoothing, time axis and zoom live in the URL', async () => {
    await page.getByRole('button', { name: 'Log' }).click();
    await page.getByLabel('Smoothing (EMA weight)').fill('0.8');
    await page.waitForURL(/scale=log.*smooth=0.8|smooth=0.8.*scale=log/);
    await h.screenshot(page, 'experiment-log-smoothed');
    await page.getByRole('button', { name: 'Time' }).click();
    await page.waitForURL(/x=time/);
    await page.locator('.chart[data-metric="loss"][data-state="drawn"]').waitFor();
    await page.getByRole('button', { name: 'Step' }).click();
    await page.getByRole('button', { name: 'Linear' }).click();
    await page.getByLabel('Smoothing (EMA weight)').fill('0');

    const plot = await page.locator('.chart[data-metric="loss"] .u-over').boundingBox();
    const zoomed = page.waitForRequest((r) => /\/series\?.*from=/.test(r.url()));
    await page.mouse.move(plot.x + plot.width * 0.3, plot.y + plot.height / 2);
    await page.mouse.down();
    await page.mouse.move(plot.x + plot.width * 0.6, plot.y + plot.height / 2, { steps: 5 });
    await page.mouse.up();
    await zoomed;
    await page.waitForURL(/from=\d.*to=\d/);
    await page.getByRole('button', { name: 'Reset zoom' }).click();
    await page.waitForURL((u) => !u.search.includes('from='));
    await page.locator('.chart[data-metric="loss"][data-state="drawn"]').waitFor();
  });

  await t.test('a point logged through the API appears without a reload', async () => {
    await page.evaluate(() => { window.sameDocument = true; });
    await page.locator('main[data-stream="live"]').waitFor();
    const card = page.locator('.chart[data-metric="loss"]');
    const before = Number(await card.getAttribute('data-points'));
    await state.api.call('POST', `/experiments/${state.runs['run-a'].id}/logs`, { msg_id: 'spike', name: 'loss', value: 3.5, step: 500 });
    await page.waitForFunction((n) => Number(document.querySelector('.chart[data-metric="loss"]').dataset.points) === n, before + 1);
    await card.getByText('last 3.5').waitFor();
    await state.api.call('POST', `/experiments/${state.runs['run-a'].id}/logs/batch`, { logs: [
      { msg_id: 'lr-0', name: 'learning_rate', value: 0.01, step: 0 },
      { msg_id: 'lr-1', name: 'learning_rate', value: 0.005, step: 1 },
      { msg_id: 'best', name: 'best_loss', value: 0.0123 },
    ] });
    await page.locator('.chart[data-metric="learning_rate"][data-state="drawn"]').waitFor();
    await page.locator('section[aria-labelledby="res-h"]').getByText('best_loss').waitFor();
    assert.equal(await page.evaluate(() => window.sameDocument), true, 'the page was reloaded');
    await h.screenshot(page, 'experiment-live-point');
  });

  await t.test('the owner edits the description and tags', async () => {
    await page.getByRole('button', { name: 'Edit the description' }).click();
    await page.getByRole('textbox', { name: 'Description' }).fill('lr sweep, seed 1');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('lr sweep, seed 1').waitFor();
    await page.getByLabel('New tag').fill('sweep');
    await page.getByRole('button', { name: 'Add tag' }).click();
    await page.getByRole('button', { name: 'Remove tag sweep' }).waitFor();
    const stored = await state.api.call('GET', `/experiments/${state.runs['run-a'].id}`);
    assert.equal(stored.description, 'lr sweep, seed 1');
    assert.deepEqual(stored.tags, ['baseline', 'sweep']);
  });

  await t.test('the CSV download holds every point', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download CSV' }).click()]);
    assert.equal(download.suggestedFilename(), 'run-a.csv');
    const csv = fs.readFileSync(await download.path(), 'utf8').trim().split('\n');
    assert.equal(csv[0], 'name,type,step,value,created_at');
    assert.equal(csv.length - 1, 500 + 1 + 500 + 1 + 1 + 3); // loss, its NaN, accuracy, the result, the live points
    assert.ok(csv.some((line) => line.startsWith('loss,metric,250,NaN')), 'the NaN is in the CSV');
  });

  await t.test('comparing two runs highlights the hyperparameter that differs', async () => {
    await page.goto(`${server.url}/workspaces/${state.workspace}`);
    await page.getByLabel('Select run-a').check();
    await page.getByLabel('Select run-b').check();
    await page.getByRole('button', { name: 'Compare 2' }).click();
    await page.waitForURL(/\/compare\?ids=/);
    await page.locator('.chart[data-metric="loss"][data-state="drawn"]').waitFor();
    assert.match(await page.locator('tr[data-key="lr"]').getAttribute('class'), /differs/);
    assert.doesNotMatch(await page.locator('tr[data-key="batch"]').getAttribute('class'), /differs/);
    assert.ok(await h.seriesPixels(page, '.chart[data-metric="loss"] canvas', LINE) > 50, 'run-a is drawn in the overlay');
    state.compareUrl = new URL(page.url()).pathname + new URL(page.url()).search;
    await h.screenshot(page, 'compare');
  });

  await t.test('an invited viewer sees the run without edit buttons', async () => {
    await page.goto(`${server.url}/workspaces/${state.workspace}/members`);
    await page.getByRole('textbox', { name: 'E-mail' }).fill(VIEWER.email);
    await page.getByRole('button', { name: 'Invite' }).click();
    await page.getByRole('button', { name: `Cancel the invitation of ${VIEWER.email}` }).waitFor();
    // The link is shown once, on the page: the owner copies it and sends it to the viewer.
    const link = await page.locator('code[data-link="new"]').textContent();
    assert.match(link, new RegExp(`^${server.url}/invitations/tora_inv_[A-Za-z0-9]{40}$`));
    await page.getByRole('button', { name: 'Copy link' }).click();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), link);
    await h.screenshot(page, 'members');

    // The viewer has no account yet: the link leads through sign-up and back to the invitation.
    const other = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const viewer = await open(other);
    state.viewer = viewer;
    await viewer.goto(link);
    await viewer.waitForURL(/\/login\?next=%2Finvitations%2F/);
    await viewer.getByRole('link', { name: 'Sign up' }).click();
    await viewer.getByLabel('E-mail').fill(VIEWER.email);
    await viewer.getByLabel('Password (at least 8 characters)').fill(VIEWER.password);
    await viewer.getByRole('button', { name: 'Create account' }).click();
    await viewer.waitForURL(link);
    await viewer.getByRole('heading', { name: 'Invitation to vision-lab' }).waitFor();
    await h.screenshot(viewer, 'invitation');
    await viewer.getByRole('button', { name: 'Accept' }).click();
    await viewer.waitForURL(`**/workspaces/${state.workspace}`);
    // Used once: the same link now says so, and the owner's list is empty again.
    const again = await h.account(server.url, VIEWER.email, VIEWER.password);
    const token = link.split('/').pop();
    assert.equal((await again.raw('POST', '/invitations/accept', { token })).status, 404);
    await viewer.getByRole('link', { name: 'run-a' }).click();
    await viewer.locator('.chart[data-metric="loss"][data-state="drawn"]').waitFor();
    await viewer.getByText('lr sweep, seed 1').waitFor();
    for (const name of ['Edit the description', 'Add tag', 'Delete', 'Remove tag sweep']) {
      assert.equal(await viewer.getByRole('button', { name }).count(), 0, `a viewer sees "${name}"`);
    }
    await h.screenshot(viewer, 'viewer-experiment');

    const asViewer = await h.account(server.url, VIEWER.email, VIEWER.password);
    const refused = await asViewer.raw('PUT', `/experiments/${state.runs['run-a'].id}`, { description: 'mine now' });
    assert.equal(refused.status, 403);

    // Promoted to EDITOR, the same page offers editing (but still no Delete, which is OWNER's).
    await page.reload();
    await page.getByLabel(`Role of ${VIEWER.email}`).selectOption('2');
    await page.getByText(`${VIEWER.email} is now EDITOR`).waitFor();
    await viewer.reload();
    await viewer.getByRole('button', { name: 'Edit the description' }).waitFor();
    assert.equal(await viewer.getByRole('button', { name: 'Delete' }).count(), 0);
    await page.getByLabel(`Role of ${VIEWER.email}`).selectOption('3');
    await page.getByText(`${VIEWER.email} is now VIEWER`).waitFor();
  });

  await t.test('an expired access token is renewed without asking', async () => {
    const { viewer } = state;
    const refused = /status of 401 .*\/api\/(experiments|workspaces)/; // the stale token, refused once
    allowed.push(refused);
    const stale = await viewer.evaluate(() => {
      const s = JSON.parse(localStorage.getItem('tora.session'));
      localStorage.setItem('tora.session', JSON.stringify({ ...s, access_token: 'stale' }));
      return s.refresh_token;
    });
    await viewer.goto(`${server.url}/experiments/${state.runs['run-b'].id}`);
    await viewer.locator('.chart[data-metric="loss"][data-state="drawn"]').waitFor();
    const renewed = await viewer.evaluate(() => JSON.parse(localStorage.getItem('tora.session')));
    assert.notEqual(renewed.access_token, 'stale');
    assert.notEqual(renewed.refresh_token, stale, 'the refresh token rotates');
    allowed.splice(allowed.indexOf(refused), 1);
  });

  await t.test('an expired session goes to the login page and back', async () => {
    const { viewer } = state;
    const refused = /status of 401 .*\/api\/(experiments|workspaces|refresh)/; // the refused token and refresh, on purpose
    allowed.push(refused);
    await viewer.evaluate(() => {
      const s = JSON.parse(localStorage.getItem('tora.session'));
      localStorage.setItem('tora.session', JSON.stringify({ ...s, access_token: 'expired', refresh_token: 'revoked' }));
    });
    const target = `/experiments/${state.runs['run-b'].id}`;
    await viewer.goto(`${server.url}${target}?x=step`);
    await viewer.waitForURL(/\/login\?next=/);
    await viewer.getByText('Sign in to continue where you were.').waitFor();
    await h.screenshot(viewer, 'login-after-expiry');
    await signIn(viewer, VIEWER);
    await viewer.waitForURL(`**${target}?x=step`);
    await viewer.locator('.chart[data-metric="loss"][data-state="drawn"]').waitFor();
    allowed.splice(allowed.indexOf(refused), 1);
  });

  await t.test('change the password, log out, sign in with the new one', async () => {
    const { viewer } = state;
    await viewer.getByRole('link', { name: 'Settings' }).click();
    await viewer.getByLabel('Current password').fill(VIEWER.password);
    await viewer.getByLabel('New password (at least 8 characters)').fill('bo-password-2');
    await viewer.getByLabel('New password again').fill('bo-password-2');
    await viewer.getByRole('button', { name: 'Change password' }).click();
    await viewer.getByText('Password changed').waitFor();
    VIEWER.password = 'bo-password-2';
    await viewer.getByRole('button', { name: 'Sign out', exact: true }).click();
    await viewer.waitForURL('**/login');
    await signIn(viewer, VIEWER);
    await viewer.waitForURL('**/workspaces');
    await viewer.getByRole('heading', { name: 'Workspaces', level: 1 }).waitFor();
  });

  await t.test('the pages work at 375 px (phone) and in the dark theme', async () => {
    const phone = await browser.newContext({
      viewport: { width: 375, height: 812 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
      storageState: await desktop.storageState(),
    });
    const p = await open(phone);
    const run = state.runs['run-a'].id;
    const shots = [
      ['workspaces', '/workspaces', 'h1'],
      ['workspace-table', `/workspaces/${state.workspace}`, 'table[aria-label="Experiments"]'],
      ['experiment', `/experiments/${run}`, '.chart[data-metric="loss"][data-state="drawn"]'],
      ['compare', state.compareUrl, '.chart[data-metric="loss"][data-state="drawn"]'],
      ['members', `/workspaces/${state.workspace}/members`, 'table'],
      ['settings', '/settings', 'table[aria-label="API keys"]'],
    ];
    for (const [name, url, ready] of shots) {
      await p.goto(`${server.url}${url}`);
      await p.locator(ready).first().waitFor();
      const width = await p.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 375, `${name} is ${width} px wide at a 375 px viewport`);
      if (name === 'experiment') {
        const canvas = await p.$eval('.chart canvas', (c) => c.getBoundingClientRect().width);
        assert.ok(canvas <= 360, `a chart is ${canvas} px wide on a phone`);
      }
      await h.screenshot(p, `phone-${name}`);
    }
    await phone.close();

    const dark = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'dark', storageState: await desktop.storageState() });
    const d = await open(dark);
    await d.goto(`${server.url}/experiments/${run}`);
    await d.locator('.chart[data-metric="accuracy"][data-state="drawn"]').waitFor();
    const bg = await d.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(bg, 'rgb(14, 17, 22)');
    await h.screenshot(d, 'experiment-dark');
    await d.goto(`${server.url}${state.compareUrl}`);
    await d.locator('.chart[data-metric="loss"][data-state="drawn"]').waitFor();
    await h.screenshot(d, 'compare-dark');
    await dark.close();
  });

  await t.test('no page logged a console error', () => {
    const errors = pages.flatMap((p) => p.errors);
    assert.deepEqual(errors, []);
  });
});
