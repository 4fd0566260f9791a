// The run table as a researcher uses it after a grid search, in headless Chromium against the
// real binary: an empty workspace that says how to log the first run from this server; six runs
// with the same name told apart; the columns that matter shown by default; a column picker;
// tags and states that filter; live updates; bulk tag, move and delete; CSV export; and the run
// page's markdown notes, state, times and metadata. Screenshots of each page at 1440 and 375 px,
// light and dark.

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const h = require('./harness.js');

const OWNER = { email: 'cy@lab.org', password: 'cy-password-1' };
const ROWS = 'table[aria-label="Experiments"] tbody tr';

let server;
let browser;
const pages = [];
const allowed = [];

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

/** Whether the server answers `path` with something other than 404 (a feature of a later branch). */
async function serves(api, method, path, body) {
  return (await api.raw(method, path, body)).status !== 404;
}

/** Runs `command` with `input` on its stdin; rejects with its output when it fails. */
function run(command, args, input, options = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${command} exited ${code}:\n${out}`))));
    child.stdin.end(input);
  });
}

/** The header labels of the table's columns. */
function headers(page) {
  return page.$$eval('table[aria-label="Experiments"] thead tr:last-child th', (ths) => ths.map((th) => th.textContent.trim()));
}

/** The text of column `col` (e.g. "metric.val/loss") in every row, by run id. */
function column(page, col) {
  return page.$$eval(ROWS, (trs, c) => Object.fromEntries(trs.map((tr) => [tr.dataset.id, (tr.querySelector(`td[data-col="${c}"]`) || {}).textContent])), col);
}

test('a researcher reads a grid search in the run table', async (t) => {
  const desktop = await browser.newContext({ viewport: { width: 1440, height: 900 }, acceptDownloads: true, colorScheme: 'light' });
  await desktop.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
  const page = await open(desktop);
  const api = await h.account(server.url, OWNER.email, OWNER.password);
  const state = {
    ws: await api.call('POST', '/workspaces', { name: 'cancer-study' }),
    archive: await api.call('POST', '/workspaces', { name: 'archive' }),
  };
  if (!await serves(api, 'POST', `/workspaces/${state.ws.id}/stream-token`)) {
    allowed.push(/status of 404 .*\/stream-token/); // a server without the workspace stream (branch live)
  }
  const table = (q = '') => `${server.url}/workspaces/${state.ws.id}${q}`;

  await t.test('sign in', async () => {
    await page.goto(`${server.url}/login`);
    await page.getByLabel('E-mail').fill(OWNER.email);
    await page.getByLabel('Password', { exact: true }).fill(OWNER.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL('**/workspaces');
  });

  await t.test('an empty workspace shows how to log a first run to this server, and the snippet works as pasted', async () => {
    const ws = await api.call('POST', '/workspaces', { name: 'first-steps' });
    await page.goto(`${server.url}/workspaces/${ws.id}`);
    await page.getByText('No experiments in this workspace yet').waitFor();
    const snippet = await page.locator('pre.snippet').textContent();
    assert.match(snippet, /python3 -m venv \.venv/);
    assert.ok(snippet.includes(`pip install --index-url ${server.url}/sdk/simple/ tora\n`), snippet);
    assert.ok(snippet.includes(`export TORA_BASE_URL=${server.url}/api\n`), snippet);
    assert.match(snippet, /export TORA_API_KEY=/);
    assert.ok(snippet.includes(`workspace_id="${ws.id}"`), 'the example logs into this workspace');
    const python = snippet.split("<<'EOF'\n")[1].split('\nEOF')[0];
    assert.equal(python.split('\n').length, 4, `a 4-line Python example: ${python}`);
    await page.getByRole('button', { name: 'Copy the snippet' }).click();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), snippet);

    // Pasted into a terminal with a new key in place of tora_sk_..., the snippet makes a venv,
    // installs the SDK from this server, and logs a run that appears on the open page.
    const key = (await api.call('POST', '/api-keys', { name: 'snippet' })).key;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tora-snippet-'));
    try {
      await run('bash', ['-e'], snippet.replace('tora_sk_...', key), { cwd: dir, env: { ...process.env, HOME: dir, PIP_DISABLE_PIP_VERSION_CHECK: '1', TORA_BASE_URL: '', TORA_API_KEY: '' } });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    const row = page.locator(ROWS, { hasText: 'first-run' });
    await row.waitFor();
    await row.locator('td[data-col="metric.loss"]', { hasText: '0.01' }).waitFor();
    await row.locator('.state[data-state="finished"]').waitFor();

    await page.goto(`${server.url}/workspaces/${state.archive.id}`);
    await page.getByRole('link', { name: 'create an API key' }).click();
    await page.waitForURL('**/settings');
    await page.getByRole('button', { name: 'Create key' }).waitFor();
  });

  await t.test('six runs of one name are told apart, and the table shows what varies', async () => {
    const runs = [];
    let i = 0;
    for (const C of [0.1, 1, 10]) {
      for (const penalty of ['l1', 'l2']) {
        const exp = await api.call('POST', '/experiments', {
          name: 'breast-cancer-logreg', workspaceId: state.ws.id, tags: i < 2 ? ['best'] : ['sweep'],
          hyperparams: [{ key: 'C', value: C }, { key: 'penalty', value: penalty }, { key: 'solver', value: 'liblinear' }, { key: 'max_iter', value: 100 }],
        });
        const logs = [];
        for (let s = 0; s < 10; s++) {
          const last = s === 9;
          logs.push({ msg_id: `tl${s}`, name: 'train/loss', value: last ? (i + 1) / 16 : 1 / (s + 1), step: s });
          logs.push({ msg_id: `vl${s}`, name: 'val/loss', value: last ? (i + 1) / 8 : 1 / (s + 1), step: s });
          logs.push({ msg_id: `va${s}`, name: 'val/acc', value: 0.5 + s / 40, step: s });
          logs.push({ msg_id: `ta${s}`, name: 'train/acc', value: 0.5 + s / 30, step: s });
          logs.push({ msg_id: `lr${s}`, name: 'lr', value: 0.1 / (s + 1), step: s });
        }
        logs.push({ msg_id: 'r', name: 'test_acc', value: 0.9 + i / 100 });
        await h.logBatches(api, exp.id, logs);
        runs.push(exp);
        i++;
      }
    }
    state.runs = runs;
    await page.goto(table());
    await page.locator(ROWS).nth(5).waitFor();

    // Every row reads "breast-cancer-logreg" plus a short id of its own, the start of its id.
    const names = await page.$$eval(ROWS, (trs) => trs.map((tr) => ({
      id: tr.dataset.id, name: tr.querySelector('td.name a').textContent, suffix: tr.querySelector('.run-id').textContent.trim(),
      label: tr.querySelector('input[type="checkbox"]').getAttribute('aria-label'),
    })));
    assert.equal(names.length, 6);
    for (const n of names) {
      assert.equal(n.name, 'breast-cancer-logreg');
      assert.ok(n.suffix.length >= 6 && n.id.startsWith(n.suffix), `${n.suffix} is the start of ${n.id}`);
    }
    assert.equal(new Set(names.map((n) => n.suffix)).size, 6, 'six different short ids');
    assert.equal(new Set(names.map((n) => n.label)).size, 6, 'six different checkbox labels');

    // Default columns: the hyperparameters that vary (not solver, max_iter), the result, and the
    // main metrics (loss- and accuracy-like: the four of them, not lr).
    const cols = await headers(page);
    for (const c of ['C', 'penalty', 'test_acc', 'train/loss', 'val/loss', 'val/acc', 'train/acc']) assert.ok(cols.includes(c), `${c} is a default column: ${cols}`);
    for (const c of ['solver', 'max_iter', 'lr']) assert.ok(!cols.includes(c), `${c} is not a default column: ${cols}`);
    const groups = await page.$$eval('table[aria-label="Experiments"] tr.groups th.group', (ths) => ths.map((th) => th.textContent));
    assert.deepEqual(groups, ['Hyperparameters', 'Results', 'Metrics (last value)']);
    // The metric cells hold each run's last value.
    const valLoss = await column(page, 'metric.val/loss');
    runs.forEach((r, k) => assert.equal(valLoss[r.id], String((k + 1) / 8), `last val/loss of run ${k}`));
    await h.screenshot(page, 'table-grid-search');
  });

  await t.test('the column picker finds a column by name and the choice stays in the URL', async () => {
    await page.getByLabel('Choose columns').click();
    await page.getByLabel('Find a column').fill('iter');
    const visible = await page.$$eval('.menu-body label', (ls) => ls.filter((l) => !l.hidden && !l.closest('[hidden]')).map((l) => l.textContent));
    assert.deepEqual(visible, ['max_iter']);
    await h.screenshot(page, 'table-column-picker');
    await page.locator('.menu-body label[data-col="hp.max_iter"] input').check();
    await page.waitForURL(/cols=[^&]*hp\.max_iter/);
    assert.ok((await headers(page)).includes('max_iter'));
    await page.reload();
    await page.locator(ROWS).nth(5).waitFor();
    assert.ok((await headers(page)).includes('max_iter'), 'the chosen column survives a reload');
    await page.getByLabel('Choose columns').click();
    await page.getByRole('button', { name: 'Default columns' }).click();
    await page.waitForURL((u) => !u.search.includes('cols='));
    assert.ok(!(await headers(page)).includes('max_iter'));
    await page.getByLabel('Choose columns').click(); // close it
  });

  await t.test('clicking a tag filters the table by it', async () => {
    await page.locator(ROWS).first().waitFor();
    await page.locator(`${ROWS} a.tag`, { hasText: 'best' }).first().click();
    await page.waitForURL(/q=tag%3Abest/);
    await page.waitForFunction((sel) => document.querySelectorAll(sel).length === 2, ROWS);
    assert.equal(await page.getByLabel('Filter experiments').inputValue(), 'tag:best');
    const ids = Object.keys(await column(page, 'hp.C')).sort();
    assert.deepEqual(ids, state.runs.slice(0, 2).map((r) => r.id).sort());
    await page.getByLabel('Filter experiments').fill('');
    await page.getByLabel('Filter experiments').press('Enter');
    await page.waitForFunction((sel) => document.querySelectorAll(sel).length === 6, ROWS);
  });

  await t.test('a column sorted by stays, even where the filter leaves it a single value', async () => {
    await page.goto(table(`?q=${encodeURIComponent('penalty = l1')}`));
    await page.waitForFunction((sel) => document.querySelectorAll(sel).length === 3, ROWS);
    assert.ok(!(await headers(page)).includes('penalty'), 'one value of penalty: not a varying column');
    await page.goto(table(`?q=${encodeURIComponent('penalty = l1')}&sort=hp.penalty`));
    await page.waitForFunction((sel) => document.querySelectorAll(sel).length === 3, ROWS);
    assert.ok((await headers(page)).includes('penalty'), 'the sorted column is shown');
  });

  await t.test('runs in groups: a Group column whose click filters, the group on the run page and in compare, system metrics last and on time', async () => {
    await page.goto(table());
    await page.locator(ROWS).nth(5).waitFor();
    assert.ok(!(await headers(page)).includes('Group'), 'no run in a group: no Group column');

    const ws = await api.call('POST', '/workspaces', { name: 'groups' });
    const made = {};
    for (const [name, group] of [['fold-1', 'cv folds'], ['fold-2', 'cv folds'], ['lr-0.1', 'sweep-lr'], ['alone', null]]) {
      made[name] = await api.call('POST', '/experiments', { name, workspaceId: ws.id, group });
    }
    // fold-1 logs a metric by step, one in a section, and system metrics by the second.
    const start = Date.parse(made['fold-1'].created_at);
    const steps = [0, 1, 2, 3, 4, 5];
    await api.call('POST', `/experiments/${made['fold-1'].id}/points`, {
      metrics: [
        { name: 'loss', steps, values: [6, 5, 4, 3, 2, 1] },
        { name: 'val/loss', steps, values: [7, 6, 5, 4, 3, 2] },
        { name: 'sys/cpu_percent', steps, values: [10, 80, 90, 85, 95, 20], times: steps.map((s) => start + s * 1000) },
        { name: 'sys/gpu0/utilization', steps, values: [0, 99, 98, 97, 99, 0], times: steps.map((s) => start + s * 1000) },
      ],
    });
    await api.call('POST', `/experiments/${made['fold-2'].id}/points`, {
      metrics: [{ name: 'loss', steps, values: [6, 4, 3, 2, 1, 0.5] }, { name: 'sys/cpu_percent', steps, values: [1, 2, 3, 4, 5, 6] }],
    });

    await page.goto(`${server.url}/workspaces/${ws.id}`);
    await page.locator(ROWS).nth(3).waitFor();
    assert.ok((await headers(page)).includes('Group'), `runs in groups: a Group column: ${await headers(page)}`);
    const groups = await page.$$eval(ROWS, (trs) => Object.fromEntries(trs.map((tr) => [tr.querySelector('td.name a').textContent, tr.querySelector('td[data-cell="group"]').textContent])));
    assert.deepEqual(groups, { 'fold-1': 'cv folds', 'fold-2': 'cv folds', 'lr-0.1': 'sweep-lr', alone: '' });
    const cols = await headers(page);
    assert.ok(cols.includes('loss') && !cols.some((c) => c.startsWith('sys/')), `system metrics are no default column: ${cols}`);
    await page.locator(`${ROWS} a.group-chip`, { hasText: 'cv folds' }).first().click();
    await page.waitForURL(/q=group%3A%22cv(\+|%20)folds%22/);
    await page.waitForFunction((sel) => document.querySelectorAll(sel).length === 2, ROWS);
    assert.equal(await page.getByLabel('Filter experiments').inputValue(), 'group:"cv folds"');
    await page.getByText('group:NAME').waitFor(); // the filter help names it
    await h.screenshot(page, 'table-groups');

    // Chosen in the table, two runs are put in a group at once.
    await page.goto(`${server.url}/workspaces/${ws.id}?q=${encodeURIComponent('not group:"cv folds"')}`);
    await page.waitForFunction((sel) => document.querySelectorAll(sel).length === 2, ROWS);
    for (const name of ['lr-0.1', 'alone']) await page.getByLabel(`Select ${name}`).check();
    await page.getByLabel('Group for the selected runs').fill('sweep-lr-2');
    await page.getByRole('button', { name: 'Set group' }).click();
    await page.getByText('Put 2 runs in the group sweep-lr-2').waitFor();
    await page.waitForFunction((sel) => [...document.querySelectorAll(sel)].map((tr) => tr.querySelector('td[data-cell="group"]').textContent).join() === 'sweep-lr-2,sweep-lr-2', ROWS);
    for (const name of ['lr-0.1', 'alone']) await page.getByLabel(`Select ${name}`).check();
    await page.getByRole('button', { name: 'No group' }).click();
    await page.getByText('Took 2 runs out of their group').waitFor();
    assert.equal((await api.call('GET', `/experiments/${made['lr-0.1'].id}`)).group, null);
    await api.call('PATCH', `/experiments/${made['lr-0.1'].id}`, { group: 'sweep-lr' });

    // The run page: its group, linking back to the group's table; charts in sections, the
    // system metrics last and on the time since the run started, the rest on steps.
    await page.goto(`${server.url}/experiments/${made['fold-1'].id}`);
    const chip = page.locator('.run-group a.group-chip');
    await chip.waitFor();
    assert.equal(await chip.textContent(), 'cv folds');
    assert.match(await chip.getAttribute('href'), new RegExp(`/workspaces/${ws.id}\\?q=group%3A%22cv%20folds%22`));
    await page.locator('section.chart[data-metric="sys/gpu0/utilization"][data-state="drawn"]').waitFor();
    const sections = await page.$$eval('.chart-section[data-section]', (els) => els.map((e) => [e.dataset.section, e.querySelector('.section-toggle').textContent]));
    assert.deepEqual(sections, [['', 'Charts'], ['val', 'val'], ['sys', 'System']]);
    const axes = () => page.$$eval('section.chart[data-metric]', (els) => Object.fromEntries(els.map((e) => [e.dataset.metric, e.dataset.x])));
    await page.locator('section.chart[data-metric="loss"][data-state="drawn"]').waitFor();
    assert.deepEqual(await axes(), { loss: 'step', 'val/loss': 'step', 'sys/cpu_percent': 'rel', 'sys/gpu0/utilization': 'rel' });
    await h.screenshot(page, 'run-system-metrics');
    // On wall time every chart is on wall time.
    await page.getByRole('button', { name: 'Wall time' }).click();
    await page.waitForFunction(() => [...document.querySelectorAll('section.chart[data-metric]')].every((e) => e.dataset.x === 'time' && e.dataset.state === 'drawn'));

    // Compare: each run's group in the legend; the system section last and on time.
    await page.goto(`${server.url}/compare?ids=${made['fold-1'].id},${made['fold-2'].id}`);
    const legend = page.locator('.legend');
    await legend.locator('a.group-chip').first().waitFor();
    assert.deepEqual(await legend.locator('a.group-chip').allTextContents(), ['cv folds', 'cv folds']);
    await page.locator('section.chart[data-metric="sys/cpu_percent"][data-state="drawn"]').waitFor();
    await page.locator('section.chart[data-metric="loss"][data-state="drawn"]').waitFor();
    const compared = await page.$$eval('.chart-section[data-section]', (els) => els.map((e) => e.dataset.section));
    assert.deepEqual(compared, ['', 'sys']);
    assert.deepEqual(await axes(), { loss: 'step', 'sys/cpu_percent': 'rel' });

    // Watching a run that resumes from a checkpoint: steps it logs again arrive live, and the
    // page asks the server for the chart again, where each step is one point with the newer value.
    await page.goto(`${server.url}/experiments/${made['fold-2'].id}`);
    await page.locator('section.chart[data-metric="loss"][data-state="drawn"]').waitFor();
    await page.locator('main[data-stream="live"]').waitFor();
    const refetched = page.waitForResponse((r) => r.url().includes(`/experiments/${made['fold-2'].id}/series`) && r.url().includes('names=loss'));
    await api.call('POST', `/experiments/${made['fold-2'].id}/points`, { metrics: [{ name: 'loss', steps: [2, 3], values: [30, 20] }] });
    const folded = (await (await refetched).json()).data.series.find((x) => x.name === 'loss');
    assert.deepEqual(folded.x, [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(folded.last, [6, 4, 30, 20, 1, 0.5]);

    // An editor puts a run in a group from its page, and takes it out again.
    await page.goto(`${server.url}/experiments/${made.alone.id}`);
    const about = page.locator('section[aria-labelledby="about-h"]');
    await about.getByText('In no group.').waitFor();
    assert.ok(await page.locator('.run-group').isHidden());
    await about.getByLabel('Group').fill('  sweep-lr ');
    await about.getByRole('button', { name: 'Set group' }).click();
    await page.locator('.run-group a.group-chip', { hasText: 'sweep-lr' }).waitFor();
    assert.equal((await api.call('GET', `/experiments/${made.alone.id}`)).group, 'sweep-lr');
    await about.getByRole('button', { name: 'Take the run out of the group sweep-lr' }).click();
    await about.getByText('In no group.').waitFor();
    await page.locator('.run-group').waitFor({ state: 'hidden' });
    assert.equal((await api.call('GET', `/experiments/${made.alone.id}`)).group, null);
  });

  await t.test('the description is markdown, rendered without ever running HTML', async () => {
    const run = state.runs[0];
    const description = [
      '# Logistic regression sweep',
      'Tuned **C** and *penalty*; see [the paper](https://arxiv.org/abs/1234.5678) and https://scikit-learn.org/stable/.',
      '',
      '- seed `42`',
      '- 5-fold CV',
      '',
      '```python',
      'clf = LogisticRegression(C=1.0)',
      '```',
      '[do not click](javascript:window.pwned=1) <img src=x onerror="window.pwned=2"> <script>window.pwned=3</script>',
    ].join('\n');
    await api.call('PUT', `/experiments/${run.id}`, { description });
    await page.goto(`${server.url}/experiments/${run.id}`);
    const md = page.locator('section[aria-labelledby="about-h"] .md');
    await md.waitFor();
    assert.equal(await md.locator('h3').textContent(), 'Logistic regression sweep');
    assert.equal(await md.locator('strong').textContent(), 'C');
    assert.equal(await md.locator('em').textContent(), 'penalty');
    assert.deepEqual(await md.locator('li').allTextContents(), ['seed 42', '5-fold CV']);
    assert.equal(await md.locator('li code').textContent(), '42');
    assert.equal(await md.locator('pre code').textContent(), 'clf = LogisticRegression(C=1.0)');
    const links = await md.locator('a').evaluateAll((as) => as.map((a) => [a.textContent, a.getAttribute('href'), a.rel]));
    assert.deepEqual(links, [
      ['the paper', 'https://arxiv.org/abs/1234.5678', 'noopener noreferrer'],
      ['https://scikit-learn.org/stable/', 'https://scikit-learn.org/stable/', 'noopener noreferrer'],
    ]);
    assert.equal(await md.locator('img, script').count(), 0, 'no element from raw HTML');
    await md.getByText('<img src=x onerror="window.pwned=2">', { exact: false }).waitFor(); // shown as text
    assert.equal(await page.evaluate(() => window.pwned), undefined);
    await h.screenshot(page, 'run-markdown');
  });

  await t.test('the run page shows the run\'s metadata: git, command, host, Python, packages', async (st) => {
    const metadata = { // as python/src/tora/_metadata.py records it
      git: { commit: '3f9a1c2b7d4e5f60718293a4b5c6d7e8f9012345', branch: 'feature/l1', dirty: true },
      command: 'train.py --C 1.0 --api-key REDACTED', host: 'gpu-node-7', python: '3.12.4',
      platform: 'Linux-6.1.0-x86_64-with-glibc2.36', sdk: 'tora 0.1.0',
      packages: { numpy: '2.1.0', sklearn: '1.5.2', torch: '2.4.1' },
    };
    const exp = await api.call('POST', '/experiments', { name: 'with-metadata', workspaceId: state.archive.id, metadata });
    if (!exp.metadata || !exp.metadata.host) {
      st.skip('this server does not store metadata yet (branch runs)');
      return;
    }
    state.metaRun = exp;
    await page.goto(`${server.url}/experiments/${exp.id}`);
    const panel = page.locator('section[aria-labelledby="meta-h"]');
    await panel.waitFor();
    const row = (label) => panel.locator('tr', { has: page.locator('th', { hasText: new RegExp(`^${label}$`) }) }).locator('td').textContent();
    assert.equal(await row('Git commit'), '3f9a1c2b7d4e');
    assert.equal(await row('Git branch'), 'feature/l1');
    assert.equal(await row('Uncommitted changes'), 'yes');
    assert.equal(await row('Command'), 'train.py --C 1.0 --api-key REDACTED');
    assert.equal(await row('Platform'), 'Linux-6.1.0-x86_64-with-glibc2.36');
    assert.equal(await row('SDK'), 'tora 0.1.0');
    assert.equal(await row('Host'), 'gpu-node-7');
    assert.equal(await row('Python'), '3.12.4');
    await panel.getByText('3 packages').click();
    await panel.locator('tr', { hasText: 'sklearn' }).getByText('1.5.2').waitFor();
    await h.screenshot(page, 'run-metadata');
  });

  await t.test('states: a mark each, a click filters by it, the run page shows start, end, duration', async (st) => {
    const probe = await api.call('POST', '/experiments', { name: 'probe', workspaceId: state.archive.id });
    if (!probe.state) {
      st.skip('this server has no run state yet (branch runs)');
      return;
    }
    await api.call('DELETE', `/experiments/${probe.id}`);
    const ws = await api.call('POST', '/workspaces', { name: 'states' });
    state.statesWs = ws;
    const made = {};
    for (const [name, end] of [['still-training', null], ['converged', 'finished'], ['diverged', 'failed'], ['lost-node', null]]) {
      const exp = await api.call('POST', '/experiments', { name, workspaceId: ws.id });
      await api.call('POST', `/experiments/${exp.id}/heartbeat`);
      if (end) await api.call('POST', `/experiments/${exp.id}/finish`, { state: end });
      made[name] = exp;
    }
    // lost-node's machine died ten minutes ago: move its start and last heartbeat back in time
    // (the state is derived from them; 5 quiet minutes after a heartbeat make a run crashed).
    await run(process.env.PYTHON || 'python3', ['-', path.join(server.dir, 'tora.db'), made['lost-node'].id], [
      'import sqlite3, sys',
      'db = sqlite3.connect(sys.argv[1], timeout=10)',
      'db.execute("UPDATE experiments SET created_at = created_at - 600000, heartbeat_at = heartbeat_at - 600000 WHERE uuid = ?", (sys.argv[2],))',
      'db.commit()',
      'assert db.total_changes == 1',
    ].join('\n'));
    await page.goto(`${server.url}/workspaces/${ws.id}`);
    await page.locator(ROWS).nth(3).waitFor();
    const marks = await page.$$eval(ROWS, (trs) => Object.fromEntries(trs.map((tr) => {
      const s = tr.querySelector('td[data-cell="state"] .state');
      return [tr.querySelector('td.name a').textContent, [s.dataset.state, s.querySelector('.state-mark').textContent, getComputedStyle(s.querySelector('.state-mark')).color]];
    })));
    assert.equal(marks['still-training'][0], 'running');
    assert.equal(marks.converged[0], 'finished');
    assert.equal(marks.diverged[0], 'failed');
    assert.equal(marks['lost-node'][0], 'crashed');
    const glyphs = Object.values(marks).map((m) => m[1]);
    const colours = Object.values(marks).map((m) => m[2]);
    assert.equal(new Set(glyphs).size, 4, `a distinct mark each: ${glyphs}`);
    assert.equal(new Set(colours).size, 4, `a distinct colour each: ${colours}`);
    await h.screenshot(page, 'table-states');

    await page.locator(`${ROWS} a.state[data-state="failed"]`).click();
    await page.waitForURL(/q=state%3Afailed/);
    await page.waitForFunction((sel) => document.querySelectorAll(sel).length === 1, ROWS);
    assert.equal(await page.locator(`${ROWS} td.name a`).textContent(), 'diverged');

    await page.getByRole('link', { name: 'diverged' }).click();
    const line = page.locator('.run-timing');
    await line.waitFor();
    const text = await line.textContent();
    assert.match(text, /failed/);
    assert.match(text, /started \d{4}-\d\d-\d\d \d\d:\d\d/);
    assert.match(text, /ended \d{4}-\d\d-\d\d \d\d:\d\d/);
    assert.match(text, /\d+ s$/);
  });

  await t.test('the CSV export holds the runs the filter matches', async (st) => {
    if (!await serves(api, 'GET', `/workspaces/${state.ws.id}/experiments.csv`)) {
      st.skip('this server has no table export yet (branch live)');
      return;
    }
    await page.goto(table(`?q=${encodeURIComponent('C > 0.5')}`));
    await page.waitForFunction((sel) => document.querySelectorAll(sel).length === 4, ROWS);
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export CSV' }).click()]);
    assert.equal(download.suggestedFilename(), 'cancer-study-runs.csv');
    const lines = fs.readFileSync(await download.path(), 'utf8').trim().split(/\r?\n/);
    const head = lines[0].split(',');
    assert.deepEqual(head.slice(0, 3), ['id', 'name', 'state']);
    for (const c of ['hp.C', 'hp.penalty', 'result.test_acc', 'metric.val/loss']) assert.ok(head.includes(c), `${c} in ${head}`);
    assert.equal(lines.length - 1, 4, 'the four runs with C > 0.5');
    const ids = lines.slice(1).map((l) => l.split(',')[0]).sort();
    assert.deepEqual(ids, state.runs.slice(2).map((r) => r.id).sort());
  });

  await t.test('the table follows the workspace live: new runs, last values, states, deletions', async (st) => {
    if (!await serves(api, 'POST', `/workspaces/${state.ws.id}/stream-token`)) {
      st.skip('this server has no workspace stream yet (branch live)');
      return;
    }
    const streams = [];
    page.on('request', (r) => { if (/\/stream\?/.test(r.url())) streams.push(r.url()); });
    await page.goto(table());
    await page.locator('main[data-stream="live"]').waitFor();
    await page.evaluate(() => { window.sameDocument = true; });
    const exp = await api.call('POST', '/experiments', {
      name: 'late-run', workspaceId: state.ws.id, tags: ['sweep'],
      hyperparams: [{ key: 'C', value: 100 }, { key: 'penalty', value: 'l2' }, { key: 'solver', value: 'liblinear' }, { key: 'max_iter', value: 100 }],
    });
    const row = page.locator(`${ROWS}[data-id="${exp.id}"]`);
    await row.waitFor();
    await api.call('POST', `/experiments/${exp.id}/logs/batch`, { logs: [{ msg_id: 'a', name: 'val/loss', value: 0.75, step: 0 }] });
    await row.locator('td[data-col="metric.val/loss"]', { hasText: '0.75' }).waitFor();
    await api.call('POST', `/experiments/${exp.id}/logs/batch`, { logs: [{ msg_id: 'b', name: 'val/loss', value: 0.5, step: 1 }] });
    await row.locator('td[data-col="metric.val/loss"]', { hasText: '0.5' }).waitFor();
    if (exp.state) {
      await api.call('POST', `/experiments/${exp.id}/finish`, { state: 'finished' });
      await row.locator('.state[data-state="finished"]').waitFor();
    }
    await api.call('DELETE', `/experiments/${exp.id}`);
    await row.waitFor({ state: 'detached' });
    assert.equal(await page.evaluate(() => window.sameDocument), true, 'the page was reloaded');
    assert.equal(streams.length, 1, `one stream for the page: ${streams}`);
    assert.match(streams[0], new RegExp(`/api/workspaces/${state.ws.id}/stream\\?`));
  });

  await t.test('after a server restart the table reconnects and shows what changed while it was away', async (st) => {
    if (!await serves(api, 'POST', `/workspaces/${state.ws.id}/stream-token`)) {
      st.skip('this server has no workspace stream yet (branch live)');
      return;
    }
    const gone = /ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE|ERR_INCOMPLETE_CHUNKED_ENCODING|ERR_NETWORK_CHANGED/;
    allowed.push(gone); // the server is away on purpose
    await page.goto(table());
    await page.locator('main[data-stream="live"]').waitFor();
    await page.evaluate(() => { window.sameDocument = true; });
    await server.halt();
    await page.locator('main[data-stream="reconnecting"]').waitFor();
    await server.resume();
    // Made before the page is back on the stream, which replays nothing: the table rereads itself.
    const exp = await api.call('POST', '/experiments', { name: 'made-during-restart', workspaceId: state.ws.id });
    await page.locator(`${ROWS}[data-id="${exp.id}"]`).waitFor({ timeout: 30000 });
    await page.locator('main[data-stream="live"]').waitFor({ timeout: 30000 });
    assert.equal(await page.evaluate(() => window.sameDocument), true, 'the page was reloaded');
    await api.call('DELETE', `/experiments/${exp.id}`);
    await page.locator(`${ROWS}[data-id="${exp.id}"]`).waitFor({ state: 'detached' });
    allowed.splice(allowed.indexOf(gone), 1);
  });

  await t.test('selected runs are tagged, moved and deleted together', async (st) => {
    if ([404, 405].includes((await api.raw('POST', '/experiments/bulk', { ids: [], action: 'tag', tags: ['x'] })).status)) {
      st.skip('this server has no bulk endpoint yet (branch live)');
      return;
    }
    const [a, b, c, d] = state.runs.slice(2);
    await page.goto(table());
    await page.locator(ROWS).nth(5).waitFor();
    const pick = async (run) => page.locator(`${ROWS}[data-id="${run.id}"] input[type="checkbox"]`).check();

    await pick(a);
    await pick(b);
    await page.getByRole('group', { name: 'Selected runs' }).getByText('2 selected').waitFor();
    await h.screenshot(page, 'table-bulk');
    await page.getByLabel('Tag for the selected runs').fill('reviewed');
    await page.getByRole('button', { name: 'Add tag' }).click();
    await page.getByText('Tagged 2 runs with reviewed').waitFor();
    for (const run of [a, b]) {
      await page.locator(`${ROWS}[data-id="${run.id}"] a.tag`, { hasText: 'reviewed' }).waitFor();
      assert.ok((await api.call('GET', `/experiments/${run.id}`)).tags.includes('reviewed'));
    }
    assert.equal(await page.locator(`${ROWS} a.tag`, { hasText: 'reviewed' }).count(), 2, 'only the selected runs');
    await pick(a);
    await page.getByLabel('Tag for the selected runs').fill('reviewed');
    await page.getByRole('button', { name: 'Remove tag' }).click();
    await page.getByText('Untagged 1 run from reviewed').waitFor();
    await page.locator(`${ROWS}[data-id="${a.id}"] a.tag`, { hasText: 'reviewed' }).waitFor({ state: 'detached' });
    assert.equal(await page.locator(`${ROWS} a.tag`, { hasText: 'reviewed' }).count(), 1, 'b keeps it');

    page.once('dialog', (dialog) => dialog.accept());
    await pick(c);
    await page.getByLabel('Workspace to move the selected runs to').selectOption({ label: 'archive' });
    await page.getByRole('button', { name: 'Move', exact: true }).click();
    await page.getByText('Moved 1 run to archive').waitFor();
    await page.locator(`${ROWS}[data-id="${c.id}"]`).waitFor({ state: 'detached' });
    assert.equal((await api.call('GET', `/experiments/${c.id}`)).workspace_id, state.archive.id);

    let asked = '';
    page.once('dialog', (dialog) => { asked = dialog.message(); dialog.accept(); });
    await pick(d);
    await page.getByRole('button', { name: 'Delete', exact: true }).click();
    await page.getByText('Deleted 1 run').waitFor();
    assert.match(asked, /Delete 1 run \(breast-cancer-logreg\)/);
    await page.locator(`${ROWS}[data-id="${d.id}"]`).waitFor({ state: 'detached' });
    assert.equal((await api.raw('GET', `/experiments/${d.id}`)).status, 404);
    assert.equal(await page.locator(ROWS).count(), 4);
  });

  await t.test('at 375 px a run name wraps at words, not letter by letter', async () => {
    const phone = await browser.newContext({ viewport: { width: 375, height: 812 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, storageState: await desktop.storageState() });
    const p = await open(phone);
    await api.call('POST', '/experiments', {
      name: 'resnet50-imagenet-baseline', workspaceId: state.ws.id,
      hyperparams: [{ key: 'C', value: 1000 }, { key: 'penalty', value: 'elasticnet' }, { key: 'solver', value: 'saga' }, { key: 'max_iter', value: 500 }],
    });
    await p.goto(table());
    await p.locator(`${ROWS} td.name a`, { hasText: 'resnet50' }).waitFor();
    const boxes = await p.$$eval(`${ROWS} td.name a`, (as) => as.map((a) => {
      return { text: a.textContent, width: a.closest('td').getBoundingClientRect().width, lines: a.getClientRects().length };
    }));
    for (const b of boxes) {
      assert.ok(b.width >= 80, `"${b.text}" is ${b.width} px wide`);
      assert.ok(b.lines <= 3, `"${b.text}" takes ${b.lines} lines`);
    }
    const width = await p.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375, `the page is ${width} px wide`);
    await phone.close();
  });

  await t.test('screenshots of the table, the empty workspace and the run page: 1440 and 375 px, light and dark', async () => {
    const empty = await api.call('POST', '/workspaces', { name: 'empty-lab' });
    const runPage = state.metaRun || state.runs[0];
    const shots = [
      ['table', table(), ROWS],
      ['empty', `${server.url}/workspaces/${empty.id}`, 'pre.snippet'],
      ['run', `${server.url}/experiments/${runPage.id}`, 'section[aria-labelledby="about-h"]'],
      ['run-described', `${server.url}/experiments/${state.runs[0].id}`, '.md'],
    ];
    if (state.statesWs) shots.push(['states', `${server.url}/workspaces/${state.statesWs.id}`, ROWS]);
    const storageState = await desktop.storageState();
    for (const scheme of ['light', 'dark']) {
      for (const width of [1440, 375]) {
        const phone = width < 600;
        const context = await browser.newContext({
          viewport: { width, height: phone ? 812 : 900 }, colorScheme: scheme, storageState,
          ...(phone ? { deviceScaleFactor: 2, isMobile: true, hasTouch: true } : {}),
        });
        const p = await open(context);
        for (const [name, url, ready] of shots) {
          await p.goto(url);
          await p.locator(ready).first().waitFor();
          const scroll = await p.evaluate(() => document.documentElement.scrollWidth);
          assert.ok(scroll <= width, `${name} is ${scroll} px wide at ${width} px`);
          await h.screenshot(p, `table-${name}-${width}-${scheme}`);
        }
        await context.close();
      }
    }
  });

  await t.test('no page logged a console error', () => {
    assert.deepEqual(pages.flatMap((p) => p.errors), []);
  });
});
