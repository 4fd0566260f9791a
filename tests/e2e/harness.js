// What the end-to-end suites share: the real `tora` binary on a free port with a fresh database,
// a small API client for seeding data, headless Chromium, console-error capture, screenshots.

'use strict';

const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { chromium } = require('playwright-core');

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = process.env.TORA_BIN || path.join(ROOT, 'target', 'debug', 'tora');
const SHOTS = path.join(ROOT, 'test-output', 'e2e');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/**
 * Starts `tora serve` on 127.0.0.1:0 with a new database; resolves once it printed its address.
 * halt() stops the process (SIGTERM, as an administrator would) and keeps the database;
 * resume() starts it again on the same address and database, as after a restart.
 */
async function startServer() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tora-e2e-'));
  const db = process.env.TORA_TEST_POSTGRES ? postgresDatabase() : path.join(dir, 'tora.db');
  let child = null;
  // Never outlive the test process, even when it is interrupted before its after() hooks run.
  const orphan = () => { if (child) child.kill('SIGKILL'); };
  const onSignal = (signal) => { orphan(); process.kill(process.pid, signal); }; // then die as asked
  process.once('exit', orphan);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  async function serve(bind) {
    const proc = spawn(BIN, ['serve', '--bind', bind, '--db', db], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    let stderr = '';
    proc.stderr.on('data', (d) => { stderr += d; });
    const lines = readline.createInterface({ input: proc.stdout });
    const address = await new Promise((resolve, reject) => {
      proc.once('error', reject);
      proc.once('exit', (code) => reject(new Error(`tora serve exited (${code}) before listening:\n${stderr}`)));
      lines.on('line', (line) => {
        const m = /^listening on (http:\/\/\S+)/.exec(line);
        if (m) resolve(m[1]);
      });
    });
    proc.removeAllListeners('exit');
    return address;
  }

  async function halt() {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  }

  const url = await serve('127.0.0.1:0');
  return {
    url,
    dir,
    halt,
    async resume() {
      await halt();
      const again = await serve(new URL(url).host);
      if (again !== url) throw new Error(`restarted on ${again}, not ${url}`);
    },
    async stop() {
      await halt();
      process.removeListener('exit', orphan);
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * With $TORA_TEST_POSTGRES naming a cluster (tests/postgres/cluster.sh), a new database of its
 * own there, made with psql; its URL.
 */
function postgresDatabase() {
  const cluster = process.env.TORA_TEST_POSTGRES;
  const name = `e2e_${process.pid}_${Math.random().toString(16).slice(2, 10)}`;
  execFileSync('psql', ['-q', '-v', 'ON_ERROR_STOP=1', cluster, '-c', `CREATE DATABASE ${name}`]);
  return cluster.replace(/\/[^/]*$/, `/${name}`);
}

/** A minimal API client: call(method, path, body) -> data; throws with the server's message. */
function client(base, credentials = {}) {
  const headers = () => {
    const h = { 'content-type': 'application/json' };
    if (credentials.key) h['x-api-key'] = credentials.key;
    if (credentials.token) h.authorization = `Bearer ${credentials.token}`;
    return h;
  };
  async function raw(method, p, body) {
    const res = await fetch(`${base}/api${p}`, { method, headers: headers(), body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* CSV or empty */ }
    return { status: res.status, json, text };
  }
  async function call(method, p, body) {
    const r = await raw(method, p, body);
    if (r.status >= 400) throw new Error(`${method} ${p} -> ${r.status}: ${r.text.slice(0, 300)}`);
    return r.json ? r.json.data : r.text;
  }
  return { raw, call, credentials };
}

/** Signs up (ignoring "taken") and logs in; returns a client with the bearer token. */
async function account(base, email, password = 'correct horse battery') {
  const anon = client(base);
  await anon.raw('POST', '/signup', { email, password });
  const session = await anon.call('POST', '/login', { email, password });
  const c = client(base, { token: session.access_token });
  c.user = session.user;
  c.password = password;
  return c;
}

/** Sends logs in batches of `size` through the batch endpoint. */
async function logBatches(api, experimentId, logs, size = 50000) {
  for (let i = 0; i < logs.length; i += size) {
    await api.call('POST', `/experiments/${experimentId}/logs/batch`, { logs: logs.slice(i, i + size) });
  }
}

const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Headless Chromium from the Debian package; launch() gives it a fresh temporary profile. */
function launch() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: LAUNCH_ARGS });
}

/**
 * A page whose console errors and uncaught exceptions are collected in page.errors (the suites
 * assert it stays empty). `allow` holds regexes of expected messages (e.g. a deliberate 401).
 */
async function newPage(context, allow = []) {
  const page = await context.newPage();
  page.errors = [];
  page.allow = allow;
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = `${msg.text()} (${msg.location().url || 'page'})`;
    if (!page.allow.some((re) => re.test(text))) page.errors.push(text);
  });
  page.on('pageerror', (err) => page.errors.push(`uncaught: ${err.message}`));
  return page;
}

async function screenshot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/**
 * How many pixels of a chart's canvas are close to `rgb` (a series colour). A drawn line leaves
 * hundreds; axes and grid alone leave none of the series colour.
 */
function seriesPixels(page, selector, rgb, tolerance = 48) {
  return page.$eval(selector, (canvas, [target, tol]) => {
    const ctx = canvas.getContext('2d');
    const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
    let n = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] < 200) continue;
      if (Math.abs(data[i] - target[0]) + Math.abs(data[i + 1] - target[1]) + Math.abs(data[i + 2] - target[2]) <= tol) n++;
    }
    return n;
  }, [rgb, tolerance]);
}

module.exports = { ROOT, SHOTS, startServer, client, account, logBatches, launch, newPage, screenshot, seriesPixels };
