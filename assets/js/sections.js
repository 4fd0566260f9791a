// Charts grouped by the prefix of their name ("train/loss" goes to "train"), W&B-style: one
// collapsible section per prefix, in name order, names without a "/" first under "Charts", and
// the system metrics (sys/cpu_percent, sys/gpu0/utilization: what the SDK samples while a run
// goes) last under "System", drawn against time while the page is on steps.
// The pages keep the collapsed prefixes in the URL (collapsed=train,val).

import { h } from './dom.js';

const UNGROUPED = '';
/** The prefix of system metrics. */
export const SYSTEM = 'sys';

/** The section a metric belongs to: the part of its name before the first "/". */
export function prefixOf(name) {
  const i = name.indexOf('/');
  return i > 0 ? name.slice(0, i) : UNGROUPED;
}

/**
 * The x a chart of `name` is drawn on when the page is on `pageX` ('step' | 'rel' | 'time'):
 * the page's, except that system metrics, sampled by the clock, go on the time since the run
 * started while the page is on steps.
 */
export function xmodeOf(name, pageX) {
  return pageX === 'step' && prefixOf(name) === SYSTEM ? 'rel' : pageX;
}

/** Sections in order: ungrouped first, system last, the others by prefix. */
function rank(prefix) {
  return prefix === UNGROUPED ? 0 : prefix === SYSTEM ? 2 : 1;
}

function before(a, b) {
  return rank(a) - rank(b) || a.localeCompare(b, undefined, { numeric: true });
}

/** The order of sections, for Array.sort over prefixes. */
export const compareSections = before;

/** The collapsed prefixes of a `collapsed` URL value. */
export function parseCollapsed(text) {
  return new Set((text || '').split(',').map((s) => s.trim()).filter(Boolean).map((s) => (s === '-' ? UNGROUPED : s)));
}

/** A `collapsed` URL value (null when nothing is collapsed). */
export function formatCollapsed(set) {
  return set.size ? [...set].map((s) => (s === UNGROUPED ? '-' : s)).sort().join(',') : null;
}

export class Sections {
  /**
   * root: the element the sections go in; collapsed: a Set of prefixes; onToggle(set) saves it.
   * options.onOpen(prefix): a section was opened (a page that builds its cards lazily fills it).
   */
  constructor(root, collapsed, onToggle, options = {}) {
    this.root = root;
    this.collapsed = collapsed;
    this.onToggle = onToggle;
    this.onOpen = options.onOpen || (() => {});
    this.sections = new Map(); // prefix -> {el, grid, count, button}
  }

  /** Whether the section of `prefix` is open (not collapsed). */
  isOpen(prefix) {
    return !this.collapsed.has(prefix);
  }

  /** The section of `prefix` (made on first use). */
  section(prefix) {
    return this.sections.get(prefix) || this.add(prefix);
  }

  /**
   * For a page that builds cards lazily: the section says `shown` of `total` and is hidden
   * when nothing in it matches; `forceOpen` shows its grid even while collapsed (a search).
   */
  setCount(prefix, shown, total, forceOpen = false) {
    const s = this.section(prefix);
    s.count.textContent = shown === total ? `${total}` : `${shown} of ${total}`;
    s.el.hidden = shown === 0;
    const open = forceOpen || this.isOpen(prefix);
    s.grid.hidden = !open;
    s.button.setAttribute('aria-expanded', String(open));
  }

  /** The grid a chart of `name` goes in (its section made on first use). */
  grid(name) {
    const prefix = prefixOf(name);
    let s = this.sections.get(prefix);
    if (!s) s = this.add(prefix);
    return s.grid;
  }

  add(prefix) {
    const open = !this.collapsed.has(prefix);
    const title = prefix === UNGROUPED ? 'Charts' : prefix === SYSTEM ? 'System' : prefix;
    const count = h('span', { class: 'muted small' });
    const grid = h('div', { class: 'charts', hidden: !open });
    const button = h('button', { type: 'button', class: 'section-toggle', 'aria-expanded': String(open) }, h('span', { class: 'caret', 'aria-hidden': 'true' }), title);
    const el = h('section', { class: 'chart-section', 'aria-label': `Section ${title}`, dataset: { section: prefix } },
      h('h2', { class: 'section-head' }, button, count), grid);
    button.addEventListener('click', () => {
      const opening = button.getAttribute('aria-expanded') !== 'true';
      button.setAttribute('aria-expanded', String(opening));
      grid.hidden = !opening;
      if (opening) this.collapsed.delete(prefix);
      else this.collapsed.add(prefix);
      this.onToggle(this.collapsed);
      if (opening) this.onOpen(prefix);
    });
    const s = { el, grid, count, button };
    this.sections.set(prefix, s);
    const after = [...this.sections.keys()].filter((p) => p !== prefix).sort(before)
      .find((p) => before(p, prefix) > 0);
    if (after !== undefined) this.root.insertBefore(el, this.sections.get(after).el);
    else this.root.append(el);
    return s;
  }

  /** Counts the charts each section shows (a filter may hide some) and hides empty sections. */
  refresh() {
    for (const s of this.sections.values()) {
      const cards = [...s.grid.children];
      const shown = cards.filter((c) => !c.hidden).length;
      s.count.textContent = shown === cards.length ? `${cards.length}` : `${shown} of ${cards.length}`;
      s.el.hidden = shown === 0;
    }
  }
}
