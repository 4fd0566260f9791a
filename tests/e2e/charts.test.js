// Charts as a researcher reads them, in headless Chromium against the real binary: compare a
// live run beside finished ones and zoom, switch the x axis, see where a run diverged, read a log
// axis, use the pages on a phone; then the charts people expect from W&B: sections by prefix,
// panels of several metrics, a tooltip listing every run, relative time, markers and faint raw
// lines under smoothing. Axis labels are read from the canvas: an init script records the text
// uPlot draws on each canvas since it last cleared it.

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness.js');

const EMAIL = 'charts@lab.org';
const PASSWORD = 'charts-password-1';
const STEPS = 300;
const GAP = [100, 150]; // steps where the diverging run logs NaN before it recovers
const RUN_B = [217, 72, 15]; // runColor(1) of the light theme

let server;
let browser;
let desktop;
const state = {};
const pages = [];

/** Every piece of text drawn on a canvas since its last full clear: canvas.labels. */
function recordCanvasText() {
  const P = CanvasRenderingContext2D.prototype;
  const { fillText, clearRect } = P;
  P.fillText = function recorded(text, ...rest) {
    (this.canvas.labels ||= []).push(String(text));
    return fillText.call(this, text, ...rest);
  };
  P.clearRect = function cleared(x, y, w, hh) {
    if (x === 0 && y === 0 && w >= this.canvas.width && hh >= this.canvas.height) this.canvas.labels = [];
    return clearRect.call(this, x, y, w, hh);
  };
}

function curve(name, steps, f) {
  const logs = [];
  for (let s = 0; s < steps; s++) {
    const v = f(s);
    logs.push({ msg_id: `${name}-${s}`, name, value: Number.isFinite(v) ? v : String(v), step: s });
  }
  return logs;
}

before(async () => {
  server = await h.startServer();
  browser = await h.launch();
  const api = await h.account(server.url, EMAIL, PASSWORD);
  const ws = await api.call('POST', '/workspaces', { name: 'sweeps' });
  state.api = api;
  state.workspace = ws.id;
  const make = async (name, hp, logs) => {
    const exp = await api.call('POST', '/experiments', { name, workspaceId: ws.id, hyperparams: hp });
    await h.logBatches(api, exp.id, logs);
    return exp;
  };
  // Two finished runs, the second diverging for a while (NaN), and a live one only 10 steps in.
  const loss = (k) => (s) => 2 * Math.exp(-s * k / 100) + 0.01;
  state.a = await make('steady', [{ key: 'lr', value: 0.01 }], [
    ...curve('train/loss', STEPS, loss(1)), ...curve('val/loss', STEPS, loss(0.8)), ...curve('val/acc', STEPS, (s) => s / STEPS),
    ...curve('noise', STEPS, (s) => 1 + 0.5 * Math.sin(s * 1.3)),
    { msg_id: 'r', name: 'test/balanced_accuracy_score_macro', value: 0.91 }]);
  state.b = await make('diverging', [{ key: 'lr', value: 0.1 }], [
    ...curve('train/loss', STEPS, (s) => (s >= GAP[0] && s < GAP[1] ? NaN : loss(2)(s))),
    ...curve('val/loss', STEPS, loss(1.5)), ...curve('val/acc', STEPS, (s) => s / STEPS / 2),
    ...curve('noise', STEPS, (s) => 0.9 + 0.1 * Math.sin(s))]);
  state.c = await make('live', [{ key: 'lr', value: 0.001 }], [...curve('train/loss', 10, loss(0.5)), ...curve('val/loss', 10, loss(0.5))]);
  state.compare = `/compare?ids=${[state.a.id, state.b.id, state.c.id].join(',')}`;

  desktop = await browser.newContext({ viewport: { width: 1440, height: 900 }, colorScheme: 'light', deviceScaleFactor: 1 });
  await desktop.addInitScript(recordCanvasText);
  const page = await open(desktop);
  await page.goto(`${server.url}/login`);
  await page.getByLabel('E-mail').fill(EMAIL);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/workspaces');
  state.page = page;
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

async function open(context) {
  const page = await h.newPage(context);
  pages.push(page);
  return page;
}

const card = (page, metric) => page.locator(`.chart[data-metric="${metric}"]`);
const drawn = (page, metric) => page.locator(`.chart[data-metric="${metric}"][data-state="drawn"]`).first().waitFor();
const labels = (page, metric) => card(page, metric).first().locator('canvas').evaluate((c) => c.labels || []);

/** Drags across the plot of `metric` from fraction a to b of its width. */
async function dragZoom(page, metric, a, b) {
  await card(page, metric).first().scrollIntoViewIfNeeded();
  const plot = await card(page, metric).first().locator('.u-over').boundingBox();
  await page.mouse.move(plot.x + plot.width * a, plot.y + plot.height / 2);
  await page.mouse.down();
  await page.mouse.move(plot.x + plot.width * b, plot.y + plot.height / 2, { steps: 5 });
  await page.mouse.up();
  return plot;
}

/** Hovers the plot of `metric` at fraction `at` of its width; returns the readout's text. */
async function hover(page, metric, at) {
  await card(page, metric).first().scrollIntoViewIfNeeded();
  const plot = await card(page, metric).first().locator('.u-over').boundingBox();
  await page.mouse.move(plot.x + plot.width * at, plot.y + plot.height / 2);
  return card(page, metric).first().locator('.readout').textContent();
}

test('bug: zooming on compare where the live run has no points zooms, and nothing throws', async () => {
  const { page } = state;
  await page.goto(`${server.url}${state.compare}`);
  await drawn(page, 'train/loss');
  await page.waitForFunction(() => [...document.querySelectorAll('.chart')].every((c) => c.dataset.state === 'drawn'));
  const zoomed = page.waitForResponse((r) => /\/series\?.*from=/.test(r.url()), { timeout: 5000 }).catch(() => null);
  await dragZoom(page, 'train/loss', 0.5, 0.8); // steps ~150..240: the live run stopped at 9
  await zoomed;
  await page.waitForTimeout(500);
  for (const at of [0.2, 0.5, 0.8]) await hover(page, 'train/loss', at);
  const text = await hover(page, 'train/loss', 0.5);
  assert.deepEqual(page.errors, []);
  const step = Number(/step (\d+)/.exec(text)?.[1]);
  assert.ok(step > 140 && step < 250, `the hovered step (${text}) is inside the zoomed range`);
  assert.deepEqual(page.errors, []);
});

test('bug: switching the x axis to Time rebuilds the chart with time labels', async () => {
  const { page } = state;
  for (const url of [`/experiments/${state.a.id}`, state.compare]) {
    await page.goto(`${server.url}${url}`);
    await drawn(page, 'train/loss');
    assert.ok((await labels(page, 'train/loss')).includes('100'), 'step labels before the switch');
    await page.getByRole('button', { name: 'Wall time' }).click();
    await page.waitForURL(/x=time/);
    await page.waitForFunction(() => (document.querySelector('.chart[data-metric="train/loss"] canvas')?.labels || []).some((l) => /:\d\d/.test(l)));
    const drawnLabels = await labels(page, 'train/loss');
    assert.ok(!drawnLabels.some((l) => /\dG$/.test(l)), `${url}: no tick reads like 1800G: ${drawnLabels}`);
  }
  assert.deepEqual(page.errors, []);
});

test('bug: compare leaves a gap where a run logged NaN, and its readout keeps that run', async () => {
  const { page } = state;
  await page.goto(`${server.url}${state.compare}`);
  await drawn(page, 'train/loss');
  await page.waitForTimeout(200);
  const middle = (GAP[0] + GAP[1]) / 2 / (STEPS - 1);
  const inGap = await card(page, 'train/loss').locator('canvas').first().evaluate((canvas, [at, rgb]) => {
    const over = canvas.parentElement.querySelector('.u-over');
    const box = over.getBoundingClientRect();
    const cbox = canvas.getBoundingClientRect();
    const k = canvas.width / cbox.width;
    const x0 = Math.round((box.left - cbox.left + box.width * at) * k);
    const top = Math.round((box.top - cbox.top) * k);
    const bottom = Math.round((box.top - cbox.top + box.height - 14) * k); // above the NaN markers
    const { data } = canvas.getContext('2d').getImageData(x0 - 3, top, 7, bottom - top);
    let n = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (Math.abs(data[i] - rgb[0]) + Math.abs(data[i + 1] - rgb[1]) + Math.abs(data[i + 2] - rgb[2]) <= 48) n++;
    }
    return n;
  }, [middle, RUN_B]);
  assert.equal(inGap, 0, 'no line of the diverging run is drawn across its NaN steps');
  const text = await hover(page, 'train/loss', middle);
  assert.match(text, /diverging NaN/, `the readout names the diverged run: ${text}`);
  assert.match(text, /steady \d/);
});

test('bug: a log y axis labels its minor ticks with nothing, not "–"', async () => {
  const { page } = state;
  for (const url of [`/experiments/${state.a.id}?scale=log`, `${state.compare}&scale=log`]) {
    await page.goto(`${server.url}${url}`);
    await drawn(page, 'train/loss');
    await page.waitForTimeout(200);
    const drawnLabels = await labels(page, 'train/loss');
    assert.ok(drawnLabels.includes('1'), `${url}: the decade 1 is labelled: ${drawnLabels}`);
    assert.ok(!drawnLabels.includes('–'), `${url}: a tick is labelled "–": ${drawnLabels}`);
  }
});

test('bug: at 375 px run names stay readable and compare does not overflow', async () => {
  const phone = await browser.newContext({
    viewport: { width: 375, height: 812 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
    storageState: await desktop.storageState(),
  });
  const p = await open(phone);
  // Six runs named alike with many hyperparameters: the table has to scroll, not squeeze names.
  for (let i = 0; i < 4; i++) {
    await state.api.call('POST', '/experiments', { name: 'breast-cancer-logreg', workspaceId: state.workspace,
      hyperparams: [{ key: 'C', value: 10 ** (i - 2) }, { key: 'penalty', value: 'l2' }, { key: 'solver', value: 'lbfgs' },
        { key: 'max_iter', value: 1000 }, { key: 'class_weight', value: 'balanced' }] });
  }
  await p.goto(`${server.url}/workspaces/${state.workspace}`);
  await p.locator('table[aria-label="Experiments"] tbody tr').nth(5).waitFor();
  const cell = await p.locator('td.name', { hasText: 'breast-cancer-logreg' }).first().evaluate((td) => {
    const r = td.getBoundingClientRect();
    const a = td.querySelector('a').getBoundingClientRect();
    return { width: r.width, linkHeight: a.height };
  });
  assert.ok(cell.width >= 100, `a name cell is ${cell.width} px wide`);
  assert.ok(cell.linkHeight <= 60, `a name takes ${cell.linkHeight} px of height (more than three lines)`);
  assert.ok(await p.evaluate(() => document.documentElement.scrollWidth) <= 375);

  await p.goto(`${server.url}${state.compare}`);
  await drawn(p, 'train/loss');
  const width = await p.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 375, `compare is ${width} px wide at 375 px`);
  await phone.close();
});

/** Pixels of `rgb` (within `tol`) in a box of a chart's canvas given in fractions of its plot. */
function pixelsIn(page, metric, rgb, box, tol = 48, alpha = [200, 255]) {
  return card(page, metric).locator('canvas').first().evaluate((canvas, [target, b, t, a]) => {
    const over = canvas.parentElement.querySelector('.u-over').getBoundingClientRect();
    const c = canvas.getBoundingClientRect();
    const k = canvas.width / c.width;
    const x0 = Math.round((over.left - c.left + over.width * b.x0) * k);
    const x1 = Math.round((over.left - c.left + over.width * b.x1) * k);
    const y0 = Math.round((over.top - c.top + over.height * b.y0) * k);
    const y1 = Math.round((over.top - c.top + over.height * b.y1) * k);
    const { data } = canvas.getContext('2d').getImageData(x0, y0, Math.max(1, x1 - x0), Math.max(1, y1 - y0));
    let n = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] < a[0] || data[i + 3] > a[1]) continue;
      if (Math.abs(data[i] - target[0]) + Math.abs(data[i + 1] - target[1]) + Math.abs(data[i + 2] - target[2]) <= t) n++;
    }
    return n;
  }, [rgb, box, tol, alpha]);
}

test('the run page groups charts in sections by prefix; a collapsed section stays collapsed', async () => {
  const { page } = state;
  await page.goto(`${server.url}/experiments/${state.a.id}`);
  await drawn(page, 'val/acc');
  const sections = await page.locator('.chart-section[data-section]').evaluateAll((els) => els.map((e) => [e.dataset.section, [...e.querySelectorAll('.chart')].map((c) => c.dataset.metric)]));
  assert.deepEqual(sections, [['', ['noise']], ['train', ['train/loss']], ['val', ['val/acc', 'val/loss']]]);
  await page.getByRole('button', { name: 'val' }).click();
  await page.waitForURL(/collapsed=val/);
  assert.equal(await card(page, 'val/loss').isVisible(), false);
  await page.reload();
  await drawn(page, 'train/loss');
  assert.equal(await page.getByRole('button', { name: 'val' }).getAttribute('aria-expanded'), 'false');
  assert.equal(await card(page, 'val/loss').isVisible(), false);
  await page.getByRole('button', { name: 'val' }).click();
  await page.waitForURL((u) => !u.search.includes('collapsed'));
  await card(page, 'val/loss').waitFor();
});

test('a panel of two metrics is made on the run page, kept in the URL and for the workspace', async () => {
  const { page } = state;
  await page.goto(`${server.url}/experiments/${state.a.id}`);
  await drawn(page, 'train/loss');
  await page.getByText('Add panel').click();
  await page.getByLabel('Find metrics for the panel').fill('loss');
  await page.getByRole('group', { name: 'Metrics of the panel' }).getByLabel('train/loss').check();
  await page.getByRole('group', { name: 'Metrics of the panel' }).getByLabel('val/loss').check();
  await page.getByRole('button', { name: 'Create panel' }).click();
  const panel = page.locator('.panel-chart[data-panel="train/loss,val/loss"][data-state="drawn"]');
  await panel.waitFor();
  await page.waitForURL(/panels=/);
  assert.deepEqual(JSON.parse(new URL(page.url()).searchParams.get('panels')), [['train/loss', 'val/loss']]);
  const stored = await page.evaluate((ws) => localStorage.getItem(`tora.panels.${ws}`), state.workspace);
  assert.deepEqual(JSON.parse(stored), [['train/loss', 'val/loss']]);
  // The tooltip lists both metrics, largest first (val/loss decays slower).
  await panel.scrollIntoViewIfNeeded();
  const plot = await panel.locator('.u-over').boundingBox();
  await page.mouse.move(plot.x + plot.width * 0.3, plot.y + plot.height / 2);
  const tip = panel.locator('.chart-tip');
  await tip.waitFor();
  assert.deepEqual(await tip.locator('.tip-label').allTextContents(), ['val/loss', 'train/loss']);
  await h.screenshot(page, 'charts-experiment-panel');

  // A link with more panels than the bound shows the first 12, each with at most 8 metrics.
  const many = Array.from({ length: 15 }, (_, i) => Array.from({ length: 10 }, (__, k) => (k ? `m${i}-${k}` : 'train/loss')));
  await page.goto(`${server.url}/experiments/${state.a.id}?panels=${encodeURIComponent(JSON.stringify(many))}`);
  await page.locator('.panel-chart').nth(11).waitFor();
  assert.equal(await page.locator('.panel-chart').count(), 12);
  const sizes = await page.locator('.panel-chart').evaluateAll((els) => els.map((e) => e.dataset.panel.split(',').length));
  assert.ok(sizes.every((n) => n === 8), `metrics per panel: ${sizes}`);
  await page.goto(`${server.url}/experiments/${state.a.id}?panels=not-json`);
  await drawn(page, 'train/loss');
  assert.equal(await page.locator('.panel-chart').count(), 0);
});

test('compare: the workspace panel, a tooltip of every run by value, NaN markers, faint raw lines', async () => {
  const { page } = state;
  await page.goto(`${server.url}${state.compare}`); // no panels in the link: the workspace's are used
  const panel = page.locator('.panel-chart[data-panel="train/loss,val/loss"][data-state="drawn"]');
  await panel.waitFor();
  await drawn(page, 'train/loss');
  await page.waitForFunction(() => [...document.querySelectorAll('.chart')].every((c) => c.dataset.state === 'drawn'));

  // Hovering step ~50: the live run ended at 9, the two others listed by value, largest first.
  await hover(page, 'train/loss', 50 / (STEPS - 1));
  const tip = card(page, 'train/loss').locator('.chart-tip');
  await tip.waitFor();
  assert.deepEqual(await tip.locator('.tip-label').allTextContents(), ['steady', 'diverging']);
  const values = (await tip.locator('.tip-value').allTextContents()).map(Number);
  assert.ok(values[0] > values[1], `sorted by value: ${values}`);
  await hover(page, 'train/loss', 5 / (STEPS - 1));
  assert.deepEqual((await tip.locator('.tip-label').allTextContents()).sort(), ['diverging', 'live', 'steady']);
  await h.screenshot(page, 'charts-compare-tooltip');

  // The diverged steps carry markers in the run's colour along the bottom.
  const middle = (GAP[0] + GAP[1]) / 2 / (STEPS - 1);
  const markers = await pixelsIn(page, 'train/loss', RUN_B, { x0: middle - 0.05, x1: middle + 0.05, y0: 0.9, y1: 1 });
  assert.ok(markers > 20, `NaN markers of the diverging run: ${markers} pixels`);

  // Under smoothing the raw line stays, faint: the run's colour at a low alpha on the canvas, where
  // only the raw zigzag reaches (the smoothed line stays near the middle).
  const RUN_A = [36, 99, 216];
  const peaks = { x0: 0.1, x1: 0.9, y0: 0, y1: 0.3 };
  const opaque = () => pixelsIn(page, 'noise', RUN_A, peaks, 30, [200, 255]);
  const faint = () => pixelsIn(page, 'noise', RUN_A, peaks, 30, [20, 130]);
  assert.ok(await opaque() > 100, 'the raw line, unsmoothed');
  await page.getByLabel('Smoothing (EMA weight)').fill('0.9');
  await page.waitForURL(/smooth=0.9/);
  await page.waitForTimeout(200);
  const [o, f] = [await opaque(), await faint()];
  assert.ok(f > 100 && o < f / 5, `the raw line stays, faint, under the smoothed one (${o} opaque, ${f} faint pixels)`);
  await page.getByLabel('Smoothing (EMA weight)').fill('0');

  // Removing the panel removes it from the link and from the workspace's saved panels.
  await page.getByRole('button', { name: 'Remove the panel of train/loss, val/loss' }).click();
  await page.waitForURL((u) => !u.search.includes('panels='));
  assert.equal(await page.locator('.panel-chart').count(), 0);
  const key = `tora.panels.${state.workspace}`;
  assert.equal(await page.evaluate((k) => localStorage.getItem(k), key), '[]');
  await page.evaluate((k) => localStorage.setItem(k, '[["train/loss","val/loss"]]'), key); // for the screenshots
});

test('x can be the time since each run started', async () => {
  const { page } = state;
  for (const url of [`/experiments/${state.a.id}`, state.compare]) {
    await page.goto(`${server.url}${url}`);
    await drawn(page, 'train/loss');
    await page.getByRole('button', { name: 'Relative' }).click();
    await page.waitForURL(/x=rel/);
    await page.waitForFunction(() => (document.querySelector('.chart[data-metric="train/loss"] canvas')?.labels || []).some((l) => /^\d+(\.\d+)?(ms|s)$/.test(l)));
    const text = await hover(page, 'train/loss', 0.5);
    assert.match(text, /^\+\d/, `the readout gives the time since the start: ${text}`);
    const zoomed = page.waitForResponse((r) => /\/series\?.*from=/.test(r.url()));
    await dragZoom(page, 'train/loss', 0.2, 0.8);
    await zoomed;
    await page.waitForURL(/from=/);
    await drawn(page, 'train/loss');
  }
  assert.deepEqual(page.errors, []);
});

test('compare follows the runs live: a point logged after the page opened appears without a reload', async () => {
  const { page } = state;
  await page.goto(`${server.url}${state.compare}`);
  await drawn(page, 'val/loss');
  await page.locator('main[data-stream="live"]').waitFor();
  await page.evaluate(() => { window.sameDocument = true; });
  const points = () => card(page, 'val/loss').getAttribute('data-points').then(Number);
  const before = await points();
  // The live run logs two more steps of val/loss, a second apart (progress is paced per run).
  await state.api.call('POST', `/experiments/${state.c.id}/logs`, { msg_id: 'more-10', name: 'val/loss', value: 0.5, step: 10 });
  await page.waitForFunction((n) => Number(document.querySelector('.chart[data-metric="val/loss"]').dataset.points) === n, before + 1, { timeout: 15000 });
  await state.api.call('POST', `/experiments/${state.c.id}/logs`, { msg_id: 'more-11', name: 'val/loss', value: 0.4, step: 11 });
  await page.waitForFunction((n) => Number(document.querySelector('.chart[data-metric="val/loss"]').dataset.points) === n, before + 2, { timeout: 15000 });
  const text = await hover(page, 'val/loss', 11 / (STEPS - 1));
  assert.match(text, /live 0\.4/, `the new point is in the readout: ${text}`);
  assert.equal(await page.evaluate(() => window.sameDocument), true, 'the page was reloaded');
  assert.deepEqual(page.errors, []);
});

test('compare says which runs are still running and which have ended', async () => {
  const { page } = state;
  await state.api.call('POST', `/experiments/${state.a.id}/finish`, { state: 'finished' });
  await state.api.call('POST', `/experiments/${state.b.id}/finish`, { state: 'failed' });
  await page.goto(`${server.url}${state.compare}`);
  await drawn(page, 'val/loss');
  const legend = page.locator('.legend[aria-label="Runs"]');
  const states = await legend.locator('[data-state]').evaluateAll((els) => els.map((e) => e.dataset.state));
  assert.deepEqual(states, ['finished', 'failed', 'running']);
  assert.match(await legend.textContent(), /steady.*finished.*diverging.*failed.*live.*running/s);
});

test('screenshots: run page, compare and the run table at 1440 and 375 px, light and dark', async () => {
  const shots = [
    ['experiment', `/experiments/${state.b.id}?smooth=0.6`, '.chart[data-metric="train/loss"][data-state="drawn"]'],
    ['compare', `${state.compare}&smooth=0.6`, '.chart[data-metric="train/loss"][data-state="drawn"]'],
    ['table', `/workspaces/${state.workspace}`, 'table[aria-label="Experiments"] tbody tr'],
  ];
  for (const scheme of ['light', 'dark']) {
    for (const width of [1440, 375]) {
      const phone = width < 640;
      const context = await browser.newContext({
        viewport: { width, height: phone ? 812 : 900 }, colorScheme: scheme, deviceScaleFactor: phone ? 2 : 1,
        isMobile: phone, hasTouch: phone, storageState: await desktop.storageState(),
      });
      const p = await open(context);
      for (const [name, url, ready] of shots) {
        await p.goto(`${server.url}${url}`);
        await p.locator(ready).first().waitFor();
        await p.waitForFunction(() => [...document.querySelectorAll('.chart')].every((c) => c.dataset.state === 'drawn'));
        if (name !== 'table') await hover(p, 'train/loss', 0.4); // the tooltip in the picture
        const scroll = await p.evaluate(() => document.documentElement.scrollWidth);
        assert.ok(scroll <= width, `${name} is ${scroll} px wide at ${width} px`);
        await h.screenshot(p, `charts-${name}-${width}-${scheme}`);
      }
      await context.close();
    }
  }
});

test('no page logged a console error', () => {
  assert.deepEqual(pages.flatMap((p) => p.errors), []);
});
