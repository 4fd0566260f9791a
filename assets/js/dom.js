// Building DOM without innerHTML: text is never parsed as markup, and no inline style attributes
// (the server's CSP refuses them), so styles go through classes or element.style.

/** h('button', {class: 'primary', onclick: fn}, 'Save') -> an element. */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'value' || key === 'checked' || key === 'disabled' || key === 'hidden' || key === 'selected') el[key] = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A message shown for a few seconds in the corner (screen readers hear it: aria-live). */
export function toast(message, kind = '') {
  const box = document.getElementById('toasts');
  const t = h('div', { class: `toast ${kind}` }, message);
  box.append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 7000 : 3500);
}

/** An empty state: a title and a line of help. */
export function empty(title, ...help) {
  return h('div', { class: 'empty' }, h('strong', {}, title), ...help);
}

/** A page-level error box. */
export function errorBox(err) {
  return h('div', { class: 'banner error', role: 'alert' }, err && err.message ? err.message : String(err));
}

/** Runs an async action from a button: disables it meanwhile and toasts a failure. */
export async function busy(button, action) {
  button.disabled = true;
  try {
    return await action();
  } catch (err) {
    toast(err.message || String(err), 'error');
    return undefined;
  } finally {
    button.disabled = false;
  }
}

/** A labelled form field. */
export function field(label, input) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input);
}

/** A row of toggle buttons (aria-pressed), one of `options` [[key, text]] chosen. */
export function segmented(label, options, current, onPick) {
  const buttons = options.map(([key, text]) => h('button', { type: 'button', 'aria-pressed': String(key === current) }, text));
  buttons.forEach((button, i) => button.addEventListener('click', () => {
    for (const b of buttons) b.setAttribute('aria-pressed', String(b === button));
    onPick(options[i][0]);
  }));
  return h('div', { class: 'control' }, h('span', {}, label), h('div', { class: 'seg', role: 'group', 'aria-label': label }, buttons));
}

/** Asks before a destructive action (window.confirm is keyboard and screen-reader friendly). */
export function confirmDanger(message) {
  return window.confirm(message);
}

/**
 * A button that copies `text`; where the clipboard is refused, it selects the text of `code`
 * (the element showing it) instead, for Ctrl+C.
 */
export function copyButton(code, text, label, attrs = {}) {
  return h('button', { class: 'small', type: 'button', ...attrs, onclick: async () => {
    try {
      await navigator.clipboard.writeText(text);
      toast('Copied');
    } catch {
      const range = document.createRange();
      range.selectNodeContents(code);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      toast('Selected: press Ctrl+C to copy');
    }
  } }, label);
}

/** A secret shown once (an API key, an invitation link) as code with a copy button. */
export function secret(text, label, dataset) {
  const code = h('code', { class: 'mono', dataset }, text);
  return h('div', { class: 'row' }, code, copyButton(code, text, label));
}
