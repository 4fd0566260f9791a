// User-made panels: several metrics on one chart. A panel is the list of its metric names; the
// list of panels lives in the URL (panels=[["train/loss","val/loss"]], so a link shows them) and
// in localStorage per workspace (tora.panels.<workspace id>), so a workspace's runs open with the
// panels last made there. Bounded: MAX_PANELS panels of at most MAX_METRICS metrics.

import { h, fill } from './dom.js';

export const MAX_PANELS = 12;
export const MAX_METRICS = 8;

const storageKey = (workspaceId) => `tora.panels.${workspaceId}`;

function clean(value) {
  if (!Array.isArray(value)) return [];
  return value.filter(Array.isArray).slice(0, MAX_PANELS)
    .map((p) => [...new Set(p.filter((n) => typeof n === 'string' && n))].slice(0, MAX_METRICS))
    .filter((p) => p.length);
}

function parse(text) {
  try { return clean(JSON.parse(text)); } catch { return []; }
}

/** The panels of a page: from its URL, else the workspace's saved ones. */
export function loadPanels(query, workspaceId) {
  if (query.has('panels')) return parse(query.get('panels'));
  if (!workspaceId) return [];
  try { return parse(localStorage.getItem(storageKey(workspaceId)) || '[]'); } catch { return []; }
}

/** Saves panels to the URL (through setQuery) and the workspace's storage. */
export function savePanels(panels, setQuery, workspaceId) {
  setQuery({ panels: panels.length ? JSON.stringify(panels) : null });
  if (!workspaceId) return;
  try { localStorage.setItem(storageKey(workspaceId), JSON.stringify(panels)); } catch { /* storage full or refused: the URL still has them */ }
}

/**
 * An "Add panel" menu: a search box, a checkbox per metric name (names() is read when opened)
 * and a button that hands the picked names to onAdd.
 */
/** Metric names the panel picker lists at once. */
const PICKER_ROWS = 200;

export function panelPicker(names, onAdd) {
  const menu = h('details', { class: 'menu panel-picker' });
  const search = h('input', { type: 'search', placeholder: 'Find metrics', 'aria-label': 'Find metrics for the panel' });
  const list = h('div', { class: 'picker-list', role: 'group', 'aria-label': 'Metrics of the panel' });
  const note = h('p', { class: 'muted small' });
  const picked = new Set();
  const add = h('button', { type: 'button', class: 'primary small', disabled: true }, 'Create panel');
  const draw = () => {
    const needle = search.value.trim().toLowerCase();
    const matching = names().filter((n) => !needle || n.toLowerCase().includes(needle));
    // A run with thousands of metrics: the first PICKER_ROWS matches, and a word to search.
    const shown = matching.slice(0, PICKER_ROWS);
    fill(list, shown.map((n) => {
      const box = h('input', { type: 'checkbox', checked: picked.has(n) });
      box.addEventListener('change', () => {
        if (box.checked && picked.size < MAX_METRICS) picked.add(n);
        else picked.delete(n);
        box.checked = picked.has(n);
        update();
      });
      return h('label', {}, box, n);
    }));
    if (!shown.length) list.append(h('p', { class: 'muted small' }, 'No metric matches.'));
    if (matching.length > shown.length) list.append(h('p', { class: 'muted small' }, `${matching.length - shown.length} more: type to narrow.`));
    update();
  };
  const update = () => {
    add.disabled = picked.size === 0;
    note.textContent = `${picked.size} picked (at most ${MAX_METRICS})`;
  };
  search.addEventListener('input', draw);
  menu.addEventListener('toggle', () => { if (menu.open) { draw(); search.focus(); } });
  add.addEventListener('click', () => {
    onAdd([...picked]);
    picked.clear();
    search.value = '';
    menu.open = false;
  });
  menu.append(h('summary', { title: 'Several metrics on one chart' }, 'Add panel'),
    h('div', { class: 'menu-body stack' }, search, list, h('div', { class: 'row' }, add, note)));
  return menu;
}

/**
 * The card of one panel: {card, body, readout}. `title` is the head's content (names, or a key of
 * dash patterns); the × button calls onRemove.
 */
export function panelCard(names, title, onRemove) {
  const label = names.join(', ');
  const body = h('div', { class: 'chart-body', role: 'group', 'aria-label': `Panel of ${label}; + and - zoom, arrows pan, 0 resets` });
  const readout = h('span', { class: 'readout' });
  const remove = h('button', { class: 'small link', 'aria-label': `Remove the panel of ${label}`, title: 'Remove panel' }, '×');
  remove.addEventListener('click', onRemove);
  const card = h('section', { class: 'chart panel-chart', 'aria-label': `Panel ${label}`, dataset: { panel: names.join(','), state: 'loading' } },
    h('div', { class: 'chart-head' }, h('h3', {}, title), remove), body, h('div', { class: 'chart-foot' }, readout));
  return { card, body, readout };
}
