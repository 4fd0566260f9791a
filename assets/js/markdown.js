// A small Markdown renderer for run descriptions that builds DOM nodes and never parses HTML:
// markup in the text stays text, so the strict CSP and the page are safe whatever a run's
// author wrote. Supported: headings (#..######), paragraphs (a single newline is a line break,
// as in GitHub comments), **strong**, *emphasis* / _emphasis_, ~~strike~~, `code`, fenced code
// blocks (```), lists (-, *, + and 1.), > quotes, --- rules, [links](https://..) and bare
// http(s) URLs. Links go to http and https only, open in a new tab with rel="noopener
// noreferrer"; any other scheme (javascript:, data:, ...) is shown as plain text.
//
// Bounded: emphasis nests at most MAX_DEPTH deep, and a delimiter with no closer is remembered,
// so a hostile description (10,000 asterisks) costs linear time.

import { h } from './dom.js';

const MAX_DEPTH = 8;
const MAX_LINK = 2000; // characters of a [label](url)

/** markdown(text) -> a <div class="md"> holding the rendered blocks. */
export function markdown(text) {
  return h('div', { class: 'md' }, blocks(String(text || '').replace(/\r\n?/g, '\n').split('\n')));
}

/** A link target we are willing to follow: an absolute http(s) URL, else null. */
export function safeHref(raw) {
  let u;
  try {
    u = new URL(raw.trim());
  } catch {
    return null;
  }
  return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+.-]*)\s*$/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const BULLET = /^ {0,3}[-*+]\s+(.*)$/;
const ORDERED = /^ {0,3}(\d{1,9})[.)]\s+(.*)$/;
const QUOTE = /^ {0,3}>\s?(.*)$/;

function blocks(lines) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i++; continue; }
    let m = FENCE.exec(line);
    if (m) {
      const closing = new RegExp(`^ {0,3}${m[1][0]}{${m[1].length},}\\s*$`);
      const code = [];
      i++;
      while (i < lines.length && !closing.test(lines[i])) {
        code.push(lines[i]);
        i++;
      }
      i++; // the closing fence (or the end)
      out.push(h('pre', { class: 'md-code' }, h('code', { dataset: m[2] ? { lang: m[2] } : undefined }, code.join('\n'))));
      continue;
    }
    m = HEADING.exec(line);
    if (m) {
      // A description sits under the page's h1 and its panel's h2: # is an h3.
      out.push(h(`h${Math.min(6, m[1].length + 2)}`, { class: 'md-h' }, inline(m[2], 0)));
      i++;
      continue;
    }
    if (RULE.exec(line)) {
      out.push(h('hr'));
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && (m = QUOTE.exec(lines[i]))) { inner.push(m[1]); i++; }
      out.push(h('blockquote', {}, blocks(inner)));
      continue;
    }
    const bullet = BULLET.test(line);
    if (bullet || ORDERED.test(line)) {
      const pattern = bullet ? BULLET : ORDERED;
      const items = [];
      let start = null;
      while (i < lines.length) {
        m = pattern.exec(lines[i]);
        if (m) {
          if (!bullet && start === null) start = Number(m[1]);
          items.push([bullet ? m[1] : m[2]]);
        } else if (items.length && lines[i].trim() && /^\s{2,}/.test(lines[i]) && !FENCE.test(lines[i])) {
          items[items.length - 1].push(lines[i].trim()); // a continuation line of the item
        } else {
          break;
        }
        i++;
      }
      out.push(h(bullet ? 'ul' : 'ol', { start: !bullet && start !== 1 ? String(start) : null },
        items.map((item) => h('li', {}, withBreaks(item)))));
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() && !startsBlock(lines[i])) { para.push(lines[i].trim()); i++; }
    out.push(h('p', {}, withBreaks(para)));
  }
  return out;
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || BULLET.test(line) || ORDERED.test(line);
}

/** Lines of one paragraph or item, each inline-rendered, a <br> between them. */
function withBreaks(lines) {
  const out = [];
  lines.forEach((l, k) => {
    if (k) out.push(h('br'));
    out.push(...inline(l, 0));
  });
  return out;
}

const PUNCT = /[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/;
const WORD = /[\p{L}\p{N}]/u;

/** Inline spans of one line: an array of nodes and strings. */
function inline(text, depth) {
  const out = [];
  let plain = '';
  const flush = () => { if (plain) { out.push(plain); plain = ''; } };
  const noCloser = new Set(); // delimiters known to have no closer further on
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '\\' && i + 1 < text.length && PUNCT.test(text[i + 1])) {
      plain += text[i + 1];
      i += 2;
      continue;
    }
    if (c === '`') {
      let n = 1;
      while (text[i + n] === '`') n++;
      const ticks = '`'.repeat(n);
      const end = noCloser.has(ticks) ? -1 : closingTicks(text, i + n, n);
      if (end < 0) {
        noCloser.add(ticks);
        plain += ticks;
        i += n;
        continue;
      }
      flush();
      let code = text.slice(i + n, end);
      if (code.length > 2 && code.startsWith(' ') && code.endsWith(' ')) code = code.slice(1, -1);
      out.push(h('code', {}, code));
      i = end + n;
      continue;
    }
    if (c === '[' && depth < MAX_DEPTH) {
      const link = parseLink(text, i);
      if (link) {
        flush();
        const href = safeHref(link.url);
        const label = inline(link.label, depth + 1);
        out.push(href ? h('a', { href, rel: 'noopener noreferrer', target: '_blank' }, label) : h('span', {}, label));
        i = link.end;
        continue;
      }
    }
    if ((c === 'h' || c === 'H') && /^https?:\/\//i.test(text.slice(i, i + 8)) && (i === 0 || !WORD.test(text[i - 1]))) {
      let end = i;
      while (end < text.length && !/[\s<>"`]/.test(text[end])) end++;
      let url = text.slice(i, end);
      url = url.replace(/[.,;:!?'*_~]+$/, '');
      while (url.endsWith(')') && count(url, '(') < count(url, ')')) url = url.slice(0, -1);
      const href = safeHref(url);
      if (href && url.length > 8) {
        flush();
        out.push(h('a', { href, rel: 'noopener noreferrer', target: '_blank' }, url));
        i += url.length;
        continue;
      }
    }
    if ((c === '*' || c === '_' || c === '~') && depth < MAX_DEPTH) {
      const double = text[i + 1] === c;
      const delim = double ? c + c : c;
      if (c === '~' && !double) { plain += c; i++; continue; }
      const span = noCloser.has(delim) ? null : emphasis(text, i, delim);
      if (span) {
        flush();
        const tag = c === '~' ? 'del' : double ? 'strong' : 'em';
        out.push(h(tag, {}, inline(span.inner, depth + 1)));
        i = span.end;
        continue;
      }
      if (span === null) noCloser.add(delim);
      plain += delim;
      i += delim.length;
      continue;
    }
    plain += c;
    i++;
  }
  flush();
  return out;
}

function count(s, ch) {
  let n = 0;
  for (const x of s) if (x === ch) n++;
  return n;
}

/** Where a run of exactly n backticks starts at or after `from`, or -1. */
function closingTicks(text, from, n) {
  let j = text.indexOf('`', from);
  while (j >= 0) {
    let k = j;
    while (text[k] === '`') k++;
    if (k - j === n) return j;
    j = text.indexOf('`', k);
  }
  return -1;
}

/** [label](url "title") at i -> {label, url, end} or undefined. */
function parseLink(text, i) {
  let depth = 0;
  let j = i;
  const stop = Math.min(text.length, i + MAX_LINK); // a bracket with no end costs at most this
  for (; j < stop; j++) {
    if (text[j] === '\\') { j++; continue; }
    if (text[j] === '[') depth++;
    else if (text[j] === ']' && --depth === 0) break;
  }
  if (j >= stop || text[j + 1] !== '(') return undefined;
  let close = j + 2;
  for (let open = 1; close < stop; close++) { // (balanced) parentheses may sit inside a URL
    if (text[close] === '(') open++;
    else if (text[close] === ')' && --open === 0) break;
  }
  if (close >= stop) return undefined;
  const target = text.slice(j + 2, close).trim().split(/\s+/)[0] || '';
  return { label: text.slice(i + 1, j), url: target.replace(/^<(.*)>$/, '$1'), end: close + 1 };
}

/**
 * The emphasis opened by `delim` at i: {inner, end}; undefined when this one does not open
 * (a space follows it, or _ inside a word); null when no closer exists anywhere after i, which
 * the caller remembers.
 */
function emphasis(text, i, delim) {
  const n = delim.length;
  const c = delim[0];
  const after = text[i + n];
  if (after === undefined || /\s/.test(after)) return undefined;
  if (c === '_' && i > 0 && WORD.test(text[i - 1])) return undefined;
  let j = text.indexOf(delim, i + n + 1);
  while (j >= 0) {
    const run = runLength(text, j, c);
    const closes = !/\s/.test(text[j - 1]) && (c !== '_' || !WORD.test(text[j + run] || ''));
    // A single * closes only on a run of its own length (so *a **b** c* nests).
    if (closes && (n === 2 ? run >= 2 : run === 1 || run === 3)) return { inner: text.slice(i + n, j), end: j + n };
    j = text.indexOf(delim, j + run);
  }
  return null;
}

function runLength(text, j, c) {
  let k = j;
  while (text[k] === c) k++;
  return k - j;
}
