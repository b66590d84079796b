// The side panel: the selected task's form (per type), the selected
// dependency, or the workflow's own fields when nothing is selected.
// Edits commit to the model as they are typed (one undo entry per field
// and burst of typing); the panel is rebuilt only when the selection
// changes or a change comes from elsewhere (canvas, undo, JSON), so focus
// stays where the user is typing.

import { h, field, clear } from '../ui.js';
import { CONFIG_FORMS, group } from './forms.js';
import {
  TYPES, typeLabel, defaultConfig, uniqueKey, KEY_RE, KEY_RULE, normalizeDuration, ERROR_KINDS,
} from './rules.js';

const SECRET_TYPES = new Set(['http', 'log', 'transform', 'external', 'noop']);
const str = (v) => (v === undefined || v === null ? '' : String(v));
const control = (f) => f.querySelector('input, select, textarea');

/**
 * actions: select(sel), deleteTask(uid), removeEdge(from, to), connect(uid)
 * (keyboard connect mode from that task), problems() -> {tasks: Map, workflow: []},
 * secrets() -> Promise<{names, error}>, status(text), focusNode(uid), readOnly
 */
export function createPanel(model, actions) {
  const el = h('aside', { class: 'ed-panel', 'aria-labelledby': 'ed-panel-title' });
  let sel = null;
  let form = null;
  let body = null;
  let local = new Map();  // field -> message: input the form cannot turn into a value

  el.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && sel?.task && !e.target.closest('dialog')) {
      e.preventDefault();
      actions.focusNode(sel.task);
    }
  });

  function show(selection) {
    sel = selection;
    local = new Map();
    render(false);
  }

  /** Rebuilds the panel; keepScroll: the same selection, redrawn (after undo, say). */
  function render(keepScroll = true) {
    if (sel?.task && !model.byUid(sel.task)) sel = null;
    if (sel?.edge && !(model.byUid(sel.edge[0]) && model.byUid(sel.edge[1]))) sel = null;
    const parts = sel?.task ? taskView(sel.task) : sel?.edge ? edgeView(sel.edge) : workflowView();
    // A fresh scroller starts at the top without forcing a layout.
    const old = body;
    const scroll = keepScroll && old ? old.scrollTop : 0;
    body = h('div', { class: 'ed-panel-body' }, parts.filter(Boolean));
    if (old) el.replaceChild(body, old); else el.append(body);
    if (scroll) body.scrollTop = scroll;
    showProblems();
    return sel;
  }

  // ---- the workflow ----

  function workflowView() {
    form = h('form', { class: 'ed-form', novalidate: true, onSubmit: (e) => e.preventDefault() });
    const name = field({ name: 'name', label: 'Workflow name', value: model.name, attrs: { maxlength: 200, autocomplete: 'off' } });
    control(name).addEventListener('input', (e) => model.commit((m) => { m.name = e.target.value; }, { source: 'panel', kind: 'wf', coalesce: 'wf:name' }));
    const desc = field({ name: 'description', label: 'Description', type: 'textarea', rows: 3, value: model.description });
    control(desc).addEventListener('input', (e) => model.commit((m) => { m.description = e.target.value; }, { source: 'panel', kind: 'wf', coalesce: 'wf:description' }));
    if (actions.readOnly) { control(name).disabled = true; control(desc).disabled = true; }
    const edges = model.edges().length;
    const probs = problemList();
    form.append(h('div', { class: 'form-error', role: 'alert' }), name, desc);
    return [
      h('h2', { id: 'ed-panel-title' }, 'Workflow'),
      form,
      h('p', { class: 'muted' }, `${model.tasks.length} task${model.tasks.length === 1 ? '' : 's'} · ${edges} dependenc${edges === 1 ? 'y' : 'ies'}`),
      probs,
      h('p', { class: 'hint' }, 'Select a task to edit it. Drag from a task\'s right-hand port to the task that should run after it, or use a task\'s "Depends on" list. Press ? for keyboard shortcuts.'),
    ];
  }

  function problemList() {
    const p = actions.problems();
    const items = [];
    for (const t of model.tasks) {
      for (const q of p.tasks.get(t.uid) || []) {
        items.push(h('li', {}, h('button', { type: 'button', class: 'link', onClick: () => actions.focusProblem(t.uid, q.field) }, `${t.key}: ${q.message}`)));
      }
    }
    if (!items.length) return null;
    return h('section', { class: 'ed-problems', 'aria-labelledby': 'ed-probs-h' },
      h('h3', { id: 'ed-probs-h' }, `Problems (${items.length})`), h('ul', {}, items.slice(0, 50)));
  }

  // ---- a dependency ----

  function edgeView([fromUid, toUid]) {
    const a = model.byUid(fromUid), b = model.byUid(toUid);
    form = null;
    return [
      h('h2', { id: 'ed-panel-title' }, 'Dependency'),
      h('p', {}, h('strong', {}, b.name || b.key), ` (${b.key}) runs after `, h('strong', {}, a.name || a.key), ` (${a.key}).`),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'danger', disabled: actions.readOnly, onClick: () => actions.removeEdge(fromUid, toUid) }, 'Remove dependency'),
        h('button', { type: 'button', onClick: () => { actions.select({ task: fromUid }); actions.focusNode(fromUid); } }, `Select ${a.key}`),
        h('button', { type: 'button', onClick: () => { actions.select({ task: toUid }); actions.focusNode(toUid); } }, `Select ${b.key}`)),
      h('p', { class: 'hint' }, 'Delete or Backspace removes the selected dependency; Ctrl+Z brings it back.'),
    ];
  }

  // ---- a task ----

  function taskView(uid) {
    const t = () => model.byUid(uid);
    const task = t();
    const commit = (fn, coalesce) => model.commit(() => fn(t()), { source: 'panel', kind: 'task', uid, coalesce: coalesce ? `${uid}:${coalesce}` : null });
    const setConfig = (fn, coalesce) => commit((x) => {
      if (!x.config || typeof x.config !== 'object' || Array.isArray(x.config)) x.config = {};
      fn(x.config, x);
    }, coalesce);
    const setLocal = (name, message) => {
      if (message) local.set(name, message); else local.delete(name);
      showProblems();
    };

    form = h('form', { class: 'ed-form', novalidate: true, onSubmit: (e) => e.preventDefault() });

    // Identity.
    const name = field({ name: 'name', label: 'Name', value: str(task.name), attrs: { maxlength: 200, autocomplete: 'off' } });
    const key = field({ name: 'key', label: 'Key', value: str(task.key), hint: 'Names the task in "depends on" and templates ({{ tasks.KEY.output }}).', attrs: { autocomplete: 'off', spellcheck: 'false', maxlength: 64 } });
    const keyInput = control(key);
    control(name).addEventListener('input', (e) => {
      const v = e.target.value;
      commit((x) => {
        x.name = v;
        if (model.autoKey.has(uid)) {
          const taken = model.keys();
          taken.delete(x.key);
          const k = uniqueKey(v || x.action || 'task', taken);
          model.renameKey(x, k);
          keyInput.value = k;
        }
      }, 'name');
    });
    const checkKey = (v) => {
      if (v === t().key) return null;
      if (!KEY_RE.test(v)) return `key "${v}" ${KEY_RULE}`;
      if (model.byKey(v)) return `key "${v}" is already used by another task; task keys must be unique`;
      return null;
    };
    keyInput.addEventListener('input', () => setLocal('key', checkKey(keyInput.value.trim())));
    keyInput.addEventListener('change', () => {
      const v = keyInput.value.trim();
      const problem = checkKey(v);
      setLocal('key', problem);
      if (problem || v === t().key) return;
      commit((x) => { model.renameKey(x, v); model.autoKey.delete(uid); });
    });
    const desc = field({ name: 'description', label: 'Description', type: 'textarea', rows: 2, value: str(task.description) });
    control(desc).addEventListener('input', (e) => commit((x) => { if (e.target.value) x.description = e.target.value; else delete x.description; }, 'description'));
    const known = TYPES.some(([v]) => v === task.action);
    const type = field({ name: 'action', label: 'Type', type: 'select', value: task.action,
      options: [...TYPES.map(([v, l]) => [v, l]), ...(known ? [] : [[task.action, `${task.action} (unknown)`]])] });
    control(type).addEventListener('change', (e) => {
      const v = e.target.value;
      commit((x) => { x.action = v; x.config = defaultConfig(v); });
      local = new Map();
      render();
      form.querySelector('[name="action"]')?.focus();
    });

    // Type-specific settings.
    const ctx = {
      task: t, model, set: setConfig, local: setLocal,
      rerender: (focusName) => { render(); form.querySelector(`[name="${focusName}"]:checked, [name="${focusName}"]`)?.focus(); },
    };
    const make = CONFIG_FORMS[task.action];
    const configBox = h('fieldset', { class: 'ed-group ed-config', dataset: { field: 'config' } },
      h('legend', {}, `${typeLabel(task.action)} settings`),
      make ? make(ctx) : h('p', { class: 'hint' }, 'This type has no form here; edit its config in the JSON view.'),
      h('div', { class: 'field-error', 'aria-live': 'polite' }));

    form.append(h('div', { class: 'form-error', role: 'alert' }), name, key, desc, type, configBox);
    if (SECRET_TYPES.has(task.action)) form.append(secretsBox(configBox));
    form.append(depsGroup(uid, commit));
    form.append(timeoutField(t, commit, setLocal));
    form.append(retryBox(t, commit, setLocal));
    if (actions.readOnly) form.querySelectorAll('input, select, textarea, button').forEach((c) => { c.disabled = true; });

    return [
      h('div', { class: 'ed-panel-head' },
        h('h2', { id: 'ed-panel-title' }, 'Task ', h('span', { class: 'muted' }, task.key)),
        h('button', { type: 'button', class: 'link', onClick: () => actions.select(null) }, 'Workflow settings')),
      form,
      h('div', { class: 'actions ed-task-actions' },
        h('button', { type: 'button', disabled: actions.readOnly, onClick: () => actions.connect(uid) }, 'Connect to…'),
        h('button', { type: 'button', class: 'danger', disabled: actions.readOnly, onClick: () => actions.deleteTask(uid) }, 'Delete task')),
    ];
  }

  function secretsBox(configBox) {
    const id = `sec-${Math.random().toString(36).slice(2, 7)}`;
    const select = h('select', { id, name: 'secretName', disabled: true }, h('option', { value: '' }, 'Loading…'));
    const into = h('span', { class: 'muted' });
    const targets = () => [...configBox.querySelectorAll('[data-secret-target]')].filter((c) => c.dataset.secretTarget);
    let target = targets()[0] || null;
    const showTarget = () => { into.textContent = target ? `Inserts into: ${target.dataset.secretTarget}` : 'No field here takes a secret.'; };
    configBox.addEventListener('focusin', (e) => { if (e.target.dataset?.secretTarget) { target = e.target; showTarget(); } });
    showTarget();
    const insert = h('button', { type: 'button', disabled: true, onClick: () => {
      if (!target || !target.isConnected) target = targets()[0] || null;
      if (!target || !select.value) return;
      const ref = `{{secrets.${select.value}}}`;
      const start = target.selectionStart ?? target.value.length, end = target.selectionEnd ?? start;
      target.setRangeText(ref, start, end, 'end');
      target.dispatchEvent(new Event('input', { bubbles: true }));
      target.focus();
      actions.status(`Inserted ${ref} into ${target.dataset.secretTarget}.`);
    } }, 'Insert reference');
    const note = h('p', { class: 'hint' }, 'References are resolved when the task runs; the value never appears in the definition.');
    actions.secrets().then(({ names, error }) => {
      clear(select);
      if (error) { select.append(h('option', { value: '' }, '—')); note.textContent = `Secrets could not be listed: ${error}`; return; }
      if (!names.length) {
        select.append(h('option', { value: '' }, 'No secrets yet'));
        note.replaceChildren('This organization has no secrets yet. ', h('a', { href: '#/secrets' }, 'Add one on the Secrets page'), '.');
        return;
      }
      names.forEach((n) => select.append(h('option', { value: n }, n)));
      select.disabled = !!actions.readOnly;
      insert.disabled = !!actions.readOnly;
    });
    return h('fieldset', { class: 'ed-group' }, h('legend', {}, 'Secrets'),
      h('div', { class: 'field' }, h('label', { for: id }, 'Secret'), select), h('div', { class: 'actions' }, insert, into), note);
  }

  /** Keys of the tasks that run after `key` (directly or not). */
  function descendants(key) {
    const children = new Map();
    for (const t of model.tasks) {
      for (const d of Array.isArray(t.dependsOn) ? t.dependsOn : []) {
        if (!children.has(d)) children.set(d, []);
        children.get(d).push(t.key);
      }
    }
    const seen = new Set();
    const stack = [key];
    while (stack.length) {
      for (const c of children.get(stack.pop()) || []) if (!seen.has(c)) { seen.add(c); stack.push(c); }
    }
    return seen;
  }

  const INLINE_DEPS = 40;  // more candidates than this: the full list opens on demand

  function depsGroup(uid, commit) {
    const wrap = h('div');
    let open = false;
    const row = (o, me, deps, after) => {
      const cbId = `dep-${uid}-${o.uid}`;
      const on = deps.has(o.key);
      const cycle = !on && after.has(o.key);
      const cb = h('input', { type: 'checkbox', id: cbId, checked: on, disabled: cycle, value: o.key });
      cb.addEventListener('change', () => {
        commit((x) => {
          if (cb.checked) x.dependsOn = [...(Array.isArray(x.dependsOn) ? x.dependsOn : []), o.key];
          else model.removeEdge(o.uid, uid);
        });
        actions.status(cb.checked ? `"${me.key}" now runs after "${o.key}".` : `"${me.key}" no longer runs after "${o.key}".`);
        draw(o.key);
      });
      return h('div', { class: 'ed-check' }, cb, h('label', { for: cbId }, o.name && o.name !== o.key ? `${o.key} — ${o.name}` : o.key,
        cycle ? h('span', { class: 'muted' }, ' (would make a cycle)') : null));
    };
    const draw = (focusKey) => {
      const me = model.byUid(uid);
      const deps = new Set(Array.isArray(me.dependsOn) ? me.dependsOn : []);
      const others = model.tasks.filter((o) => o.uid !== uid);
      // Depending on a task that already runs after this one would make a cycle.
      const after = descendants(me.key);
      let body;
      if (!others.length) body = h('p', { class: 'hint' }, 'No other tasks yet.');
      else if (others.length <= INLINE_DEPS) body = h('div', { class: 'ed-scroll-list' }, others.map((o) => row(o, me, deps, after)));
      else {
        // A large workflow: the chosen ones inline, every candidate when asked (fast selection).
        const chosen = others.filter((o) => deps.has(o.key));
        const list = h('div', { class: 'ed-scroll-list' });
        const more = h('details', { class: 'ed-deps-more', open },
          h('summary', {}, `Choose from all ${others.length} tasks`), list);
        const fill = () => { if (!list.firstChild) list.append(...others.map((o) => row(o, me, deps, after))); };
        more.addEventListener('toggle', () => { open = more.open; if (open) fill(); });
        if (open) fill();
        body = [chosen.length ? chosen.map((o) => row(o, me, deps, after)) : h('p', { class: 'hint' }, 'None: it starts first.'), more];
      }
      const g = group('dependsOn', 'Depends on (runs after)', body);
      wrap.replaceChildren(g);
      if (focusKey) {
        const boxes = [...g.querySelectorAll(`input[value="${CSS.escape(focusKey)}"]`)];
        (boxes.find((b) => b.closest('details')) && open ? boxes.find((b) => b.closest('details')) : boxes[0])?.focus();
        showProblems();
      }
    };
    draw();
    return wrap;
  }


  function durationInput(name, label, hint, value, onValue, setLocal) {
    const f = field({ name, label, value: str(value), hint, attrs: { autocomplete: 'off', spellcheck: 'false' } });
    const input = control(f);
    input.addEventListener('input', () => {
      const v = normalizeDuration(input.value);
      if (v === null) { setLocal(name, 'Write a duration such as 30s, 1.5s, 500ms, 5m or 1h30m'); return; }
      setLocal(name, null);
      onValue(v);
    });
    input.addEventListener('change', () => { const v = normalizeDuration(input.value); if (v) input.value = v; });
    return f;
  }

  function timeoutField(t, commit, setLocal) {
    return durationInput('timeout', 'Timeout', 'Per attempt, e.g. 30s, 1.5s, 5m (at most 7 days). Empty: the type\'s default.', t().timeout,
      (v) => commit((x) => { if (v === '') delete x.timeout; else x.timeout = v; }, 'timeout'), setLocal);
  }

  function retryBox(t, commit, setLocal) {
    const box = h('details', { class: 'ed-retry', open: !!t().retry });
    const draw = () => {
      const r = t().retry;
      const on = r !== undefined;
      const toggle = field({ name: 'retry', label: 'Retry failed attempts', type: 'checkbox', value: on });
      control(toggle).addEventListener('change', (e) => {
        commit((x) => { if (e.target.checked) x.retry = { maxAttempts: 3 }; else delete x.retry; });
        draw();
        box.querySelector('[name="retry"]').focus();
      });
      const parts = [h('summary', {}, 'Retry policy', h('span', { class: 'muted' }, on ? ' (set)' : ' (none)')), toggle];
      if (on && r && typeof r === 'object') {
        const set = (k, v, coalesce) => commit((x) => {
          if (!x.retry || typeof x.retry !== 'object') x.retry = {};
          if (v === undefined) delete x.retry[k]; else x.retry[k] = v;
        }, coalesce);
        const num = (k, label, hint, attrs) => {
          const f = field({ name: `retry.${k}`, label, type: 'number', value: str(r[k]), hint, attrs });
          control(f).addEventListener('input', (e) => {
            const text = e.target.value.trim();
            if (!text) { setLocal(`retry.${k}`, null); set(k, undefined, `retry.${k}`); return; }
            const n = Number(text);
            if (!Number.isFinite(n)) { setLocal(`retry.${k}`, 'Write a number'); return; }
            setLocal(`retry.${k}`, null);
            set(k, n, `retry.${k}`);
          });
          return f;
        };
        const dur = (k, label, hint) => durationInput(`retry.${k}`, label, hint, r[k], (v) => set(k, v === '' ? undefined : v, `retry.${k}`), setLocal);
        const kinds = new Set(Array.isArray(r.retryableErrors) ? r.retryableErrors : []);
        const kindBoxes = ERROR_KINDS.map((k) => {
          const id = `rk-${k}-${Math.random().toString(36).slice(2, 6)}`;
          const cb = h('input', { type: 'checkbox', id, checked: kinds.has(k), value: k });
          cb.addEventListener('change', () => {
            if (cb.checked) kinds.add(k); else kinds.delete(k);
            set('retryableErrors', ERROR_KINDS.filter((x) => kinds.has(x)));
          });
          return h('span', { class: 'ed-check' }, cb, h('label', { for: id }, k));
        });
        const cont = field({ name: 'retry.continueOnFailure', label: 'Continue on failure (dependents still run)', type: 'checkbox', value: r.continueOnFailure === true });
        control(cont).addEventListener('change', (e) => set('continueOnFailure', e.target.checked ? true : undefined));
        parts.push(
          num('maxAttempts', 'Max attempts', '1 to 100, the first included (default 3).', { min: 1, max: 100, step: 1 }),
          dur('initialBackoff', 'Initial backoff', 'Wait before the first retry (default 1s; at most 1 day).'),
          dur('maxBackoff', 'Max backoff', 'Longest wait between attempts (default 60s).'),
          num('backoffMultiplier', 'Backoff multiplier', 'At least 1, at most 100 (default 2).', { min: 1, max: 100, step: 0.1 }),
          num('jitter', 'Jitter', 'A random fraction of each backoff, 0 to 1 (default 0).', { min: 0, max: 1, step: 0.05 }),
          group('retry.retryableErrors', 'Retry only these error kinds (none: all)', h('div', { class: 'ed-kinds' }, kindBoxes)),
          dur('totalTimeout', 'Total timeout', 'All attempts and backoffs together (at most 366 days). Empty: no limit.'),
          cont);
      }
      box.replaceChildren(...parts);
      if (actions.readOnly) box.querySelectorAll('input, select, textarea, button').forEach((c) => { c.disabled = true; });
      showProblems();
    };
    draw();
    return box;
  }

  // ---- problems ----

  /** Puts each problem on its field (browser checks, the server's answer, unparsable input). */
  function showProblems() {
    if (!form) return;
    form.querySelectorAll('[aria-invalid]').forEach((c) => c.removeAttribute('aria-invalid'));
    form.querySelectorAll('.field-error').forEach((b) => { b.textContent = ''; });
    const p = actions.problems();
    const list = sel?.task ? [...(p.tasks.get(sel.task) || [])] : sel ? [] : [...p.workflow];
    for (const [f, message] of local) list.push({ field: f, message });
    const general = [];
    for (const q of list) {
      const input = form.querySelector(`[name="${CSS.escape(q.field)}"]:not([type=radio])`);
      const grp = form.querySelector(`[data-field="${CSS.escape(q.field)}"]`);
      let box = null;
      if (input) {
        input.setAttribute('aria-invalid', 'true');
        box = document.getElementById(`${input.id}-err`);
      }
      if (!box && grp) box = [...grp.children].reverse().find((c) => c.classList.contains('field-error'));
      if (box) {
        box.textContent = box.textContent ? `${box.textContent} ${q.message}` : q.message;
        const details = box.closest('details');
        if (details) details.open = true;
      } else general.push(q.message);
    }
    const top = form.querySelector('.form-error');
    if (top) top.textContent = general.join(' · ');
  }

  function focusField(name) {
    const c = form?.querySelector(`[name="${CSS.escape(name)}"]:not([disabled])`) || form?.querySelector(`[data-field="${CSS.escape(name)}"] input:not([disabled])`);
    if (c) { c.closest('details')?.setAttribute('open', ''); c.focus(); return true; }
    return false;
  }

  return {
    el, show, render, showProblems, focusField,
    get selection() { return sel; },
    /** [field, message] of input the form could not apply (an unparsable duration…), or null. */
    get unapplied() { return local.size ? [...local][0] : null; },
    /** Focuses the task's first field (Enter on a node). */
    focusFirst() {
      const c = form?.querySelector('input[name="name"]');
      if (c) { c.focus(); c.select(); }
    },
  };
}
