// Helpers the automation pages (schedules, triggers, notifications) share:
// field-targeted errors, copyable text, secret inputs, time formatting.
import { h, clearErrors, showError } from '../ui.js';

/** The control named `name` in `form`: the first one shown (the first of a checkbox group). */
export function control(form, name) {
  const all = [...form.querySelectorAll('[name]')].filter((c) => c.name === name);
  return all.find((c) => !c.closest('[hidden]') && !c.disabled) || all[0] || null;
}

const shown = (c) => !c.closest('[hidden]') && !c.disabled;

/** The error box of a control: its own `<id>-err`, else its field's or fieldset's. */
function errorBox(c) {
  return (c.id && document.getElementById(`${c.id}-err`)) || c.closest('.field, fieldset')?.querySelector('.field-error') || null;
}

/** Puts `message` next to the control named `name` (as showError does); false if it is not shown. */
export function fieldError(form, name, message, { focus = true } = {}) {
  const c = control(form, name);
  const box = c && errorBox(c);
  if (!c || !box || !shown(c)) return false;
  c.setAttribute('aria-invalid', 'true');
  box.textContent = message;
  if (focus) c.focus();
  return true;
}

/** Clears one control's error (the preview does so without touching the rest of the form). */
export function clearFieldError(form, name) {
  const c = control(form, name);
  if (!c) return;
  c.removeAttribute('aria-invalid');
  const box = errorBox(c);
  if (box) box.textContent = '';
}

/**
 * Shows a server (or browser-side) error next to the field it is about:
 * ui.js's showError, with `rules` ([[RegExp, fieldName]]) for messages that
 * name a field in words ("unknown time zone", "event name").
 */
export const showFieldError = (form, err, rules = []) => { showError(form, err, rules); };

/** A browser-side check failed: the same shape as an ApiError's message. */
export class Invalid extends Error {
  constructor(field, message) { super(message); this.field = field; }
}

/** Shows an Invalid next to its field, anything else as showFieldError does. */
export function reportError(form, err, rules = []) {
  if (err instanceof Invalid) {
    clearErrors(form);
    if (!fieldError(form, err.field, err.message)) showFieldError(form, err);
    return;
  }
  showFieldError(form, err, rules);
}

/** A form-level message box (role alert), empty until used. */
export const errorArea = () => h('div', { class: 'form-error', role: 'alert' });

export const utf8Length = (s) => new TextEncoder().encode(s).length;

/** Parses a JSON object typed into a textarea; throws Invalid naming `field`. */
export function jsonObject(text, field) {
  const t = String(text || '').trim();
  if (!t) return {};
  let value;
  try { value = JSON.parse(t); } catch (e) { throw new Invalid(field, `${field} is not valid JSON: ${e.message}`); }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Invalid(field, `${field} must be a JSON object ({…})`);
  return value;
}

/** "3600s" / "1.5s" -> seconds (a number), or null. */
export function seconds(duration) {
  if (duration === undefined || duration === null || duration === '') return null;
  const n = parseFloat(String(duration));
  return Number.isFinite(n) ? n : null;
}

/** An RFC 3339 instant -> the value of a datetime-local input (the browser's zone). */
export function toLocalInput(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A datetime-local value (the browser's zone) -> RFC 3339 UTC, or null when empty. */
export function fromLocalInput(value, field) {
  if (!value) return null;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new Invalid(field, `${field} is not a date and time`);
  return d.toISOString();
}

export const browserZone = () => {
  try { return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'; } catch { return 'UTC'; }
};

let zones = null;
/** IANA zone names the browser knows (for a datalist); the server has the final word. */
export function timeZones() {
  if (!zones) {
    let list = [];
    try { list = Intl.supportedValuesOf('timeZone'); } catch { list = []; }
    zones = [...new Set(['UTC', ...list])];
  }
  return zones;
}

/** An instant shown as wall-clock time in an IANA zone ("Mon, 3 Mar 2027, 09:00:00 CET"). */
export function inZone(ts, zone) {
  if (!ts) return '—';
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts);
  const opts = { weekday: 'short', year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short' };
  try { return new Intl.DateTimeFormat(undefined, { ...opts, timeZone: zone || undefined }).format(d); } catch {
    return new Intl.DateTimeFormat(undefined, opts).format(d);
  }
}

/** `fn` called once input has been quiet for `ms`; .cancel() drops a pending call. */
export function debounce(fn, ms) {
  let t = null;
  const wrapped = (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
  wrapped.cancel = () => clearTimeout(t);
  return wrapped;
}

/** A random secret (hex, `bytes` random bytes) with a prefix. */
export function randomSecret(prefix = 'whsec_', bytes = 24) {
  const b = new Uint8Array(bytes);
  crypto.getRandomValues(b);
  return prefix + [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * Copies `text`: the Clipboard API where the page may use it, else the text
 * is selected in `input` (and execCommand tried) so the user can press Ctrl+C.
 * Never throws; resolves with what happened.
 */
export async function copyText(text, input) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return 'copied';
    }
  } catch { /* denied or unavailable: fall back below */ }
  if (input) {
    input.focus();
    input.select();
    try { if (document.execCommand && document.execCommand('copy')) return 'copied'; } catch { /* not supported */ }
  }
  return 'selected';
}

/** A labelled read-only text field with a Copy button (falls back to select-all). */
export function copyField({ label, value, name = 'copy', hint }) {
  const id = `cp-${name}-${Math.random().toString(36).slice(2, 7)}`;
  const input = h('input', { id, type: 'text', readonly: true, value, class: 'mono', spellcheck: 'false', onFocus: (e) => e.target.select() });
  const status = h('span', { class: 'copy-status muted', role: 'status', 'aria-live': 'polite' });
  const button = h('button', {
    type: 'button', 'aria-describedby': `${id}-st`,
    onClick: async () => {
      const how = await copyText(input.value, input);
      status.textContent = how === 'copied' ? 'Copied.' : 'Selected: press Ctrl+C (⌘C) to copy.';
    },
  }, 'Copy');
  status.id = `${id}-st`;
  return h('div', { class: 'field copy' }, h('label', { for: id }, label),
    h('div', { class: 'copy-row' }, input, button), status, hint ? h('small', { class: 'hint' }, hint) : null);
}

/**
 * A password input with a Show toggle (and an optional Generate button).
 * opts: { name, label, hint, placeholder, generate: () => string, autocomplete }
 */
export function secretField(opts) {
  const id = `f-${opts.name.replace(/[^a-zA-Z0-9_-]/g, '-')}-${Math.random().toString(36).slice(2, 7)}`;
  const input = h('input', {
    id, name: opts.name, type: 'password', autocomplete: opts.autocomplete || 'new-password', spellcheck: 'false',
    placeholder: opts.placeholder || '', 'aria-describedby': `${id}-err`,
  });
  if (opts.required) input.required = true;
  const show = h('button', {
    type: 'button', 'aria-pressed': 'false', 'aria-controls': id, 'aria-label': `Show ${opts.label}`,
    onClick: () => {
      const visible = input.type === 'password';
      input.type = visible ? 'text' : 'password';
      show.setAttribute('aria-pressed', String(visible));
      show.textContent = visible ? 'Hide' : 'Show';
    },
  }, 'Show');
  const gen = opts.generate ? h('button', {
    type: 'button', onClick: () => {
      input.value = opts.generate();
      input.type = 'text';
      show.setAttribute('aria-pressed', 'true');
      show.textContent = 'Hide';
      input.dispatchEvent(new Event('input', { bubbles: true }));
      input.focus();
    },
  }, 'Generate') : null;
  return h('div', { class: 'field' }, h('label', { for: id }, opts.label),
    h('div', { class: 'copy-row' }, input, show, gen),
    opts.hint ? h('small', { class: 'hint' }, opts.hint) : null,
    h('div', { class: 'field-error', id: `${id}-err`, 'aria-live': 'polite' }));
}

/**
 * A group of checkboxes with a legend (a multi-select that works with a
 * keyboard and a screen reader). options: [[value, label, hint?]].
 */
export function checkboxGroup({ name, legend, options, values = [], hint }) {
  const gid = `g-${name}-${Math.random().toString(36).slice(2, 7)}`;
  const chosen = new Set(values);
  return h('fieldset', { class: 'check-group', id: gid, 'aria-describedby': `${gid}-err` },
    h('legend', {}, legend),
    hint ? h('small', { class: 'hint' }, hint) : null,
    h('div', { class: 'check-grid' }, options.map(([value, label, sub], i) => {
      const id = `${gid}-${i}`;
      return h('div', { class: 'check' },
        h('input', { type: 'checkbox', id, name, value, checked: chosen.has(value), 'aria-describedby': sub ? `${id}-d` : undefined }),
        h('label', { for: id }, h('code', {}, label)),
        sub ? h('small', { class: 'hint', id: `${id}-d` }, sub) : null);
    })),
    h('div', { class: 'field-error', id: `${gid}-err`, 'aria-live': 'polite' }));
}

/** The values of the checked boxes named `name`. */
export const checked = (form, name) => [...form.querySelectorAll(`input[type=checkbox][name="${name}"]`)].filter((c) => c.checked).map((c) => c.value);

/** A card section with a heading and an actions row. */
export function section(id, title, actions, ...children) {
  return h('section', { class: 'card auto-section', 'aria-labelledby': id },
    h('div', { class: 'section-head' }, h('h2', { id }, title), h('div', { class: 'actions' }, actions)),
    children);
}

/** Moves focus to an element (and scrolls it into view) once it is in the page. */
export function focusSoon(el) {
  requestAnimationFrame(() => { el?.scrollIntoView?.({ block: 'nearest' }); el?.focus?.({ preventScroll: true }); });
}

/** HTTP header name check of the server (an RFC 9110 token, at most 64 characters). */
export const isHeaderName = (s) => /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$/.test(s);

/** The server's (pragmatic) e-mail address check. */
export function isEmail(s) {
  if (!s || utf8Length(s) > 254) return false;
  const at = s.lastIndexOf('@');
  if (at <= 0) return false;
  const local = s.slice(0, at);
  const domain = s.slice(at + 1);
  if (!local || utf8Length(local) > 64 || !domain || !(domain.includes('.') || domain === 'localhost')) return false;
  return !/[<>()[\],;:\\"\s\x00-\x1f\x7f]/.test(s);
}

/** An http(s) URL with a host and no credentials (the server's checkURL). */
export function checkUrl(text, field) {
  let u;
  try { u = new URL(text); } catch { throw new Invalid(field, `${field} must be an http or https URL with a host`); }
  if (!/^https?:$/.test(u.protocol) || !u.hostname || utf8Length(text) > 2048) throw new Invalid(field, `${field} must be an http or https URL with a host`);
  if (u.username || u.password) throw new Invalid(field, `${field} must not carry credentials (user:password@)`);
}

/** Empties `el` and appends `children` (arrays flattened; null, undefined and false skipped). */
export function fill(el, ...children) {
  while (el.firstChild) el.removeChild(el.firstChild);
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}
