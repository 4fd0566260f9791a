// The run page's artifacts: the files kept with a run (GET /api/experiments/{id}/artifacts), each
// with its size, time, a download button and, for the kinds below, an inline preview.
//
// Safe by construction: nothing fetched is ever parsed as markup or run. Text, JSON, CSV, HTML
// and anything else textual go into text nodes (JSON pretty-printed, CSV as a table, markdown
// through markdown.js, which builds DOM and never parses HTML); images are shown by <img> from a
// data: URL with the image type chosen here from the extension (an SVG in <img> runs no script).
// Bytes are fetched with the session's token (api.js), never through a link the browser opens.
// Bounded: text previews read at most TEXT_CAP bytes of the stream, then stop; images over
// IMAGE_CAP are not previewed; CSV shows CSV_ROWS rows and CSV_COLS columns.

import * as api from './api.js';
import { h, fill, busy, toast, confirmDanger } from './dom.js';
import { dateTime } from './format.js';
import { markdown } from './markdown.js';

export const TEXT_CAP = 1024 * 1024;
export const IMAGE_CAP = 10 * 1024 * 1024;
const CSV_ROWS = 200;
const CSV_COLS = 50;

const IMAGES = {
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp',
  bmp: 'image/bmp', svg: 'image/svg+xml', avif: 'image/avif',
};
const TEXTS = new Set(['txt', 'log', 'yaml', 'yml', 'toml', 'ini', 'cfg', 'conf', 'py', 'sh', 'js', 'ts',
  'rs', 'c', 'h', 'cpp', 'java', 'go', 'r', 'sql', 'xml', 'html', 'htm', 'tex', 'rst', 'diff', 'patch', 'jsonl', 'ndjson']);

/** What preview a name gets: 'image', 'json', 'csv', 'markdown', 'text' or null. */
export function kindOf(path) {
  const base = path.slice(path.lastIndexOf('/') + 1).toLowerCase();
  const dot = base.lastIndexOf('.');
  const ext = dot > 0 ? base.slice(dot + 1) : '';
  if (IMAGES[ext]) return 'image';
  if (ext === 'json') return 'json';
  if (ext === 'csv' || ext === 'tsv') return 'csv';
  if (ext === 'md' || ext === 'markdown') return 'markdown';
  if (TEXTS.has(ext) || base === 'readme' || base === 'license' || base === 'makefile') return 'text';
  return null;
}

export function bytes(n) {
  if (!Number.isFinite(n)) return '';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

function artifactPath(id, path) {
  return `/experiments/${encodeURIComponent(id)}/artifacts/${path.split('/').map(encodeURIComponent).join('/')}`;
}

/** The Artifacts panel of run `exp`; loads its list at once. An EDITOR or OWNER (`canEdit`) may delete. */
export function artifactsPanel(exp, signal, canEdit = false) {
  const body = h('div', { class: 'artifact-list' }, h('p', { class: 'muted' }, 'Loading\u2026'));
  const preview = h('div', { class: 'artifact-preview', hidden: true, 'aria-live': 'polite' });
  const refresh = h('button', { class: 'small', type: 'button', onclick: (e) => busy(e.currentTarget, load) }, 'Refresh');
  const panel = h('section', { class: 'panel artifacts', 'aria-labelledby': 'art-h' },
    h('div', { class: 'row' }, h('h2', { id: 'art-h', class: 'grow' }, 'Artifacts'), refresh), body, preview);
  let shown = null; // the path previewed now

  async function load() {
    let list;
    try {
      list = await api.get(`/experiments/${encodeURIComponent(exp.id)}/artifacts`, null, { signal });
    } catch (err) {
      if (err.name === 'AbortError') return;
      // A server without the artifact store answers 404 for the list: say so quietly.
      fill(body, h('p', { class: 'muted' }, err.status === 404 ? 'This server keeps no artifacts.' : err.message));
      return;
    }
    if (!list.length) {
      fill(body, h('p', { class: 'muted' }, 'None logged. ', h('code', {}, 'tora.log_artifact("plot.png")'), ' keeps a file with the run.'));
      return;
    }
    list.sort((a, b) => a.path.localeCompare(b.path));
    fill(body, h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Artifacts' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', { class: 'num' }, 'Size'), h('th', {}, 'Logged'), h('th', {}, ''))),
      h('tbody', {}, list.map(row)))));
  }

  function row(a) {
    const kind = kindOf(a.path);
    const tooBig = kind === 'image' && a.size > IMAGE_CAP;
    const view = kind && !tooBig ? h('button', { class: 'small', type: 'button',
      onclick: (e) => busy(e.currentTarget, () => show(a, kind)) }, 'Preview') : null;
    const get = h('button', { class: 'small', type: 'button', onclick: (e) => busy(e.currentTarget, () => download(a)) }, 'Download');
    const drop = canEdit ? h('button', { class: 'small danger', type: 'button', onclick: (e) => {
      if (!confirmDanger(`Delete the artifact ${a.path}? This cannot be undone.`)) return;
      busy(e.currentTarget, () => remove(a));
    } }, 'Delete') : null;
    return h('tr', { dataset: { artifact: a.path } },
      h('td', { class: 'mono' }, a.path),
      h('td', { class: 'num', title: `${a.size} bytes` }, bytes(a.size)),
      h('td', {}, dateTime(a.created_at)),
      h('td', {}, h('div', { class: 'row end' }, view, get, drop)));
  }

  async function remove(a) {
    await api.del(artifactPath(exp.id, a.path));
    toast(`Deleted ${a.path}`);
    if (shown === a.path) { preview.hidden = true; shown = null; }
    await load();
  }

  async function download(a) {
    const data = await api.blob(artifactPath(exp.id, a.path));
    const url = URL.createObjectURL(data);
    const link = h('a', { href: url, download: a.path.slice(a.path.lastIndexOf('/') + 1), hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }

  async function show(a, kind) {
    if (shown === a.path && !preview.hidden) { // a second press closes it
      preview.hidden = true;
      shown = null;
      return;
    }
    const content = await render(a, kind);
    const close = h('button', { class: 'small', type: 'button', onclick: () => { preview.hidden = true; shown = null; } }, 'Close');
    fill(preview, h('div', { class: 'row' }, h('h3', { class: 'grow mono' }, a.path), close), content);
    preview.dataset.kind = kind;
    preview.dataset.path = a.path;
    preview.hidden = false;
    shown = a.path;
  }

  async function render(a, kind) {
    const path = artifactPath(exp.id, a.path);
    if (kind === 'image') {
      const blob = await api.blob(path);
      const src = await dataUrl(new Blob([blob], { type: IMAGES[extOf(a.path)] }));
      return h('img', { class: 'artifact-image', src, alt: a.path });
    }
    const { text, cut } = await readText(path);
    const note = cut ? h('p', { class: 'muted small' }, `Showing the first ${bytes(TEXT_CAP)} of ${a.size.toLocaleString('en')} bytes; download it for the rest.`) : null;
    if (kind === 'json' && !cut) {
      try {
        return h('div', {}, h('pre', { class: 'artifact-text' }, JSON.stringify(JSON.parse(text), null, 2)));
      } catch { /* not JSON after all: shown as text */ }
    }
    if (kind === 'csv') return h('div', {}, note, csvTable(text, a.path.toLowerCase().endsWith('.tsv') ? '\t' : ',', cut));
    if (kind === 'markdown') return h('div', {}, note, markdown(text));
    return h('div', {}, note, h('pre', { class: 'artifact-text' }, text));
  }

  load().catch((err) => toast(err.message, 'error'));
  return panel;
}

function extOf(path) {
  const dot = path.lastIndexOf('.');
  return dot < 0 ? '' : path.slice(dot + 1).toLowerCase();
}

function dataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

/** At most TEXT_CAP bytes of an artifact, as text; cut: there was more. */
async function readText(path) {
  const res = await api.response(path);
  const reader = res.body.getReader();
  const parts = [];
  let length = 0;
  let cut = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const room = TEXT_CAP - length;
    if (value.length > room) {
      parts.push(value.subarray(0, room));
      length += room;
      cut = true;
      await reader.cancel();
      break;
    }
    parts.push(value);
    length += value.length;
  }
  const all = new Uint8Array(length);
  let at = 0;
  for (const p of parts) { all.set(p, at); at += p.length; }
  return { text: new TextDecoder('utf-8').decode(all), cut };
}

/** RFC 4180 fields (quotes, doubled quotes, newlines in quotes), at most CSV_ROWS + 1 rows. */
export function parseCsv(text, sep = ',', limit = CSV_ROWS + 1) {
  const rows = [];
  let row = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length && rows.length < limit; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i += 1; } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === '') quoted = true;
    else if (c === sep) { row.push(field); field = ''; }
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i += 1;
      row.push(field); field = '';
      rows.push(row); row = [];
    } else field += c;
  }
  if ((field !== '' || row.length) && rows.length < limit) { row.push(field); rows.push(row); }
  return rows;
}

function csvTable(text, sep, cut) {
  const rows = parseCsv(text, sep);
  if (cut && rows.length <= CSV_ROWS) rows.pop(); // the last row may be cut in the middle
  if (!rows.length) return h('p', { class: 'muted' }, 'Empty.');
  const [head, ...rest] = rows;
  const shown = rest.slice(0, CSV_ROWS - 1);
  const more = rest.length > shown.length || cut;
  const cells = (r, tag) => r.slice(0, CSV_COLS).map((v) => h(tag, {}, v));
  return h('div', {},
    h('div', { class: 'table-wrap' }, h('table', { class: 'artifact-csv', 'aria-label': 'CSV preview' },
      h('thead', {}, h('tr', {}, cells(head, 'th'))),
      h('tbody', {}, shown.map((r) => h('tr', {}, cells(r, 'td')))))),
    more || head.length > CSV_COLS
      ? h('p', { class: 'muted small' }, `Showing at most ${CSV_ROWS - 1} rows and ${CSV_COLS} columns.`) : null);
}
