// The empty workspace's way in: a snippet to paste into a terminal that installs the SDK from
// this very server (no PyPI, works offline), points it here, and logs a first run, plus a link
// to create the API key it needs.

import { copyButton, h } from './dom.js';

/**
 * pip's command for the SDK from this server's index (as src/sdk.rs pip_command says it: pip
 * takes plain http only from this machine, or from a host named trusted).
 */
export function pipCommand(origin) {
  const u = new URL(origin);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const local = host === 'localhost' || host === '::1' || /^127\./.test(host);
  const trust = u.protocol === 'http:' && !local ? ` --trusted-host ${host}` : '';
  return `pip install --index-url ${u.origin}/sdk/simple/${trust} tora`;
}

/** The shell lines and the Python example for workspace `workspaceId` on this server. */
export function snippetText(workspaceId, origin = location.origin) {
  return [
    'python3 -m venv .venv && . .venv/bin/activate',
    pipCommand(origin),
    `export TORA_BASE_URL=${origin}/api`,
    'export TORA_API_KEY=tora_sk_...   # your API key, from the settings page',
    "python3 - <<'EOF'",
    'import tora',
    `tora.setup("first-run", workspace_id="${workspaceId}", hyperparams={"lr": 0.01})`,
    'for step in range(100): tora.tmetric("loss", 1 / (step + 1), step)',
    'tora.shutdown()',
    'EOF',
  ].join('\n');
}

/** A <pre> with a copy button (where the clipboard is refused, the button selects the text). */
export function copyable(text, label = 'Copy') {
  const code = h('code', {}, text);
  const pre = h('pre', { class: 'snippet mono', tabindex: '0' }, code);
  const button = copyButton(code, text, label, { class: 'small copy', 'aria-label': `${label} the snippet` });
  return h('div', { class: 'snippet-box' }, button, pre);
}

/** The empty state of a workspace with no runs. `canWrite`: the caller may log runs here. */
export function firstRun(workspaceId, canWrite) {
  return h('section', { class: 'empty getting-started', 'aria-labelledby': 'start-h' },
    h('strong', { id: 'start-h' }, 'No experiments in this workspace yet'),
    canWrite
      ? [
        h('p', {}, 'Log the first one from any machine that can reach this server: paste this into a terminal.'),
        copyable(snippetText(workspaceId)),
        h('p', { class: 'small' }, 'It needs an API key: ', h('a', { href: '/settings', class: 'key-link' }, 'create an API key'),
          ' (on the settings page) and put it in ', h('code', {}, 'TORA_API_KEY'), '. Runs appear here as they start, without a reload.'),
      ]
      : h('p', {}, 'You are a viewer here: runs appear as the workspace\u2019s editors log them.'));
}
