// The definition as editable JSON, kept in sync both ways: canvas and panel
// edits rewrite the text (unless the user is typing in it); text that parses
// as a definition is applied to the model (one undo entry per burst of
// typing); text that does not parse shows the parse error and leaves the
// canvas alone.

import { h } from '../ui.js';

const DEBOUNCE_MS = 350;

/** Problems with the shape of a parsed definition, or null. */
export function shapeError(v) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return 'The definition must be a JSON object: {"name": …, "description": …, "tasks": [ … ]}';
  const extra = Object.keys(v).filter((k) => !['name', 'description', 'tasks'].includes(k));
  if (extra.length) return `Unknown field "${extra[0]}": the definition holds name, description and tasks`;
  if (v.tasks !== undefined && !Array.isArray(v.tasks)) return '"tasks" must be an array';
  const bad = (v.tasks || []).findIndex((t) => t === null || typeof t !== 'object' || Array.isArray(t));
  if (bad >= 0) return `tasks[${bad}] must be an object`;
  return null;
}

/** model: the Model; apply(definition) puts a parsed definition into it. */
export function createJsonView(model, apply) {
  const id = `ed-json-${Math.random().toString(36).slice(2, 6)}`;
  const area = h('textarea', { id, class: 'code', rows: 24, spellcheck: 'false', autocomplete: 'off', 'aria-describedby': `${id}-err ${id}-hint` });
  const error = h('div', { class: 'form-error', id: `${id}-err`, role: 'alert' });
  const el = h('section', { class: 'ed-json', 'aria-label': 'JSON view', hidden: true },
    h('label', { for: id }, 'Definition (JSON)'),
    h('small', { class: 'hint', id: `${id}-hint` }, 'Edits apply to the canvas as you type; node positions are not part of it.'),
    area, error);
  let timer = 0;
  let shown = '';

  function refresh(force) {
    if (el.hidden) return;
    if (!force && document.activeElement === area) return;
    const text = JSON.stringify(model.definition(), null, 2);
    if (text !== shown || force) {
      area.value = text;
      shown = text;
    }
    error.textContent = '';
    area.removeAttribute('aria-invalid');
  }

  function parse() {
    timer = 0;
    const text = area.value;
    let v;
    try { v = JSON.parse(text); } catch (e) {
      error.textContent = `JSON error: ${e.message}. The canvas keeps the last valid definition.`;
      area.setAttribute('aria-invalid', 'true');
      return;
    }
    const shape = shapeError(v);
    if (shape) { error.textContent = shape; area.setAttribute('aria-invalid', 'true'); return; }
    error.textContent = '';
    area.removeAttribute('aria-invalid');
    shown = text;
    apply(v);
  }

  area.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(parse, DEBOUNCE_MS); });
  area.addEventListener('blur', () => {
    if (timer) { clearTimeout(timer); parse(); }
    if (!area.getAttribute('aria-invalid')) refresh(true);
  });

  return {
    el, area, refresh,
    get visible() { return !el.hidden; },
    /** Text that does not parse (the canvas keeps the last valid definition). */
    get invalid() { return !el.hidden && area.getAttribute('aria-invalid') === 'true'; },
    /** Applies typing still waiting for its debounce (before a save). */
    flush() { if (timer) { clearTimeout(timer); parse(); } },
    toggle(on = el.hidden) { el.hidden = !on; if (on) refresh(true); return on; },
    destroy() { clearTimeout(timer); },
  };
}
