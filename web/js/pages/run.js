// Run a workflow (#/workflows/:id/run): its input as JSON, checked as you
// type (line and column of a syntax error; it must be an object), an
// optional idempotency key, timeout and priority, then POST …/execute and
// on to the monitor of the new execution. `?from=<executionId>` starts from
// that execution's input.
import { get, post } from '../api.js';
import { h, field, showError, clearErrors, pretty } from '../ui.js';
import { loadWorkflow, workflowHeader } from '../workflowNav.js';
import { ensureCss } from '../css.js';
import { enc, isAbort, errorText, execPath } from './runs.js';

const KEY_MAX_BYTES = 256;               // APILimits.idempotencyKeyMaxBytes
const RESERVED_KEYS = ['schedule:', 'event:', 'hk_'];
const MAX_TIMEOUT_S = 366 * 86400;       // APILimits.executionTimeout
const DURATION = /^\d+(\.\d{1,9})?s$/;   // proto3 JSON Duration, as the server reads it

const utf8Length = (s) => new TextEncoder().encode(s).length;

/** 0-based offset -> 1-based [line, column]. */
function lineCol(text, pos) {
  const before = text.slice(0, pos).split('\n');
  return [before.length, before[before.length - 1].length + 1];
}

/**
 * Where strict JSON (what the server accepts: no comments, no trailing
 * commas) first goes wrong: {pos, msg}, or null when it is valid. The
 * browser's own JSON.parse messages do not always carry a position.
 */
export function jsonProblem(text) {
  let i = 0;
  const fail = (msg) => { throw { pos: i, msg }; };
  const ws = () => { while (i < text.length && ' \t\n\r'.includes(text[i])) i++; };
  const str = () => {
    i++;
    while (i < text.length) {
      const c = text[i];
      if (c === '"') { i++; return; }
      if (c === '\\') {
        const e = text[i + 1];
        if (e !== undefined && '"\\/bfnrt'.includes(e)) { i += 2; continue; }
        if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) { i += 6; continue; }
        fail('invalid escape in a string');
      }
      if (c < ' ') fail('a line break or control character inside a string (write \\n)');
      i++;
    }
    fail('a string that is never closed (missing ")');
  };
  const num = () => {
    const re = /-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
    re.lastIndex = i;
    const m = re.exec(text);
    if (!m) fail('invalid number');
    i += m[0].length;
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++; ws();
      if (text[i] === '}') { i++; return; }
      for (;;) {
        ws();
        if (text[i] !== '"') fail(text[i] === '}' ? 'a trailing comma before }' : 'expected a "quoted" property name');
        str(); ws();
        if (text[i] !== ':') fail("expected ':' after the property name");
        i++;
        value(); ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return; }
        fail(i >= text.length ? "the object is never closed (missing '}')" : "expected ',' or '}'");
      }
    }
    if (c === '[') {
      i++; ws();
      if (text[i] === ']') { i++; return; }
      for (;;) {
        ws();
        if (text[i] === ']') fail('a trailing comma before ]');
        value(); ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return; }
        fail(i >= text.length ? "the array is never closed (missing ']')" : "expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    if (c === '-' || (c >= '0' && c <= '9')) return num();
    for (const word of ['true', 'false', 'null']) if (text.startsWith(word, i)) { i += word.length; return; }
    if (i >= text.length) fail('unexpected end of input');
    if (c === '/') fail('comments are not allowed in JSON');
    if (c === "'") fail('strings need "double quotes"');
    fail(`unexpected ${JSON.stringify(c)}`);
  };
  try {
    value(); ws();
    if (i < text.length) fail('unexpected text after the JSON value');
    return null;
  } catch (e) {
    if (e && typeof e.pos === 'number') return e;
    throw e;
  }
}

/** The input text checked: {ok, text (what to send), error}. Empty means {}. */
export function checkInput(raw) {
  const text = raw.trim();
  if (!text) return { ok: true, text: '{}' };
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const p = jsonProblem(raw);
    if (!p) return { ok: false, error: e.message };
    const [line, col] = lineCol(raw, p.pos);
    return { ok: false, error: `Line ${line}, column ${col}: ${p.msg}.`, pos: p.pos };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    const kind = value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
    return { ok: false, error: `Input must be a JSON object ({ … }), not ${kind}.` };
  }
  return { ok: true, text };
}

export async function render(main, ctx) {
  ensureCss('monitor');
  const { signal } = ctx;
  const wfId = ctx.params.id;
  const wf = await loadWorkflow(wfId, signal);

  let initial = '{\n  \n}';
  let fromNote = null;
  const from = ctx.query?.from;
  if (from) {
    try {
      const ex = await get(execPath(wfId, from), { signal });
      initial = pretty(ex.input || {});
      fromNote = h('p', { class: 'muted' }, 'Starting from the input of ', h('a', { href: '#' + execPath(wfId, from) }, h('code', {}, from)), '.');
    } catch (e) {
      if (isAbort(e) || signal.aborted) throw e;
      fromNote = h('p', { class: 'form-error', role: 'alert' }, `Could not load the input of ${from}: ${e.message}`);
    }
  }

  const inputField = field({
    name: 'input', label: 'Input (JSON)', type: 'textarea', rows: 10, value: initial,
    hint: 'A JSON object; tasks read it as {{ input.… }}. Empty means {}.',
    attrs: { autocomplete: 'off', autocapitalize: 'off' },
  });
  const textarea = inputField.querySelector('textarea');
  const inputError = inputField.querySelector('.field-error');
  const ok = h('div', { class: 'json-ok', 'aria-live': 'polite' });
  inputField.append(ok);
  const hint = inputField.querySelector('.hint');
  if (hint) { hint.id = `${textarea.id}-hint`; textarea.setAttribute('aria-describedby', `${textarea.id}-err ${hint.id}`); }

  const keyField = field({
    name: 'idempotencyKey', label: 'Idempotency key (optional)',
    hint: 'Running again with the same key returns the execution it started instead of a second one.',
    attrs: { autocomplete: 'off', spellcheck: 'false' },
  });
  const timeoutField = field({
    name: 'timeout', label: 'Timeout (optional)', hint: 'Seconds, like "30s" or "1.5s": the execution ends as timed out after it.',
    attrs: { autocomplete: 'off', spellcheck: 'false', inputmode: 'decimal', placeholder: 'e.g. 300s' },
  });
  const priorityField = field({
    name: 'priority', label: 'Priority', type: 'number', value: '0', hint: '-100 to 100; higher runs first within your organization.',
    attrs: { min: -100, max: 100, step: 1, inputmode: 'numeric' },
  });
  const runButton = h('button', { type: 'submit', class: 'primary' }, 'Run');
  const form = h('form', { class: 'run-form card', novalidate: true, 'aria-labelledby': 'run-title' },
    h('h2', { id: 'run-title' }, 'Run with input'),
    wf.role === 'viewer' ? h('p', { class: 'notice' }, 'You are a viewer of this workflow: only its owner and editors can run it.') : null,
    fromNote,
    h('div', { class: 'form-error', role: 'alert' }),
    inputField,
    h('details', {}, h('summary', {}, 'More options'),
      keyField, h('div', { class: 'row' }, timeoutField, priorityField)),
    h('div', { class: 'actions' }, runButton,
      h('a', { href: `#/workflows/${enc(wfId)}/runs` }, 'See all runs')));
  main.append(workflowHeader(wf, '/run'), form);

  const keyInput = keyField.querySelector('input');
  const timeoutInput = timeoutField.querySelector('input');
  const priorityInput = priorityField.querySelector('input');

  function mark(control, message) {
    const box = document.getElementById(`${control.id}-err`);
    if (message) control.setAttribute('aria-invalid', 'true'); else control.removeAttribute('aria-invalid');
    if (box) box.textContent = message || '';
    return !message;
  }

  function validateInput() {
    const r = checkInput(textarea.value);
    mark(textarea, r.ok ? '' : r.error);
    ok.textContent = r.ok && textarea.value.trim() ? '✓ valid JSON object' : '';
    return r;
  }
  function validateKey() {
    const key = keyInput.value;
    let msg = '';
    if (utf8Length(key) > KEY_MAX_BYTES) msg = `At most ${KEY_MAX_BYTES} bytes (this is ${utf8Length(key)}).`;
    else { const p = RESERVED_KEYS.find((x) => key.startsWith(x)); if (p) msg = `Must not start with "${p}" (reserved for schedules, webhooks and events).`; }
    return mark(keyInput, msg);
  }
  function validateTimeout() {
    const t = timeoutInput.value.trim();
    let msg = '';
    if (t && !DURATION.test(t)) msg = 'Write seconds with an s, like "30s" or "0.5s".';
    else if (t && (parseFloat(t) <= 0 || parseFloat(t) > MAX_TIMEOUT_S)) msg = 'More than 0 s and at most 366 days.';
    return mark(timeoutInput, msg);
  }
  function validatePriority() {
    const v = priorityInput.value.trim();
    const n = Number(v);
    return mark(priorityInput, v === '' || (Number.isInteger(n) && n >= -100 && n <= 100) ? '' : 'A whole number from -100 to 100.');
  }

  textarea.addEventListener('input', validateInput);
  keyInput.addEventListener('input', validateKey);
  timeoutInput.addEventListener('input', validateTimeout);
  priorityInput.addEventListener('input', validatePriority);
  validateInput();

  let retryTimer = null;
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const input = validateInput();
    const good = [input.ok, validateKey(), validateTimeout(), validatePriority()];
    if (good.includes(false)) {
      const first = [textarea, keyInput, timeoutInput, priorityInput][good.indexOf(false)];
      if (first !== textarea) form.querySelector('details').open = true;
      first.focus();
      if (first === textarea && input.pos !== undefined) textarea.setSelectionRange(input.pos, input.pos);
      return;
    }
    // The input goes out as typed (not re-serialized), so big numbers keep their precision.
    let body = `{"input":${input.text}`;
    if (keyInput.value) body += `,"idempotencyKey":${JSON.stringify(keyInput.value)}`;
    if (timeoutInput.value.trim()) body += `,"timeout":${JSON.stringify(timeoutInput.value.trim())}`;
    const priority = Number(priorityInput.value || 0);
    if (priority) body += `,"priority":${priority}`;
    body += '}';
    runButton.disabled = true;
    runButton.textContent = 'Starting…';
    try {
      const res = await post(`/workflows/${enc(wfId)}/execute`, body, { signal });
      ctx.navigate(execPath(wfId, res.executionId));
    } catch (err) {
      if (isAbort(err) || signal.aborted) return;
      const hit = showError(form, { message: errorText(err) });
      const folded = hit?.closest('details');
      if (folded && !folded.open) { folded.open = true; hit.focus(); }
      if (err.status === 429) {
        const wait = Number(err.retryAfter ?? err.body?.retryAfter) || 5;
        runButton.textContent = `Wait ${wait} s`;
        clearTimeout(retryTimer);
        retryTimer = setTimeout(() => { runButton.disabled = false; runButton.textContent = 'Run'; }, wait * 1000);
        return;
      }
      runButton.disabled = false;
      runButton.textContent = 'Run';
    }
  });
  return () => clearTimeout(retryTimer);
}
