// The dashboard when the server goes away or says "later", in headless Chromium against the real
// binary: the session survives a restart and a busy refresh, a banner says what is going on and
// goes once the server answers, and the page carries on. Only a refresh token the server really
// refuses signs the user out; signing out ends the login on the server too.

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness.js');

const PASSWORD = 'offline-password-1';
const GONE = /ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE|ERR_INCOMPLETE_CHUNKED_ENCODING|ERR_NETWORK_CHANGED/;

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

/** A new account (through the API) with a workspace holding one run with a short loss curve. */
async function seed(email) {
  const api = await h.account(server.url, email, PASSWORD);
  const ws = await api.call('POST', '/workspaces', { name: `${email.split('@')[0]}-lab` });
  const run = await api.call('POST', '/experiments', { name: 'run-1', workspaceId: ws.id });
  const logs = [];
  for (let s = 0; s < 20; s++) logs.push({ msg_id: `loss-${s}`, name: 'loss', value: 1 / (s + 1), step: s });
  await h.logBatches(api, run.id, logs);
  return { api, email, workspace: ws, run };
}

async function signIn(page, email) {
  await page.goto(`${server.url}/login`);
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/workspaces');
  await page.getByRole('heading', { name: 'Workspaces', level: 1 }).waitFor();
}

const nav = (page, name) => page.locator('#nav').getByRole('link', { name });

const session = (page) => page.evaluate(() => JSON.parse(localStorage.getItem('tora.session')));

/** Makes the stored access token one that expired long ago: the next request must refresh first. */
const expireAccessToken = (page) => page.evaluate(() => {
  const s = JSON.parse(localStorage.getItem('tora.session'));
  localStorage.setItem('tora.session', JSON.stringify({ ...s, access_token: 'expired', expires_at: 1 }));
});

/** POST /api/refresh from this test process (the same address as the browser). */
const refreshStatus = async (token) => (await fetch(`${server.url}/api/refresh`, {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refresh_token: token }),
})).status;

const banner = (page) => page.getByRole('status', { name: 'Connection to the server' });

async function bannerGone(page) {
  await page.waitForFunction(() => document.getElementById('net').childElementCount === 0, null, { timeout: 45000 });
}

test('a server restart shows the offline banner, keeps the session, and the page carries on', async () => {
  const { api, email, run } = await seed('cy@lab.org');
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' });
  const page = await h.newPage(context, [GONE]);
  await signIn(page, email);
  const was = await session(page);

  // The experiment page follows the run live; the server goes away under it.
  await page.goto(`${server.url}/experiments/${run.id}`);
  await page.locator('.chart[data-metric="loss"][data-state="drawn"]').waitFor();
  await page.locator('main[data-stream="live"]').waitFor();
  // The code of every page has arrived (app.js fetches it once the first page is up).
  await page.waitForFunction(() => performance.getEntriesByType('resource').some((e) => e.name.endsWith('/js/pages/settings.js')));
  await server.halt();
  await page.locator('#net[data-state="offline"]').waitFor({ timeout: 20000 });
  assert.match(await banner(page).textContent(), /Offline: can’t reach the server; retrying…/);
  await h.screenshot(page, 'offline-banner');
  assert.equal(new URL(page.url()).pathname, `/experiments/${run.id}`, 'still on the page');
  assert.deepEqual(await session(page), was, 'the session is kept while the server is away');

  // Back on the same port and database: the banner goes and the stream follows the run again.
  await server.resume();
  await bannerGone(page);
  await page.locator('main[data-stream="live"]').waitFor({ timeout: 20000 });
  const card = page.locator('.chart[data-metric="loss"]');
  const points = Number(await card.getAttribute('data-points'));
  await api.call('POST', `/experiments/${run.id}/logs`, { msg_id: 'after-restart', name: 'loss', value: 0.25, step: 20 });
  await page.waitForFunction((n) => Number(document.querySelector('.chart[data-metric="loss"]').dataset.points) === n, points + 1);
  await card.getByText('last 0.25').waitFor();

  // Away again: an action the user starts fails at once with a toast that says so, a page the
  // user opens waits for the server, and both carry on once it is back.
  await nav(page, 'Workspaces').click();
  await page.getByRole('heading', { name: 'Workspaces', level: 1 }).waitFor();
  await server.halt();
  await page.getByLabel('Name').fill('made-while-offline');
  await page.getByRole('button', { name: 'Create workspace' }).click();
  await page.locator('#toasts').getByText('Offline: can’t reach the server. Try again when it’s back.').waitFor();
  await page.locator('#net[data-state="offline"]').waitFor();
  await nav(page, 'Settings').click();
  await page.getByText('Loading…').waitFor();
  assert.equal(new URL(page.url()).pathname, '/settings', 'not sent to the login page');
  assert.equal((await session(page)).refresh_token, was.refresh_token);

  // "Retry now" does not wait for the timer: let the wait grow past 3 s, then press it.
  await page.locator('#net .net-count').filter({ hasText: /next try in ([3-9]|\d\d)\u00a0s/ }).waitFor({ timeout: 20000 });
  await server.resume();
  await page.getByRole('button', { name: 'Retry now' }).click();
  await page.getByRole('heading', { name: 'Settings', level: 1 }).waitFor({ timeout: 2500 });
  await bannerGone(page);
  await page.getByRole('heading', { name: 'API keys' }).waitFor();
  await nav(page, 'Workspaces').click();
  await page.getByLabel('Name').fill('made-after-restart');
  await page.getByRole('button', { name: 'Create workspace' }).click();
  await page.waitForURL(/\/workspaces\/[0-9a-f-]{36}$/);
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('a refresh the server refuses as busy (429) keeps the session and retries', async () => {
  const { email } = await seed('di@lab.org');
  // On a phone, in the dark theme: the banner fits 375 px too.
  const context = await browser.newContext({ viewport: { width: 375, height: 812 }, isMobile: true, hasTouch: true, colorScheme: 'dark' });
  const page = await h.newPage(context, [/status of 429 .*\/api\/refresh/]);
  await signIn(page, email);
  const was = await session(page);
  await expireAccessToken(page);

  // Use up this address's refresh allowance (real 429s from the server's limiter), and keep it
  // used up: the bucket refills one a second.
  let draining = true;
  let refused = 0;
  for (let i = 0; i < 100 && await refreshStatus('not-a-token') !== 429; i++) { /* 60 tries at most */ }
  const drain = (async () => {
    while (draining) {
      if (await refreshStatus('not-a-token') === 429) refused += 1;
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const busyAnswers = [];
  page.on('response', (res) => {
    if (res.url().endsWith('/api/refresh') && res.status() === 429) busyAnswers.push(res.headers()['retry-after']);
  });

  try {
    await nav(page, 'Settings').click();
    await page.locator('#net[data-state="busy"]').waitFor();
    assert.match(await banner(page).textContent(), /The server is busy; retrying( in \d+\u00a0s| now…)/);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375, `the page is ${width} px wide with the banner at 375 px`);
    await h.screenshot(page, 'phone-busy-banner');
    // A few rounds of 429s later the user is still signed in, with the same refresh token
    // (a refused refresh leaves it valid).
    const deadline = Date.now() + 20000;
    while (busyAnswers.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(busyAnswers.length >= 2, `the refresh was tried ${busyAnswers.length} time(s)`);
    assert.ok(busyAnswers.every((s) => Number(s) >= 1), 'each 429 carried Retry-After');
    assert.equal(new URL(page.url()).pathname, '/settings');
    assert.equal((await session(page)).refresh_token, was.refresh_token);
  } finally {
    draining = false;
    await drain;
  }
  assert.ok(refused > 0, 'the test kept the allowance used up');

  // The limiter lets the refresh through again: the banner goes and the page loads.
  await bannerGone(page);
  await page.getByRole('heading', { name: 'Settings', level: 1 }).waitFor();
  const renewed = await session(page);
  assert.notEqual(renewed.access_token, 'expired');
  assert.notEqual(renewed.refresh_token, was.refresh_token, 'renewed, not signed out');
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('a refresh answering 503 keeps the session too', async () => {
  const { email } = await seed('ed@lab.org');
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await h.newPage(context, [/status of 503 .*\/api\/refresh/]);
  await signIn(page, email);
  const was = await session(page);
  await expireAccessToken(page);
  // The server sends this 503 when its readers or connections are all taken; stand in for it.
  let answered = 0;
  await page.route('**/api/refresh', (route) => {
    answered += 1;
    return route.fulfill({ status: 503, headers: { 'retry-after': '2', 'content-type': 'application/json' },
      body: JSON.stringify({ status: 503, error: 'SERVICE_UNAVAILABLE', message: 'the server is busy' }) });
  });
  await nav(page, 'Settings').click();
  await page.locator('#net[data-state="busy"]').waitFor();
  const deadline = Date.now() + 20000;
  while (answered < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.ok(answered >= 2, 'the refresh is tried again after Retry-After');
  assert.equal((await session(page)).refresh_token, was.refresh_token);
  assert.equal(new URL(page.url()).pathname, '/settings');
  await page.unroute('**/api/refresh');
  await bannerGone(page);
  await page.getByRole('heading', { name: 'Settings', level: 1 }).waitFor();
  assert.notEqual((await session(page)).access_token, 'expired');
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('a refresh answering 401 (every session ended elsewhere) signs out to the login page', async () => {
  const { email } = await seed('fa@lab.org');
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await h.newPage(context, [/status of 401 .*\/api\/refresh/]);
  await signIn(page, email);

  // Another client of the same account signs out everywhere: the browser's refresh token dies.
  const other = await h.account(server.url, email, PASSWORD);
  await other.call('DELETE', '/me/sessions');
  assert.equal(await refreshStatus((await session(page)).refresh_token), 401);

  await expireAccessToken(page);
  await nav(page, 'Settings').click();
  await page.waitForURL(/\/login\?next=%2Fsettings$/);
  await page.getByText('Sign in to continue where you were.').waitFor();
  assert.equal(await session(page), null, 'the dead session is forgotten');
  assert.equal(await page.locator('#net').evaluate((el) => el.childElementCount), 0, 'no offline banner');
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('Sign out ends the login on the server; Sign out everywhere ends the other browsers\u2019 too', async () => {
  const { email } = await seed('gu@lab.org');
  const laptop = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const desk = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await h.newPage(laptop, [/status of 401 .*\/api\/(refresh|me|workspaces)/]);
  const other = await h.newPage(desk, [/status of 401 .*\/api\/(refresh|me|workspaces)/]);
  await signIn(page, email);
  await signIn(other, email);

  // Sign out: POST /api/logout with this browser's refresh token, then the login page.
  await nav(page, 'Settings').click();
  await page.getByRole('heading', { name: 'Settings', level: 1 }).waitFor();
  const old = (await session(page)).refresh_token;
  const logout = page.waitForRequest((r) => r.url().endsWith('/api/logout') && r.method() === 'POST');
  await page.getByRole('button', { name: 'Sign out', exact: true }).click();
  assert.deepEqual(JSON.parse((await logout).postData()), { refresh_token: old });
  await page.waitForURL('**/login');
  assert.equal(await session(page), null);
  assert.equal(await refreshStatus(old), 401, 'the signed-out refresh token no longer works');
  const deskToken = (await session(other)).refresh_token;

  // Sign out everywhere from the laptop: the desk's login ends as well.
  await signIn(page, email);
  await nav(page, 'Settings').click();
  await page.getByRole('button', { name: 'Sign out everywhere' }).waitFor();
  const mine = (await session(page)).refresh_token;
  page.once('dialog', (d) => d.accept());
  const ended = page.waitForResponse((r) => r.url().endsWith('/api/me/sessions') && r.request().method() === 'DELETE');
  await page.getByRole('button', { name: 'Sign out everywhere' }).click();
  assert.equal((await ended).status(), 200);
  await page.waitForURL('**/login');
  assert.equal(await session(page), null);
  assert.equal(await refreshStatus(mine), 401);
  assert.equal(await refreshStatus(deskToken), 401, 'the other browser\u2019s refresh token is dead');
  // The desk finds out when its access token runs out: to the login page.
  await expireAccessToken(other);
  await nav(other, 'Settings').click();
  await other.waitForURL(/\/login\?next=/);
  assert.equal(await session(other), null);
  assert.deepEqual([...page.errors, ...other.errors], []);
  await laptop.close();
  await desk.close();
});
