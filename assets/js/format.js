// Numbers, dates and values as a researcher wants to read them.

/** A metric value: 4 significant digits, exponent notation for the very small or large. */
export function num(v) {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'string') return v; // "NaN", "Infinity", "-Infinity"
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-4) return v.toExponential(3).replace(/\.?0+e/, 'e');
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(5)));
}

/** An axis tick: 20k, 1.5M, 0.001, 1e-6. */
export function tick(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return `${Number((v / 1e9).toPrecision(3))}G`;
  if (a >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
  if (a >= 1e4) return `${Number((v / 1e3).toPrecision(3))}k`;
  return num(v);
}

/** An integer with thousands separators. */
export function count(n) {
  return n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US');
}

/** A hyperparameter value of any JSON type. */
export function value(v) {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'number') return num(v);
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

/** "2025-03-01 14:02" in the viewer's time zone. */
export function dateTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** "5 min ago", falling back to the date after a week. */
export function ago(iso) {
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return '–';
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  if (s < 7 * 86400) return `${Math.round(s / 86400)} d ago`;
  return dateTime(iso);
}

/** A value from the API that may be a number or "NaN"/"Infinity"/"-Infinity" -> a JS number. */
export function toNumber(v) {
  if (typeof v === 'number') return v;
  if (v === 'NaN') return NaN;
  if (v === 'Infinity') return Infinity;
  if (v === '-Infinity') return -Infinity;
  if (typeof v === 'string' && v.trim() !== '' && !Number.isNaN(Number(v))) return Number(v);
  return null;
}
