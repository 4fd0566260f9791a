// A run's artifacts on its page: files uploaded through the API are listed (name, size, time),
// each kind previews inline (an image, text, pretty JSON, CSV as a capped table, markdown), a
// download gives back the same bytes, and a hostile HTML or SVG file is shown, never run.

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const h = require('./harness.js');

const OWNER = { email: 'artifacts-owner@lab.org', password: 'artifacts-owner-1' };
// A 1x1 PNG.
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==', 'base64');
const CSV = ['epoch,loss,acc', ...Array.from({ length: 300 }, (_, i) => `${i},${(1 / (i + 1)).toFixed(4)},"0.${i}"`)].join('\n');
const HOSTILE_HTML = '<h1>hi</h1><script>alert("html-script")</script><img src=x onerror="alert(\'html-img\')">';
const HOSTILE_SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10" onload="alert(\'svg-onload\')">'
  + '<script>alert("svg-script")</script><rect width="10" height="10" fill="red"/></svg>';
const BIG_TEXT = 'x'.repeat(1024 * 1024 + 5000);
const BINARY = crypto.randomBytes(300 * 1024);

const FILES = {
  'plots/loss.png': PNG,
  'notes.txt': Buffer.from('first line\nsecond <b>line</b>\n'),
  'config.json': Buffer.from('{"lr":0.1,"layers":[64,32],"name":"<script>x</script>"}'),
  'history.csv': Buffer.from(CSV),
  'README.md': Buffer.from('# Results\n\nThe **best** run.\n\n<script>alert("md")</script>\n'),
  'hostile.html': Buffer.from(HOSTILE_HTML),
  'evil.svg': Buffer.from(HOSTILE_SVG),
  'big.log': Buffer.from(BIG_TEXT),
  'model.bin': BINARY,
};

let server;
let browser;
let run;
let token;

before(async () => {
  server = await h.startServer();
  browser = await h.launch();
  const owner = await h.account(server.url, OWNER.email, OWNER.password);
  const ws = await owner.call('POST', '/workspaces', { name: 'artifact-lab' });
  run = await owner.call('POST', '/experiments', { name: 'with-files', workspaceId: ws.id });
  token = owner.credentials.token;
  for (const [name, body] of Object.entries(FILES)) {
    const path = name.split('/').map(encodeURIComponent).join('/');
    const res = await fetch(`${server.url}/api/experiments/${run.id}/artifacts/${path}`, {
      method: 'PUT', body, headers: { authorization: `Bearer ${owner.credentials.token}`, 'content-type': 'application/octet-stream' },
    });
    assert.ok(res.status < 300, `PUT ${name}: ${res.status} ${await res.text()}`);
  }
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

async function signedIn() {
  const ctx = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  const page = await h.newPage(ctx);
  page.dialogs = []; // anything but the delete confirmation: an artifact's script would land here
  page.on('dialog', async (d) => {
    if (d.type() === 'confirm' && d.message().startsWith('Delete the artifact')) { await d.accept(); return; }
    page.dialogs.push(d.message());
    await d.dismiss();
  });
  await page.goto(`${server.url}/login`);
  await page.getByLabel('E-mail').fill(OWNER.email);
  await page.getByLabel('Password', { exact: true }).fill(OWNER.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/workspaces');
  await page.goto(`${server.url}/experiments/${run.id}`);
  await page.locator('table[aria-label="Artifacts"] tbody tr').first().waitFor();
  return { ctx, page };
}

const row = (page, name) => page.locator(`tr[data-artifact="${name}"]`);

async function preview(page, name) {
  await row(page, name).getByRole('button', { name: 'Preview' }).click();
  await page.locator(`.artifact-preview[data-path="${name}"]`).waitFor();
  return page.locator('.artifact-preview');
}

test('the run page lists every artifact with its size and time', async () => {
  const { ctx, page } = await signedIn();
  try {
    const names = await page.locator('table[aria-label="Artifacts"] tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.artifact));
    assert.deepEqual(names.sort(), Object.keys(FILES).sort());
    assert.match(await row(page, 'model.bin').innerText(), /300 KiB/);
    assert.match(await row(page, 'big.log').innerText(), /1\.0 MiB/);
    assert.match(await row(page, 'notes.txt').innerText(), /30 B/);
    assert.match(await row(page, 'notes.txt').innerText(), /\d{4}|\d:\d\d/); // a time
    // A binary file offers a download, not a preview.
    assert.equal(await row(page, 'model.bin').getByRole('button', { name: 'Preview' }).count(), 0);
    assert.deepEqual(page.errors, []);
  } finally {
    await ctx.close();
  }
});

test('each kind previews inline: image, text, pretty JSON, CSV table, markdown', async () => {
  const { ctx, page } = await signedIn();
  try {
    let box = await preview(page, 'plots/loss.png');
    const img = box.locator('img.artifact-image');
    await img.waitFor();
    await page.waitForFunction(() => document.querySelector('img.artifact-image').complete);
    assert.equal(await img.evaluate((el) => el.naturalWidth), 1, 'the PNG decoded');

    box = await preview(page, 'notes.txt');
    assert.equal(await box.locator('pre.artifact-text').textContent(), 'first line\nsecond <b>line</b>\n');
    assert.equal(await box.locator('b').count(), 0, 'markup in text stays text');

    box = await preview(page, 'config.json');
    const pretty = await box.locator('pre.artifact-text').textContent();
    assert.equal(pretty, JSON.stringify(JSON.parse(FILES['config.json'].toString()), null, 2));

    box = await preview(page, 'history.csv');
    const table = box.locator('table.artifact-csv');
    assert.deepEqual(await table.locator('thead th').allTextContents(), ['epoch', 'loss', 'acc']);
    assert.equal(await table.locator('tbody tr').count(), 199, 'capped, not all 300 rows');
    assert.deepEqual(await table.locator('tbody tr').first().locator('td').allTextContents(), ['0', '1.0000', '0.0']);
    assert.match(await box.innerText(), /Showing at most 199 rows/);

    box = await preview(page, 'README.md');
    assert.equal(await box.locator('.md h1, .md h2, .md h3').first().textContent(), 'Results');
    assert.equal(await box.locator('.md strong').textContent(), 'best');

    box = await preview(page, 'big.log');
    assert.equal((await box.locator('pre.artifact-text').textContent()).length, 1024 * 1024, 'cut at 1 MiB');
    assert.match(await box.innerText(), /Showing the first 1\.0 MiB/);

    assert.deepEqual(page.dialogs, []);
    assert.deepEqual(page.errors, []);
    await h.screenshot(page, 'artifacts-preview');
  } finally {
    await ctx.close();
  }
});

test('a hostile HTML or SVG artifact is shown, never run', async () => {
  const { ctx, page } = await signedIn();
  try {
    let box = await preview(page, 'hostile.html');
    assert.equal(await box.locator('pre.artifact-text').textContent(), HOSTILE_HTML);
    box = await preview(page, 'evil.svg');
    await page.waitForFunction(() => {
      const img = document.querySelector('.artifact-preview img');
      return img && img.complete;
    });
    assert.match(await box.locator('img').getAttribute('src'), /^data:image\/svg\+xml;base64,/);
    box = await preview(page, 'README.md');
    assert.match(await box.innerText(), /<script>alert\("md"\)<\/script>/);
    await page.waitForTimeout(300); // an onload or onerror handler would have fired by now
    assert.deepEqual(page.dialogs, []);
    assert.equal(await page.locator('#app script, main script, .artifact-preview script').count(), 0);
    assert.deepEqual(page.errors, []);
  } finally {
    await ctx.close();
  }
});

test('a download gives back the same bytes', async () => {
  const { ctx, page } = await signedIn();
  try {
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      row(page, 'model.bin').getByRole('button', { name: 'Download' }).click(),
    ]);
    assert.equal(download.suggestedFilename(), 'model.bin');
    const saved = fs.readFileSync(await download.path());
    assert.ok(saved.equals(BINARY), 'downloaded bytes equal the uploaded ones');
    assert.deepEqual(page.errors, []);
  } finally {
    await ctx.close();
  }
});

test('an editor deletes an artifact after confirming, and it leaves the list and the server', async () => {
  const { ctx, page } = await signedIn();
  try {
    await row(page, 'notes.txt').getByRole('button', { name: 'Delete' }).click();
    await row(page, 'notes.txt').waitFor({ state: 'detached' });
    assert.equal(await row(page, 'config.json').count(), 1, 'the others stay');
    const res = await fetch(`${server.url}/api/experiments/${run.id}/artifacts/notes.txt`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(res.status, 404);
    assert.deepEqual(page.dialogs, []);
    assert.deepEqual(page.errors, []);
  } finally {
    await ctx.close();
  }
});
