// DOM helpers. Everything is built with createElement and textContent:
// nothing from the server is ever parsed as HTML (the CSP forbids inline
// script anyway; this keeps injected markup inert too).

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, props) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') Object.assign(el.style, v); // CSSOM: allowed by the CSP, unlike style attributes
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === 'value' || k === 'checked' || k === 'selected' || k === 'disabled' || k === 'hidden') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** h('button', {class: 'primary', onClick}, 'Save') */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  apply(el, props);
  append(el, children);
  return el;
}

/** An SVG element: s('rect', {x: 1, y: 2, width: 3, height: 4}) */
export function s(tag, props, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = v;
    else if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }

/** A short message in the live region (screen readers hear it too). kind: info | ok | error */
export function toast(message, kind = 'info') {
  const region = document.getElementById('toasts');
  const t = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message);
  region.append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 4000);
}

/** Page heading + actions row. */
export function pageHeader(title, ...actions) {
  return h('div', { class: 'page-header' }, h('h1', { tabindex: '-1' }, title), h('div', { class: 'actions' }, actions));
}

/** A labelled form field. opts: { name, label, type, value, hint, required, attrs, options (for select), rows } */
export function field(opts) {
  const id = opts.id || `f-${opts.name}-${Math.random().toString(36).slice(2, 7)}`;
  let control;
  if (opts.type === 'select') {
    control = h('select', { id, name: opts.name, ...opts.attrs },
      (opts.options || []).map((o) => {
        const [value, label] = Array.isArray(o) ? o : [o, o];
        return h('option', { value, selected: String(value) === String(opts.value ?? '') }, label);
      }));
  } else if (opts.type === 'textarea') {
    control = h('textarea', { id, name: opts.name, rows: opts.rows || 4, spellcheck: 'false', ...opts.attrs });
    control.value = opts.value ?? '';
  } else if (opts.type === 'checkbox') {
    control = h('input', { id, name: opts.name, type: 'checkbox', checked: !!opts.value, ...opts.attrs });
    return h('div', { class: 'field checkbox' }, control, h('label', { for: id }, opts.label),
      opts.hint ? h('small', { class: 'hint' }, opts.hint) : null, h('div', { class: 'field-error', id: `${id}-err`, 'aria-live': 'polite' }));
  } else {
    control = h('input', { id, name: opts.name, type: opts.type || 'text', value: opts.value ?? '', ...opts.attrs });
  }
  if (opts.required) control.required = true;
  control.setAttribute('aria-describedby', `${id}-err`);
  return h('div', { class: 'field' }, h('label', { for: id }, opts.label), control,
    opts.hint ? h('small', { class: 'hint' }, opts.hint) : null,
    h('div', { class: 'field-error', id: `${id}-err`, 'aria-live': 'polite' }));
}

const camel = (s) => s.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
const snake = (s) => s.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Shows a server error next to the field it names. The server's messages
 * name fields in snake_case or lowerCamelCase ("cron_expression: ...",
 * "invalid config.url ..."); the form's controls carry the camelCase name.
 * `rules` ([[RegExp, name]]) are tried first, for messages that name a field
 * in words ("unknown time zone"). Only shown, enabled controls are marked.
 * Returns the control it marked, or null (then the message goes to the
 * form-level error box, `.form-error`).
 */
export function showError(form, err, rules = []) {
  clearErrors(form);
  const message = err?.message || String(err);
  // Only controls a user can see and fix.
  const controls = [...form.querySelectorAll('[name]')].filter((c) => !c.disabled && !c.closest('[hidden]'));
  const lower = message.toLowerCase();
  const ruled = rules.find(([re, name]) => re.test(message) && controls.some((c) => c.name === name));
  // Longest names first, so `timeZone` wins over `time`.
  controls.sort((a, b) => b.name.length - a.name.length);
  const hit = ruled ? controls.find((c) => c.name === ruled[1]) : controls.find((c) => [c.name, snake(c.name), camel(c.name)]
    .some((v) => new RegExp(`(^|[^a-z0-9_])${escapeRe(v.toLowerCase())}([^a-z0-9_]|$)`).test(lower)));
  const box = hit && (document.getElementById(`${hit.id}-err`) || hit.closest('.field, fieldset')?.querySelector('.field-error'));
  if (box) {
    hit.setAttribute('aria-invalid', 'true');
    box.textContent = message;
    hit.focus();
    return hit;
  }
  let formBox = form.querySelector('.form-error');
  if (!formBox) { formBox = h('div', { class: 'form-error', role: 'alert' }); form.prepend(formBox); }
  formBox.textContent = message;
  formBox.scrollIntoView?.({ block: 'nearest' });
  return null;
}

/** Marks the control named `name` with `message` (or the form, without such a control). */
export function fieldError(form, name, message) {
  const control = form.elements.namedItem(name);
  const box = control && document.getElementById(`${control.id}-err`);
  if (!box) return showError(form, new Error(message));
  control.setAttribute('aria-invalid', 'true');
  box.textContent = message;
  control.focus();
  return control;
}

export function clearErrors(form) {
  form.querySelectorAll('[aria-invalid]').forEach((c) => c.removeAttribute('aria-invalid'));
  form.querySelectorAll('.field-error').forEach((b) => { b.textContent = ''; });
  const box = form.querySelector('.form-error');
  if (box) box.textContent = '';
}

/** A modal <dialog>; resolves with the value `build` passes to close(), or null. */
export function dialog(title, build) {
  return new Promise((resolve) => {
    const d = h('dialog', { class: 'modal', 'aria-labelledby': 'dlg-title' });
    const close = (value) => { d.close(); d.remove(); resolve(value ?? null); };
    d.append(h('h2', { id: 'dlg-title' }, title), build(close));
    d.addEventListener('cancel', (e) => { e.preventDefault(); close(null); });
    document.body.append(d);
    d.showModal();
  });
}

/** Yes/no question; resolves true or false. */
export function confirmDialog(question, { confirm = 'Confirm', dismiss = 'Cancel', danger = false } = {}) {
  return dialog(question, (close) => h('div', { class: 'actions' },
    h('button', { type: 'button', onClick: () => close(false) }, dismiss),
    h('button', { type: 'button', class: danger ? 'danger' : 'primary', autofocus: true, onClick: () => close(true) }, confirm)))
    .then((v) => v === true);
}

// ---- formatting ----

/** proto3 JSON Duration ("1.500s") or milliseconds -> "1.5 s" */
export function duration(value) {
  if (value === undefined || value === null || value === '') return '—';
  let ms = typeof value === 'string' && value.endsWith('s') ? parseFloat(value) * 1000 : Number(value);
  if (!Number.isFinite(ms)) return String(value);
  if (ms === 0) return '0 ms';
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** Milliseconds between two RFC 3339 timestamps (or to now). */
export function between(start, end) {
  if (!start) return null;
  return (end ? Date.parse(end) : Date.now()) - Date.parse(start);
}

export function time(ts) {
  if (!ts) return '—';
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? String(ts) : d.toLocaleString();
}

export function ago(ts) {
  if (!ts) return '—';
  const diff = (Date.now() - Date.parse(ts)) / 1000;
  const future = diff < 0;
  const a = Math.abs(diff);
  const text = a < 60 ? `${Math.round(a)} s` : a < 3600 ? `${Math.round(a / 60)} min` : a < 86400 ? `${Math.round(a / 3600)} h` : `${Math.round(a / 86400)} d`;
  return future ? `in ${text}` : `${text} ago`;
}

export function money(usd) {
  const n = Number(usd || 0);
  if (n === 0) return '$0.00';
  return n >= 1 ? `$${n.toFixed(2)}` : `$${n.toPrecision(2)}`;
}

/** "EXECUTION_STATUS_SUCCEEDED" / "SUCCEEDED" -> "succeeded" */
export function statusName(status) {
  return String(status || 'unknown').replace(/^(EXECUTION|TASK)_STATUS_/, '').replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase();
}

export function badge(status) {
  const name = statusName(status);
  return h('span', { class: `badge s-${name}` }, name);
}

/** A table from rows; columns: [{ label, cell: (row) => Node|string, class }] */
export function table(columns, rows, { empty = 'Nothing here yet.', caption } = {}) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('div', { class: 'table-wrap' }, h('table', {},
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, columns.map((c) => h('td', { class: c.class, 'data-label': c.label }, c.cell(r))))))));
}

/** Pretty JSON for <pre>. */
export const pretty = (v) => JSON.stringify(v, null, 2);
