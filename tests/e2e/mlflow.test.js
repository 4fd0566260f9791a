// A lab moving from MLflow: an unmodified MLflow training script (the official client, pointed at
// this server with MLFLOW_TRACKING_URI and a Tora API key) logs a run, and the run shows in the
// dashboard like any other: its workspace (the MLflow experiment), its row with the last loss and
// its state, and its page with params, tags and the loss chart.

'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const fs = require('node:fs');
const { spawn } = require('node:child_process');
const h = require('./harness.js');

const OWNER = { email: 'ml@lab.org', password: 'ml-password-1' };
const PYTHON = path.join(__dirname, '..', '..', 'target', 'venv', 'bin', 'python');
const SCRIPT = `
import mlflow
mlflow.set_experiment("mlflow-study")
with mlflow.start_run(run_name="from-mlflow") as run:
    mlflow.log_params({"lr": 0.01, "optimizer": "adam"})
    mlflow.set_tag("team", "vision")
    for step in range(50):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
print(run.info.experiment_id, run.info.run_id)
`;

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

function python(env) {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, ['-c', SCRIPT], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`python exited ${code}:\n${err}`))));
  });
}

test('a run logged by the MLflow client shows in the dashboard', async (t) => {
  if (!fs.existsSync(PYTHON)) {
    t.skip('no target/venv (test.sh installs mlflow-skinny there)');
    return;
  }
  const api = await h.account(server.url, OWNER.email, OWNER.password);
  const key = (await api.call('POST', '/api-keys', { name: 'mlflow' })).key;
  const out = await python({ MLFLOW_TRACKING_URI: server.url, MLFLOW_TRACKING_TOKEN: key });
  const [workspaceId, runId] = out.trim().split('\n').pop().split(' ');

  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await h.newPage(context);
  await page.goto(`${server.url}/login`);
  await page.getByLabel('E-mail').fill(OWNER.email);
  await page.getByLabel('Password', { exact: true }).fill(OWNER.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/workspaces');
  await page.getByText('mlflow-study').first().waitFor();

  await page.goto(`${server.url}/workspaces/${workspaceId}`);
  const row = page.locator('table[aria-label="Experiments"] tbody tr', { hasText: 'from-mlflow' });
  await row.waitFor();
  assert.equal(await row.getAttribute('data-id'), runId);
  await row.locator('td[data-col="metric.loss"]', { hasText: '0.02' }).waitFor();
  await row.locator('.state[data-state="finished"]').waitFor();

  await page.goto(`${server.url}/experiments/${runId}`);
  await page.getByText('from-mlflow').first().waitFor();
  await page.getByText('adam').first().waitFor();
  await page.getByText('vision').first().waitFor(); // the MLflow tag, in the run's metadata
  await page.locator('canvas').first().waitFor();
  await h.screenshot(page, 'mlflow-run');
  assert.deepEqual(page.errors, []);
  await context.close();
});
