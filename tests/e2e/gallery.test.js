// Every page of the dashboard at 1440 px and at 375 px, in the light and the dark theme: each one
// is drawn without an error, fits its width (no sideways scrolling), and leaves a screenshot in
// test-output/e2e/gallery/ for a person to look at.

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./harness.js');

const OWNER = { email: 'gallery-owner@lab.org', password: 'gallery-owner-1' };
const GUEST = { email: 'gallery-guest@lab.org', password: 'gallery-guest-1' };
const VIEWPORTS = [
  ['1440', { viewport: { width: 1440, height: 900 } }],
  ['375', { viewport: { width: 375, height: 812 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true }],
];
const THEMES = ['light', 'dark'];

let server;
let browser;
const seed = {};

function curve(name, steps, f) {
  const logs = [];
  for (let s = 0; s < steps; s++) logs.push({ msg_id: `${name}-${s}`, name, value: f(s), step: s });
  return logs;
}

before(async () => {
  server = await h.startServer();
  browser = await h.launch();
  const owner = await h.account(server.url, OWNER.email, OWNER.password);
  const guest = await h.account(server.url, GUEST.email, GUEST.password);
  const ws = await owner.call('POST', '/workspaces', { name: 'vision-lab', description: 'ResNet sweeps' });
  const empty = await owner.call('POST', '/workspaces', { name: 'empty-lab' });
  const runs = [];
  for (const [i, lr] of [0.1, 0.01, 0.001].entries()) {
    const run = await owner.call('POST', '/experiments', {
      name: 'resnet-sweep', workspaceId: ws.id, tags: ['sweep', i === 0 ? 'baseline' : 'tuned'],
      description: '## Notes\n\nA *sweep* over `lr`, with **batch** fixed:\n\n- seed 1\n- [paper](https://arxiv.org/abs/1512.03385)',
      hyperparams: [{ key: 'lr', value: lr }, { key: 'batch', value: 128 }, { key: 'depth', value: 18 + 16 * i }],
      // what the SDK records (python/src/tora/_metadata.py), so the run page shows its panel
      metadata: {
        git: { commit: '3f9c2a1b7e5d4c3b2a19f8e7d6c5b4a392817161', branch: 'main', dirty: i === 2 },
        command: `python train.py --lr ${lr} --depth ${18 + 16 * i}`, host: 'gpu-node-3',
        python: '3.11.2', platform: 'Linux-6.1.0-x86_64', sdk: 'tora 0.1.0',
        packages: { torch: '2.5.1', numpy: '2.1.3' },
      },
    });
    const k = 1 + i;
    const logs = curve('train/loss', 300, (s) => 2 * Math.exp(-s * k / 100) + 0.02 * Math.sin(s))
      .concat(curve('val/loss', 30, (s) => 2.1 * Math.exp(-s * 10 * k / 100)).map((l) => ({ ...l, step: l.step * 10 })))
      .concat(curve('train/accuracy', 300, (s) => 1 - Math.exp(-s * k / 120)))
      .concat([{ msg_id: 'final', name: 'test_accuracy', value: 0.8 + k / 20 }]);
    await h.logBatches(owner, run.id, logs);
    runs.push(run);
  }
  await owner.call('POST', '/workspace-invitations', { workspaceId: ws.id, email: 'someone@lab.org', roleId: 3 });
  const forGuest = await owner.call('POST', '/workspace-invitations', { workspaceId: ws.id, email: GUEST.email, roleId: 2 });
  await owner.call('POST', '/api-keys', { name: 'laptop' });
  Object.assign(seed, { owner, guest, ws, empty, runs, forGuest });
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

/** A signed-in browser context for `who`, at the given size and theme. */
async function context(who, size, theme) {
  const ctx = await browser.newContext({ ...size, colorScheme: theme });
  const page = await ctx.newPage();
  await page.goto(`${server.url}/login`);
  await page.getByLabel('E-mail').fill(who.email);
  await page.getByLabel('Password', { exact: true }).fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/workspaces');
  await page.close();
  return ctx;
}

function pagesToVisit() {
  const { ws, empty, runs, forGuest } = seed;
  return [
    // [name, who (null = signed out), path, a selector that shows the page is drawn]
    ['login', null, '/login', 'form'],
    ['signup', null, '/signup', 'form'],
    ['workspaces', OWNER, '/workspaces', 'h1'],
    ['workspace-empty', OWNER, `/workspaces/${empty.id}`, 'main h1'],
    ['workspace-table', OWNER, `/workspaces/${ws.id}`, 'table[aria-label="Experiments"] tbody tr'],
    ['members', OWNER, `/workspaces/${ws.id}/members`, 'table'],
    ['experiment', OWNER, `/experiments/${runs[0].id}`, '.chart[data-state="drawn"]'],
    ['compare', OWNER, `/compare?ids=${runs.map((r) => r.id).join(',')}`, '.chart[data-state="drawn"]'],
    ['settings', OWNER, '/settings', 'table[aria-label="API keys"]'],
    ['invitation', GUEST, new URL(forGuest.link).pathname, 'main h1'],
  ];
}

for (const [width, size] of VIEWPORTS) {
  for (const theme of THEMES) {
    test(`every page at ${width} px, ${theme}`, async () => {
      const contexts = new Map();
      const problems = [];
      try {
        for (const [name, who, path, ready] of pagesToVisit()) {
          const key = who ? who.email : 'anonymous';
          if (!contexts.has(key)) {
            contexts.set(key, who ? await context(who, size, theme) : await browser.newContext({ ...size, colorScheme: theme }));
          }
          const page = await h.newPage(contexts.get(key));
          await page.goto(`${server.url}${path}`);
          await page.locator(ready).first().waitFor();
          await page.waitForLoadState('networkidle');
          const scroll = await page.evaluate(() => document.documentElement.scrollWidth);
          if (scroll > size.viewport.width) problems.push(`${name} is ${scroll} px wide at ${width} px`);
          if (theme === 'dark') {
            const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
            if (bg === 'rgb(255, 255, 255)') problems.push(`${name} has a white background in the dark theme`);
          }
          await h.screenshot(page, `gallery/${name}-${width}-${theme}`);
          problems.push(...page.errors.map((e) => `${name}: ${e}`));
          await page.close();
        }
      } finally {
        for (const ctx of contexts.values()) await ctx.close();
      }
      assert.deepEqual(problems, []);
    });
  }
}
