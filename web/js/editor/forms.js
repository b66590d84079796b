// The config fields of each task type (docs/API.md "Configs"). Each control
// carries the definition's field name (`config.url`), so problems found by
// the browser or named by the server land on it.
//
// ctx: { task() -> the current task object, set(mutate(config, task), coalesce),
//        local(field, message|null) -> a form-local error (unparsable input),
//        model, rerender() }

import { h, field } from '../ui.js';
import { HTTP_METHODS, LOG_LEVELS, textDurationMs } from './rules.js';

const str = (v) => (v === undefined || v === null ? '' : String(v));
const json = (v) => (v === undefined ? '' : JSON.stringify(v, null, 2));

/** A fieldset with its own error box; `name` is the field it stands for. */
export function group(name, legend, ...children) {
  const id = `g-${name.replace(/\W/g, '-')}-${Math.random().toString(36).slice(2, 6)}`;
  return h('fieldset', { class: 'ed-group', dataset: { field: name }, 'aria-describedby': `${id}-err` },
    h('legend', {}, legend), children, h('div', { class: 'field-error', id: `${id}-err`, 'aria-live': 'polite' }));
}

function control(fieldEl) { return fieldEl.querySelector('input, select, textarea'); }

/** A text field bound to config[key]; empty deletes the key unless `keepEmpty`. */
function textField(ctx, key, label, opts = {}) {
  const c = ctx.task().config || {};
  const f = field({ name: `config.${key}`, label, type: opts.type || 'text', value: str(c[key]), hint: opts.hint, rows: opts.rows, attrs: opts.attrs });
  const input = control(f);
  input.dataset.secretTarget = opts.secrets === false ? '' : label;
  input.addEventListener('input', () => {
    const v = input.value;
    ctx.set((cfg) => { if (v === '' && !opts.keepEmpty) delete cfg[key]; else cfg[key] = v; }, `config.${key}`);
  });
  return f;
}

/** A JSON textarea bound to config[key]; unparsable text is a local error. */
function jsonField(ctx, key, label, opts = {}) {
  const c = ctx.task().config || {};
  const f = field({ name: `config.${key}`, label, type: 'textarea', rows: opts.rows || 4, value: json(c[key]), hint: opts.hint, attrs: { class: 'code' } });
  const input = control(f);
  input.dataset.secretTarget = label;
  input.addEventListener('input', () => {
    const text = input.value.trim();
    if (!text) { ctx.local(`config.${key}`, null); ctx.set((cfg) => { delete cfg[key]; }, `config.${key}`); return; }
    let v;
    try { v = JSON.parse(text); } catch (e) { ctx.local(`config.${key}`, `Not valid JSON: ${e.message}`); return; }
    if (opts.object && (v === null || typeof v !== 'object' || Array.isArray(v))) { ctx.local(`config.${key}`, `${label} must be a JSON object`); return; }
    ctx.local(`config.${key}`, null);
    ctx.set((cfg) => { cfg[key] = v; }, `config.${key}`);
  });
  return f;
}

function selectField(ctx, key, label, options, def) {
  const c = ctx.task().config || {};
  const f = field({ name: `config.${key}`, label, type: 'select', options, value: str(c[key] ?? def) });
  const input = control(f);
  input.addEventListener('change', () => ctx.set((cfg) => { cfg[key] = input.value; }));
  return f;
}

function headersGroup(ctx) {
  const c = ctx.task().config || {};
  const rows = Object.entries(c.headers && typeof c.headers === 'object' ? c.headers : {}).map(([n, v]) => ({ n, v: str(v) }));
  const list = h('div', { class: 'ed-headers' });
  const write = () => ctx.set((cfg) => {
    const out = {};
    for (const r of rows) if (r.n.trim()) out[r.n.trim()] = r.v;
    if (Object.keys(out).length) cfg.headers = out; else delete cfg.headers;
  }, 'config.headers');
  const draw = () => {
    list.replaceChildren(...rows.map((r, i) => {
      const name = h('input', { type: 'text', value: r.n, 'aria-label': `Header ${i + 1} name`, placeholder: 'Name', autocomplete: 'off' });
      const value = h('input', { type: 'text', value: r.v, 'aria-label': `Header ${i + 1} value`, placeholder: 'Value', autocomplete: 'off', dataset: { secretTarget: `Header ${i + 1} value` } });
      name.addEventListener('input', () => { r.n = name.value; write(); });
      value.addEventListener('input', () => { r.v = value.value; write(); });
      return h('div', { class: 'ed-header-row' }, name, value,
        h('button', { type: 'button', class: 'link', 'aria-label': `Remove header ${i + 1}`, onClick: () => { rows.splice(i, 1); write(); draw(); } }, '✕'));
    }));
  };
  draw();
  return group('config.headers', 'Headers', list,
    h('button', { type: 'button', onClick: () => { rows.push({ n: '', v: '' }); draw(); list.querySelector('.ed-header-row:last-child input')?.focus(); } }, 'Add header'));
}

function bodyField(ctx) {
  const c = ctx.task().config || {};
  let mode = c.body === undefined || typeof c.body === 'string' ? 'text' : 'json';
  const f = field({ name: 'config.body', label: 'Body', type: 'textarea', rows: 4, value: mode === 'text' ? str(c.body) : json(c.body), attrs: { class: 'code' } });
  const input = control(f);
  input.dataset.secretTarget = 'Body';
  const kind = field({ name: 'bodyKind', label: 'Body is', type: 'select', options: [['text', 'text (sent as is)'], ['json', 'JSON']], value: mode });
  const commit = () => {
    const text = input.value;
    if (!text.trim()) { ctx.local('config.body', null); ctx.set((cfg) => { delete cfg.body; }, 'config.body'); return; }
    if (mode === 'text') { ctx.local('config.body', null); ctx.set((cfg) => { cfg.body = text; }, 'config.body'); return; }
    let v;
    try { v = JSON.parse(text); } catch (e) { ctx.local('config.body', `Not valid JSON: ${e.message}`); return; }
    ctx.local('config.body', null);
    ctx.set((cfg) => { cfg.body = v; }, 'config.body');
  };
  input.addEventListener('input', commit);
  control(kind).addEventListener('change', (e) => { mode = e.target.value; commit(); });
  return [kind, f];
}

function http(ctx) {
  const c = ctx.task().config || {};
  const expected = field({ name: 'config.expectedStatus', label: 'Expected status codes', value: Array.isArray(c.expectedStatus) ? c.expectedStatus.join(', ') : '', hint: 'Comma-separated, e.g. 200, 201. Empty: any 2xx.', attrs: { inputmode: 'numeric' } });
  control(expected).addEventListener('input', (e) => {
    const text = e.target.value.trim();
    if (!text) { ctx.local('config.expectedStatus', null); ctx.set((cfg) => { delete cfg.expectedStatus; }, 'config.expectedStatus'); return; }
    const parts = text.split(/[\s,]+/).filter(Boolean);
    if (!parts.every((p) => /^\d+$/.test(p))) { ctx.local('config.expectedStatus', 'Write status codes as numbers separated by commas'); return; }
    ctx.local('config.expectedStatus', null);
    ctx.set((cfg) => { cfg.expectedStatus = parts.map(Number); }, 'config.expectedStatus');
  });
  const follow = field({ name: 'config.followRedirects', label: 'Follow redirects (at most 5)', type: 'checkbox', value: c.followRedirects === true });
  control(follow).addEventListener('change', (e) => ctx.set((cfg) => { if (e.target.checked) cfg.followRedirects = true; else delete cfg.followRedirects; }));
  const max = field({ name: 'config.maxResponseBytes', label: 'Max response bytes', type: 'number', value: str(c.maxResponseBytes), hint: 'Optional; can only lower the server\'s cap.', attrs: { min: 1, step: 1 } });
  control(max).addEventListener('input', (e) => {
    const text = e.target.value.trim();
    if (!text) { ctx.local('config.maxResponseBytes', null); ctx.set((cfg) => { delete cfg.maxResponseBytes; }, 'config.maxResponseBytes'); return; }
    const n = Number(text);
    if (!Number.isFinite(n)) { ctx.local('config.maxResponseBytes', 'Write a number of bytes'); return; }
    ctx.local('config.maxResponseBytes', null);
    ctx.set((cfg) => { cfg.maxResponseBytes = n; }, 'config.maxResponseBytes');
  });
  return [
    selectField(ctx, 'method', 'Method', HTTP_METHODS, 'GET'),
    textField(ctx, 'url', 'URL', { hint: 'http:// or https://, or a {{ template }}', keepEmpty: true, attrs: { inputmode: 'url', autocomplete: 'off', spellcheck: 'false' } }),
    headersGroup(ctx),
    bodyField(ctx),
    expected, follow, max,
    textField(ctx, 'integration', 'Integration id', { hint: 'Optional: an http_auth integration (int_…) that signs the request.', secrets: false, attrs: { autocomplete: 'off' } }),
  ];
}

function log(ctx) {
  return [
    textField(ctx, 'message', 'Message', { type: 'textarea', rows: 3, hint: 'Templates allowed: {{ input.x }}, {{ tasks.k.output }}' }),
    selectField(ctx, 'level', 'Level', LOG_LEVELS, 'Info'),
  ];
}

function delay(ctx) {
  const c = ctx.task().config || {};
  const mode = 'until' in c && !('duration' in c) ? 'until' : 'duration';
  const radio = (value, label) => {
    const id = `dm-${value}-${Math.random().toString(36).slice(2, 6)}`;
    const r = h('input', { type: 'radio', name: 'delayMode', id, value, checked: mode === value });
    r.addEventListener('change', () => {
      ctx.set((cfg) => {
        if (value === 'duration') { delete cfg.until; cfg.duration = cfg.duration || '30s'; } else { delete cfg.duration; cfg.until = cfg.until || ''; }
      });
      ctx.rerender('delayMode');
    });
    return h('span', { class: 'ed-radio' }, r, h('label', { for: id }, label));
  };
  const out = [group('delayMode', 'Wait', radio('duration', 'for a duration'), radio('until', 'until a time'))];
  if (mode === 'duration') {
    const f = textField(ctx, 'duration', 'Duration', { hint: 'e.g. 500ms, 30s, 5m, 1h30m (at most 366 days)', keepEmpty: true, secrets: false });
    const input = control(f);
    input.addEventListener('input', () => ctx.local('config.duration', textDurationMs(input.value) === null && input.value.trim() ? 'Write a duration such as 500ms, 30s, 5m or 1h30m' : null));
    out.push(f);
  } else {
    out.push(textField(ctx, 'until', 'Until', { hint: 'RFC 3339 time (2026-12-01T09:00:00Z) or a {{ template }}', keepEmpty: true, secrets: false }));
  }
  return out;
}

/** Checkboxes naming tasks that depend on the condition (its branch targets). */
function branchGroup(ctx, branch, legend) {
  const t = ctx.task();
  const children = ctx.model.tasks.filter((x) => Array.isArray(x.dependsOn) && x.dependsOn.includes(t.key));
  const chosen = new Set(Array.isArray(t.config?.[branch]) ? t.config[branch] : []);
  const boxes = children.map((x) => {
    const id = `br-${branch}-${x.uid}`;
    const cb = h('input', { type: 'checkbox', id, checked: chosen.has(x.key), value: x.key });
    cb.addEventListener('change', () => ctx.set((cfg) => {
      const list = new Set(Array.isArray(cfg[branch]) ? cfg[branch] : []);
      if (cb.checked) list.add(x.key); else list.delete(x.key);
      if (list.size) cfg[branch] = [...list]; else delete cfg[branch];
    }));
    return h('div', { class: 'ed-check' }, cb, h('label', { for: id }, x.name ? `${x.name} (${x.key})` : x.key));
  });
  return group(`config.${branch}`, legend, boxes.length ? boxes : h('p', { class: 'hint' }, 'Connect tasks after this one to choose them here.'));
}

function condition(ctx) {
  return [
    textField(ctx, 'expression', 'Expression', { type: 'textarea', rows: 2, keepEmpty: true, secrets: false, hint: 'e.g. input.total > 100 && tasks.fetch.output.status == 200 (secrets cannot be read here)', attrs: { class: 'code' } }),
    branchGroup(ctx, 'then', 'Then: run these when true'),
    branchGroup(ctx, 'else', 'Else: run these when false'),
  ];
}

function external(ctx) {
  return [
    textField(ctx, 'queue', 'Queue', { keepEmpty: true, secrets: false, hint: '1 to 64 letters, digits, ".", "_" or "-"; workers poll it', attrs: { autocomplete: 'off' } }),
    jsonField(ctx, 'input', 'Input (JSON)', { object: true, hint: 'Sent to the worker, templates resolved (secrets included).' }),
  ];
}

const transform = (ctx) => [jsonField(ctx, 'output', 'Output (JSON)', { rows: 6, hint: 'JSON built from templates, e.g. {"total": "{{ tasks.sum.output.value }}"}' })];
const noop = (ctx) => [
  h('p', { class: 'hint' }, 'A no-op task has no required settings.'),
  jsonField(ctx, 'output', 'Output (JSON, optional)', { hint: 'Passed on as the task\'s output.' }),
];

export const CONFIG_FORMS = { http, log, delay, condition, external, transform, noop };
