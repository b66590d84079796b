// The visual workflow editor: #/workflows/new and #/workflows/:id/edit.
// Pieces: editor/model.js (definition + undo/redo), editor/canvas.js (SVG
// graph), editor/panel.js + forms.js (the selected task's form),
// editor/jsonview.js (the same definition as JSON), editor/rules.js (the
// server's checks, in the browser). Node positions are not part of the
// definition: they live in localStorage per workflow.

import { api, get, post } from '../api.js';
import { h, pageHeader, field, dialog, confirmDialog, toast, clear } from '../ui.js';
import { ensureCss } from '../css.js';
import { session } from '../session.js';
import { workflowHeader, loadWorkflow } from '../workflowNav.js';
import { layoutDag, wouldCycle, NODE_W, NODE_H } from '../dag.js';
import { Model, newUid } from '../editor/model.js';
import { createCanvas } from '../editor/canvas.js';
import { createPanel } from '../editor/panel.js';
import { createJsonView } from '../editor/jsonview.js';
import { TYPES, defaultConfig, validate, parseServerError, uniqueKey, LIMITS } from '../editor/rules.js';

const POS_PREFIX = 'weft.editor.pos.';
const DRAFT_PREFIX = 'weft.editor.draft.';

const SHORTCUTS = [
  ['Tab / Shift+Tab', 'Move between tasks and controls (focusing a task selects it)'],
  ['Enter', 'Edit the focused task (jumps to its form)'],
  ['Escape', 'From the form back to its task; cancel connecting'],
  ['Arrow keys', 'Move the focused task 16 px (with Shift: 64 px)'],
  ['C', 'Connect: on a task, press C, Tab to the task that should run after it, press Enter'],
  ['Delete / Backspace', 'Delete the selected task or dependency'],
  ['Ctrl+Z (⌘Z)', 'Undo'],
  ['Ctrl+Shift+Z, Ctrl+Y', 'Redo'],
  ['Ctrl+S (⌘S)', 'Save as a new version'],
  ['N', 'Go to the palette to add a task'],
  ['+ / −', 'Zoom in / out (also Ctrl or ⌘ + mouse wheel)'],
  ['0', 'Zoom to 100 %'],
  ['F', 'Fit the graph in view'],
  ['L', 'Automatic layout'],
  ['J', 'Show or hide the JSON view'],
  ['?', 'This list'],
  ['Drag', 'A task moves it; its right-hand port connects it; the empty canvas pans'],
];

function readPositions(wfKey) {
  try { return JSON.parse(localStorage.getItem(POS_PREFIX + wfKey) || '{}') || {}; } catch { return {}; }
}

/** Tasks from the server (or a draft) -> model tasks with uids, ids aside. */
function intake(tasks, ids) {
  const taken = new Set(tasks.map((t) => t.key).filter((k) => typeof k === 'string' && k));
  return tasks.map((raw) => {
    const t = {};
    for (const [k, v] of Object.entries(raw)) if (!['id', 'workflowId', 'createdAt', 'updatedAt'].includes(k)) t[k] = v;
    if (t.description === '') delete t.description;
    if (typeof t.key !== 'string' || !t.key) { t.key = uniqueKey(t.name || t.action || 'task', taken); taken.add(t.key); }
    t.uid = newUid();
    if (raw.id) ids.set(t.uid, raw.id);
    return t;
  });
}

/** Positions for tasks: stored ones, then layoutDag for the rest. */
function placeTasks(tasks, stored) {
  const pos = new Map();
  let layout = null;
  for (const t of tasks) {
    const p = stored[t.key];
    if (Array.isArray(p) && Number.isFinite(p[0]) && Number.isFinite(p[1])) pos.set(t.uid, { x: p[0], y: p[1] });
    else {
      layout ||= layoutDag(tasks.map((x) => ({ key: x.key, dependsOn: Array.isArray(x.dependsOn) ? x.dependsOn : [] })));
      const l = layout.get(t.key) || { x: 24, y: 24 };
      pos.set(t.uid, { x: l.x, y: l.y });
    }
  }
  return pos;
}

export async function render(main, ctx) {
  ensureCss('editor');
  const wfId = ctx.params.id || null;
  let wf = wfId ? await loadWorkflow(wfId, ctx.signal) : null;
  if (ctx.signal.aborted) return null;
  const posKey = () => wf?.id || 'new';
  const readOnly = wf?.role === 'viewer';
  const orgId = wf?.orgId || session.orgId;

  const model = new Model();
  let selection = null;
  let saved = '';            // the definition as last loaded or saved (JSON text)
  let dirty = false;
  let saving = false;
  let serverProblem = null;  // {uid|null, field, message}: the server's last refusal
  let problems = { workflow: [], tasks: new Map(), count: 0 };
  let secretsPromise = null;
  const cleanups = [];

  // ---- the page ----
  const header = h('div', {}, wf ? workflowHeader(wf, '/edit') : pageHeader('New workflow'));
  const status = h('p', { class: 'ed-status', role: 'status', 'aria-live': 'polite' });
  const saveError = h('div', { class: 'form-error', role: 'alert' });
  const banner = h('div', { class: 'ed-banner' });
  const say = (text) => { status.textContent = ''; status.textContent = text; };

  const btn = (label, onClick, attrs = {}) => h('button', { type: 'button', onClick, ...attrs }, label);
  const undoBtn = btn('↶ Undo', () => undo(), { 'aria-keyshortcuts': 'Control+Z', title: 'Undo (Ctrl+Z)' });
  const redoBtn = btn('↷ Redo', () => redo(), { 'aria-keyshortcuts': 'Control+Shift+Z Control+Y', title: 'Redo (Ctrl+Shift+Z)' });
  const zoomLabel = h('output', { class: 'ed-zoom', 'aria-live': 'off', 'aria-label': 'Zoom level' }, '100%');
  const jsonBtn = btn('{ } JSON', () => toggleJson(), { 'aria-pressed': 'false', 'aria-keyshortcuts': 'J', title: 'JSON view (J)' });
  const probBtn = btn('', () => gotoFirstProblem(), { class: 'ed-prob-btn', hidden: true });
  const dirtyNote = h('span', { class: 'ed-dirty muted', 'aria-live': 'polite' });
  const saveBtn = btn('Save version…', () => save(), { class: 'primary', 'aria-keyshortcuts': 'Control+S', title: 'Save (Ctrl+S)', disabled: readOnly });
  const toolbar = h('div', { class: 'ed-toolbar', role: 'toolbar', 'aria-label': 'Editor' },
    h('div', { class: 'ed-tools' }, undoBtn, redoBtn),
    h('div', { class: 'ed-tools' },
      btn('−', () => canvas.zoomBy(1 / 1.2), { 'aria-label': 'Zoom out', title: 'Zoom out (-)' }), zoomLabel,
      btn('+', () => canvas.zoomBy(1.2), { 'aria-label': 'Zoom in', title: 'Zoom in (+)' }),
      btn('Fit', () => canvas.fit(), { title: 'Fit the graph (F)', 'aria-keyshortcuts': 'F' })),
    h('div', { class: 'ed-tools' },
      btn('Auto layout', () => autoLayout(), { title: 'Automatic layout (L)', 'aria-keyshortcuts': 'L' }),
      jsonBtn,
      btn('?', () => help(), { 'aria-label': 'Keyboard shortcuts', title: 'Keyboard shortcuts (?)', 'aria-keyshortcuts': 'Shift+?' })),
    h('div', { class: 'ed-tools ed-save' }, probBtn, dirtyNote, saveBtn));

  // The palette: real buttons (click or Enter adds; drag drops where you let go).
  let suppressClick = false;
  const palette = h('section', { class: 'ed-palette', 'aria-labelledby': 'ed-pal-h' },
    h('h2', { id: 'ed-pal-h' }, 'Add a task'),
    h('ul', {}, TYPES.map(([type, label, desc]) => h('li', {},
      h('button', {
        type: 'button', class: 'ed-pal', dataset: { type }, 'aria-label': `Add ${label} task`, disabled: readOnly,
        onClick: () => { if (suppressClick) { suppressClick = false; return; } addTask(type); },
        onPointerdown: (e) => paletteDrag(e, type, label),
      }, h('span', { class: `ed-pal-icon t-${type}`, 'aria-hidden': 'true' }), h('span', {}, h('strong', {}, label), h('small', {}, desc)))))));

  const canvas = createCanvas(model, {
    select: (sel) => select(sel),
    edit: (uid) => { select({ task: uid }); panel.focusFirst(); },
    move: (uid, x, y) => model.commit((m) => { m.pos.set(uid, { x, y }); }, { source: 'canvas', kind: 'move', uid }),
    connect: (from, to) => connect(from, to),
    status: say,
    zoomed: (z) => { zoomLabel.textContent = `${Math.round(z * 100)}%`; },
  });
  const panel = createPanel(model, {
    readOnly,
    select: (sel) => select(sel),
    deleteTask: (uid) => deleteTasks([uid]),
    removeEdge: (from, to) => removeEdge(from, to),
    connect: (uid) => { canvas.focusNode(uid); canvas.startConnect(uid); showCanvas(); },
    problems: () => problems,
    focusProblem: (uid, f) => { select({ task: uid }); canvas.reveal(uid); if (!panel.focusField(f)) panel.focusFirst(); },
    focusNode: (uid) => canvas.focusNode(uid),
    secrets: () => (secretsPromise ||= loadSecrets()),
    status: say,
  });
  const json = createJsonView(model, (def) => applyJson(def));
  if (readOnly) json.area.readOnly = true;  // a viewer reads the JSON, like the form's disabled fields
  const body = h('div', { class: 'ed-body' }, palette, canvas.el, json.el, panel.el);
  const root = h('div', { class: 'ed' }, header, banner, toolbar, saveError, status, body);
  clear(main).append(root);
  if (readOnly) banner.append(h('p', { class: 'ed-note' }, 'You are a viewer of this workflow: you can look around, but not save changes.'));

  /** On a phone the form is below the canvas: scroll the canvas's top to just under the (sticky) top bar. */
  function showCanvas() {
    const r = canvas.el.getBoundingClientRect();
    const bar = document.querySelector('.topbar')?.getBoundingClientRect().bottom || 0;
    if (r.top < bar || r.top > window.innerHeight / 2) window.scrollBy(0, r.top - bar - 8);
  }

  async function loadSecrets() {
    if (!orgId) return { names: [], error: 'no organization selected' };
    try {
      const r = await get(`/orgs/${encodeURIComponent(orgId)}/secrets`, { signal: ctx.signal });
      return { names: (r?.secrets || []).map((s) => s.name).sort(), error: null };
    } catch (e) {
      if (e.name === 'AbortError') return { names: [], error: 'cancelled' };
      return { names: [], error: e.message };
    }
  }

  // ---- loading ----
  function loadFrom(source) {
    const ids = new Map();
    const tasks = intake(source?.tasks || [], ids);
    serverProblem = null;
    selection = null;
    canvas.setSelection(null);
    model.load({ name: source?.name || '', description: source?.description || '', tasks }, placeTasks(tasks, readPositions(posKey())), ids);
    saved = JSON.stringify(model.definition());
    updateChrome();
    panel.show(null);
  }

  // ---- reacting to changes ----
  let posTimer = 0;
  function storePositions() {
    clearTimeout(posTimer);
    posTimer = setTimeout(() => {
      const out = {};
      for (const t of model.tasks) { const p = model.pos.get(t.uid); if (p) out[t.key] = [p.x, p.y]; }
      try { localStorage.setItem(POS_PREFIX + posKey(), JSON.stringify(out)); } catch { /* storage full: positions are a convenience */ }
    }, 250);
  }

  function revalidate() {
    problems = validate({ name: model.name || 'unnamed', description: model.description, tasks: model.tasks });
    if (serverProblem) {
      if (serverProblem.uid && model.byUid(serverProblem.uid)) {
        const list = problems.tasks.get(serverProblem.uid) || [];
        list.unshift({ field: serverProblem.field || 'task', message: serverProblem.message, server: true });
        problems.tasks.set(serverProblem.uid, list);
        problems.count++;
      } else if (!serverProblem.uid) {
        problems.workflow.unshift({ field: serverProblem.field || 'workflow', message: serverProblem.message, server: true });
        problems.count++;
      }
    }
    const marks = new Map();
    for (const [uid, list] of problems.tasks) marks.set(uid, list.map((p) => p.message));
    canvas.setProblems(marks);
    probBtn.hidden = problems.count === 0;
    probBtn.textContent = `⚠ ${problems.count} problem${problems.count === 1 ? '' : 's'}`;
  }

  function updateChrome() {
    undoBtn.disabled = !model.canUndo;
    redoBtn.disabled = !model.canRedo;
    dirty = JSON.stringify(model.definition()) !== saved;
    dirtyNote.textContent = dirty ? 'Unsaved changes' : '';
  }

  function afterChange(d) {
    canvas.sync(d);
    if (d.kind !== 'move') {
      // The server's refusal stands until its task (or the workflow) is edited.
      if (serverProblem && d.source !== 'load' && (d.kind === 'all' || d.uid === serverProblem.uid || (!serverProblem.uid && d.kind === 'wf'))) serverProblem = null;
      revalidate();
      if (d.source !== 'json') json.refresh();
      if (d.source === 'panel') panel.showProblems();
      else if (d.source !== 'load') {
        const before = panel.selection;
        const after = panel.render();
        if (before !== after) { selection = after; canvas.setSelection(after); }
      }
    }
    updateChrome();
    storePositions();
  }
  const onChange = (e) => afterChange(e.detail);
  model.addEventListener('change', onChange);

  // ---- actions ----
  function select(sel) {
    if (sel?.task && !model.byUid(sel.task)) sel = null;
    const same = JSON.stringify(sel) === JSON.stringify(selection);
    selection = sel;
    canvas.setSelection(sel);
    if (!same) panel.show(sel);
  }

  function addTask(type, at) {
    if (model.tasks.length >= LIMITS.maxTasks) { say(`A workflow has at most ${LIMITS.maxTasks} tasks.`); return null; }
    let spot = at;
    if (!spot) {
      const near = selection?.task ? model.pos.get(selection.task) : null;
      spot = canvas.freeSpot(near ? { x: near.x + NODE_W + 64, y: near.y } : null);
    }
    let task = null;
    model.commit((m) => { task = m.addTask(type, defaultConfig(type), spot); }, { source: 'palette', kind: 'all' });
    select({ task: task.uid });
    canvas.focusNode(task.uid);
    say(`Added ${task.key}. Enter edits it; C connects it.`);
    return task;
  }

  function connect(fromUid, toUid) {
    if (readOnly) { say('Viewers cannot change this workflow.'); return false; }
    const a = model.byUid(fromUid), b = model.byUid(toUid);
    if (!a || !b) return false;
    if (fromUid === toUid) { say('A task cannot depend on itself.'); return false; }
    if ((b.dependsOn || []).includes(a.key)) { say(`"${b.key}" already runs after "${a.key}".`); return false; }
    if (wouldCycle(model.tasks, a.key, b.key)) {
      say(`Not connected: "${a.key}" already runs after "${b.key}", so "${b.key}" cannot also run after "${a.key}" — that would make a cycle.`);
      canvas.el.classList.remove('refused');
      void canvas.el.offsetWidth;
      canvas.el.classList.add('refused');
      return false;
    }
    model.commit(() => {
      const t = model.byUid(toUid);
      t.dependsOn = [...(Array.isArray(t.dependsOn) ? t.dependsOn : []), a.key];
    }, { source: 'canvas', kind: 'all' });
    say(`Connected: "${b.key}" now runs after "${a.key}".`);
    return true;
  }

  function deleteTasks(uids) {
    if (readOnly) return;
    const names = uids.map((u) => model.byUid(u)?.key).filter(Boolean);
    const index = model.tasks.findIndex((t) => t.uid === uids[0]);
    model.commit((m) => m.removeTasks(uids), { source: 'canvas', kind: 'all' });
    select(null);
    const next = model.tasks[Math.min(index, model.tasks.length - 1)];
    if (next) canvas.focusNode(next.uid); else canvas.el.focus?.();
    say(`Deleted ${names.join(', ')}. Ctrl+Z brings it back.`);
  }

  function removeEdge(from, to) {
    if (readOnly) return;
    const a = model.byUid(from), b = model.byUid(to);
    model.commit((m) => m.removeEdge(from, to), { source: 'canvas', kind: 'all' });
    select(null);
    say(`Removed the dependency: "${b?.key}" no longer runs after "${a?.key}". Ctrl+Z brings it back.`);
  }

  function undo() { if (model.undo()) say('Undone.'); else say('Nothing to undo.'); }
  function redo() { if (model.redo()) say('Redone.'); else say('Nothing to redo.'); }

  function autoLayout() {
    if (!model.tasks.length) return;
    const layout = layoutDag(model.tasks.map((t) => ({ key: t.key, dependsOn: Array.isArray(t.dependsOn) ? t.dependsOn : [] })));
    model.commit((m) => { for (const t of m.tasks) { const p = layout.get(t.key); if (p) m.pos.set(t.uid, { x: p.x, y: p.y }); } }, { source: 'layout', kind: 'all' });
    canvas.fit();
    say('Laid out the graph. Ctrl+Z restores the old positions.');
  }

  function toggleJson() {
    const on = json.toggle();
    jsonBtn.setAttribute('aria-pressed', String(on));
    root.classList.toggle('with-json', on);
    canvas.resize();
    if (on) json.area.focus();
  }

  /** A parsed definition from the JSON view becomes the model (undoable). */
  function applyJson(def) {
    const oldByKey = new Map(model.tasks.map((t) => [t.key, t.uid]));
    const incoming = def.tasks || [];
    const newKeys = new Set(incoming.map((t) => t.key));
    const used = new Set();
    const taken = new Set(incoming.map((t) => t.key).filter((k) => typeof k === 'string' && k));
    const tasks = incoming.map((raw, i) => {
      const t = { ...raw };
      if (typeof t.key !== 'string' || !t.key) { t.key = uniqueKey(t.name || t.action || 'task', taken); taken.add(t.key); }
      let uid = oldByKey.get(t.key);
      // A renamed key keeps its node when the task at that place lost its key.
      if (!uid && model.tasks[i] && !newKeys.has(model.tasks[i].key)) uid = model.tasks[i].uid;
      if (!uid || used.has(uid)) uid = newUid();
      used.add(uid);
      if (t.id) { model.ids.set(uid, t.id); delete t.id; }
      t.uid = uid;
      return t;
    });
    const fresh = tasks.filter((t) => !model.pos.has(t.uid));
    model.commit((m) => {
      m.name = typeof def.name === 'string' ? def.name : def.name === undefined ? '' : def.name;
      m.description = def.description === undefined ? '' : def.description;
      m.tasks = tasks;
      for (const u of [...m.pos.keys()]) if (!used.has(u)) m.pos.delete(u);
      for (const u of [...m.autoKey]) if (!used.has(u)) m.autoKey.delete(u);
      if (fresh.length) {
        const layout = layoutDag(tasks.map((t) => ({ key: t.key, dependsOn: Array.isArray(t.dependsOn) ? t.dependsOn : [] })));
        for (const t of fresh) m.pos.set(t.uid, canvas.freeSpot(layout.get(t.key) || null));
      }
    }, { source: 'json', kind: 'all', coalesce: 'json' });
  }

  function gotoFirstProblem() {
    if (problems.workflow.length) { select(null); panel.focusField(problems.workflow[0].field); return; }
    for (const t of model.tasks) {
      const list = problems.tasks.get(t.uid);
      if (list) { select({ task: t.uid }); canvas.reveal(t.uid); if (!panel.focusField(list[0].field)) panel.focusFirst(); return; }
    }
  }

  function help() {
    return dialog('Keyboard shortcuts', (close) => h('div', { class: 'ed-help' },
      h('table', {}, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Keys'), h('th', { scope: 'col' }, 'Does'))),
        h('tbody', {}, SHORTCUTS.map(([k, d]) => h('tr', {}, h('td', {}, h('kbd', {}, k)), h('td', {}, d))))),
      h('p', { class: 'hint' }, 'Without a mouse: add tasks with the palette buttons, Tab to a task, press C and pick the next one with Tab and Enter, or tick tasks in the form\'s "Depends on" list.'),
      h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', autofocus: true, onClick: () => close() }, 'Close'))));
  }

  // ---- palette drag ----
  function paletteDrag(e, type, label) {
    if (e.button !== 0 || readOnly) return;
    const source = e.currentTarget;
    const start = { x: e.clientX, y: e.clientY };
    let ghost = null;
    const move = (ev) => {
      if (!ghost) {
        if (Math.hypot(ev.clientX - start.x, ev.clientY - start.y) < 6) return;
        ghost = h('div', { class: 'ed-ghost', 'aria-hidden': 'true' }, label);
        document.body.append(ghost);
      }
      ghost.style.transform = `translate(${ev.clientX - NODE_W / 2}px, ${ev.clientY - NODE_H / 2}px)`;
      const r = canvas.el.getBoundingClientRect();
      canvas.el.classList.toggle('drop-here', ev.clientX >= r.left && ev.clientX <= r.right && ev.clientY >= r.top && ev.clientY <= r.bottom);
    };
    const end = (ev, cancelled) => {
      source.removeEventListener('pointermove', move);
      source.removeEventListener('pointerup', up);
      source.removeEventListener('pointercancel', cancel);
      canvas.el.classList.remove('drop-here');
      if (!ghost) return;
      ghost.remove();
      suppressClick = true;
      setTimeout(() => { suppressClick = false; }, 0);
      if (cancelled) return;
      const r = canvas.el.getBoundingClientRect();
      if (ev.clientX < r.left || ev.clientX > r.right || ev.clientY < r.top || ev.clientY > r.bottom) { say('Drop the task on the canvas to add it.'); return; }
      const w = canvas.toWorld(ev.clientX, ev.clientY);
      addTask(type, { x: w.x - NODE_W / 2, y: w.y - NODE_H / 2 });
    };
    const up = (ev) => end(ev, false);
    const cancel = (ev) => end(ev, true);
    try { source.setPointerCapture(e.pointerId); } catch { /* gone */ }
    source.addEventListener('pointermove', move);
    source.addEventListener('pointerup', up);
    source.addEventListener('pointercancel', cancel);
  }

  // ---- saving ----
  async function save() {
    if (saving || readOnly) return;
    saveError.textContent = '';
    // Edits still in flight count: a field applied on change (the key), JSON typed within the debounce.
    if (panel.el.contains(document.activeElement)) document.activeElement.blur();
    json.flush();
    // Text the form or the JSON view could not apply is not in the definition: say so rather than save without it.
    const pending = panel.unapplied;
    if (pending) {
      say('Not saved.');
      saveError.textContent = `Not saved: a field holds text that is not applied (${pending[1]}). Fix it first.`;
      panel.focusField(pending[0]);
      return;
    }
    if (json.invalid) {
      say('Not saved.');
      saveError.textContent = 'Not saved: the JSON view holds text that does not parse (the canvas has the last valid definition). Fix it, or hide and show the JSON view to drop it.';
      json.area.focus();
      return;
    }
    if (wf && !dirty) { say(`Nothing to save: no changes since version ${wf.version}.`); return; }
    const blocking = validate({ name: model.name || 'unnamed', description: model.description, tasks: model.tasks }).count;
    if (blocking > 0) {
      say(`Fix ${blocking} problem${blocking === 1 ? '' : 's'} before saving.`);
      saveError.textContent = `The definition has ${blocking} problem${blocking === 1 ? '' : 's'}; they are marked on the tasks and fields.`;
      gotoFirstProblem();
      return;
    }
    const answer = await askSave();
    if (!answer) return;
    if (answer.name !== model.name) model.commit((m) => { m.name = answer.name; }, { source: 'save', kind: 'wf' });
    saving = true;
    saveBtn.disabled = true;
    say('Saving…');
    const sentUids = model.tasks.map((t) => t.uid);
    const sent = model.requestBody();
    try {
      let res;
      if (wf) res = await api('PUT', `/workflows/${encodeURIComponent(wf.id)}`, { ...sent, etag: wf.etag }, { raw: true });
      else res = await api('POST', '/workflows', { ...sent, orgId: session.orgId || undefined }, { raw: true });
      const stored = await res.json();
      const warning = res.headers.get('warning');
      const isNew = !wf;
      wf = stored;
      (stored.tasks || []).forEach((t, i) => { if (sentUids[i] && t.id) model.ids.set(sentUids[i], t.id); });
      saved = JSON.stringify(sentDefinition(sent));
      serverProblem = null;
      let labelError = null;
      if (answer.label) {
        try { await post(`/workflows/${encodeURIComponent(stored.id)}/versions`, { label: answer.label }); } catch (e) { labelError = e; }
      }
      if (warning) toast(`Saved, with a warning: ${warning.replace(/^\d+ \S+ /, '').replace(/^"|"$/g, '')}`, 'info');
      if (labelError) saveError.textContent = `Saved version ${stored.version}, but its message was not stored: ${labelError.message}`;
      if (isNew) {
        // Positions and the draft move to the new id.
        try {
          localStorage.setItem(POS_PREFIX + stored.id, localStorage.getItem(POS_PREFIX + 'new') || '{}');
          localStorage.removeItem(POS_PREFIX + 'new');
        } catch { /* best effort */ }
        sessionStorage.removeItem(DRAFT_PREFIX + 'new');
        dirty = false;
        toast(`Created “${stored.name}” (version ${stored.version}).`, 'ok');
        ctx.navigate(`/workflows/${encodeURIComponent(stored.id)}/edit`, { replace: true });
        return;
      }
      header.replaceChildren(workflowHeader(wf, '/edit'));
      updateChrome();
      revalidate();
      panel.render();
      say(`Saved version ${stored.version}${answer.label ? ` — “${answer.label}”` : ''}.`);
      toast(`Saved version ${stored.version}.`, 'ok');
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (e.status === 409 && e.code === 10) { await conflict(); return; }
      showServerError(e, sent.tasks, sentUids);
    } finally {
      saving = false;
      saveBtn.disabled = readOnly;
    }
  }

  /** The definition as sent, without ids (what `saved` compares against). */
  function sentDefinition(sent) {
    return { ...sent, tasks: sent.tasks.map(({ id, ...t }) => t) };
  }

  function showServerError(e, sentTasks, sentUids) {
    const p = parseServerError(e.message, sentTasks);
    const uid = p.index !== null ? sentUids[p.index] : null;
    serverProblem = { uid, field: p.field, message: e.message };
    revalidate();
    saveError.textContent = `The server refused the save: ${e.message}`;
    say('Not saved.');
    if (uid && model.byUid(uid)) {
      select({ task: uid });
      panel.render();
      canvas.reveal(uid);
      if (p.field) panel.focusField(p.field);
    } else if (p.field === 'name' || p.field === 'description') {
      select(null);
      panel.render();
      panel.focusField(p.field);
    }
  }

  function askSave() {
    return dialog(wf ? 'Save a new version' : 'Save the workflow', (close) => {
      const name = field({ name: 'wfName', label: 'Workflow name', value: model.name, required: true, attrs: { maxlength: LIMITS.maxName, autocomplete: 'off' } });
      const label = field({ name: 'label', label: 'Version message', hint: `What changed (at most ${LIMITS.maxLabel} characters). Labels the new version.`, attrs: { maxlength: LIMITS.maxLabel, autocomplete: 'off' } });
      const err = h('div', { class: 'form-error', role: 'alert' });
      const nameInput = name.querySelector('input'), labelInput = label.querySelector('input');
      const form = h('form', { novalidate: true, onSubmit: (ev) => {
        ev.preventDefault();
        const n = nameInput.value;
        const l = labelInput.value.trim();
        if (!n.trim()) { err.textContent = 'workflow name must not be empty'; nameInput.setAttribute('aria-invalid', 'true'); nameInput.focus(); return; }
        if ([...n].length > LIMITS.maxName) { err.textContent = `workflow name is longer than ${LIMITS.maxName} characters`; nameInput.focus(); return; }
        if ([...l].length > LIMITS.maxLabel) { err.textContent = `label is longer than ${LIMITS.maxLabel} characters`; labelInput.setAttribute('aria-invalid', 'true'); labelInput.focus(); return; }
        close({ name: n, label: l });
      } }, err, name, label,
      h('div', { class: 'actions' },
        h('button', { type: 'button', onClick: () => close(null) }, 'Cancel'),
        h('button', { type: 'submit', class: 'primary' }, wf ? 'Save version' : 'Create workflow')));
      setTimeout(() => (model.name ? labelInput : nameInput).focus(), 0);
      return form;
    });
  }

  async function conflict() {
    say('Not saved: someone else saved this workflow first.');
    const reload = await dialog('Someone else saved this workflow', (close) => h('div', {},
      h('p', {}, `Since you opened it, another save made a newer version. Reload to see theirs (your unsaved changes here are lost), or keep editing and copy your changes from the JSON view.`),
      h('div', { class: 'actions' },
        h('button', { type: 'button', onClick: () => close(false) }, 'Keep editing'),
        h('button', { type: 'button', class: 'primary', autofocus: true, onClick: () => close(true) }, 'Reload'))));
    if (!reload) { saveError.textContent = 'Not saved: this workflow changed on the server since you opened it (reload to get the new version).'; return; }
    wf = await loadWorkflow(wf.id, ctx.signal);
    header.replaceChildren(workflowHeader(wf, '/edit'));
    saveError.textContent = '';
    loadFrom(wf);
    say(`Reloaded version ${wf.version}.`);
  }

  // ---- keyboard ----
  const typing = (t) => t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement || t?.isContentEditable;
  function onKey(e) {
    if (document.querySelector('dialog[open]')) return;
    const k = e.key;
    const mod = e.ctrlKey || e.metaKey;
    if (mod && !e.altKey && (k === 's' || k === 'S')) { e.preventDefault(); save(); return; }
    if (mod && !e.altKey && (k === 'z' || k === 'Z')) {
      if (typing(e.target)) return;
      e.preventDefault();
      if (e.shiftKey) redo(); else undo();
      return;
    }
    if (mod && !e.altKey && (k === 'y' || k === 'Y')) { if (typing(e.target)) return; e.preventDefault(); redo(); return; }
    if (mod || e.altKey || typing(e.target)) return;
    if (k === 'Escape' && canvas.connecting) { e.preventDefault(); canvas.cancelConnect(); return; }
    if (k === '?') { e.preventDefault(); help(); return; }
    if (k === 'Delete' || k === 'Backspace') {
      const where = e.target;
      if (!(where === document.body || where === main || canvas.el.contains(where))) return;
      if (selection?.task) { e.preventDefault(); deleteTasks([selection.task]); }
      else if (selection?.edge) { e.preventDefault(); removeEdge(...selection.edge); }
      return;
    }
    if (e.target.closest?.('button, a') && (k === 'Enter' || k === ' ')) return;
    const simple = { '+': () => canvas.zoomBy(1.2), '=': () => canvas.zoomBy(1.2), '-': () => canvas.zoomBy(1 / 1.2),
      0: () => canvas.setZoom(1), f: () => canvas.fit(), l: () => autoLayout(), j: () => toggleJson(),
      n: () => palette.querySelector('button:not([disabled])')?.focus() };
    const fn = simple[k.length === 1 ? k.toLowerCase() : k];
    if (fn) { e.preventDefault(); fn(); }
  }
  document.addEventListener('keydown', onKey);
  cleanups.push(() => document.removeEventListener('keydown', onKey));

  // ---- leaving with unsaved changes ----
  const beforeUnload = (e) => { if (dirty) { e.preventDefault(); e.returnValue = ''; } };
  window.addEventListener('beforeunload', beforeUnload);
  cleanups.push(() => window.removeEventListener('beforeunload', beforeUnload));
  const onLinkClick = async (e) => {
    const a = e.target.closest?.('a[href^="#"]');
    if (!a || !dirty || e.defaultPrevented || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey) return;
    e.preventDefault();
    const leave = await confirmDialog('Leave with unsaved changes?', { confirm: 'Leave', danger: true });
    if (leave) { dirty = false; sessionStorage.removeItem(DRAFT_PREFIX + posKey()); location.hash = a.getAttribute('href'); }
  };
  document.addEventListener('click', onLinkClick, true);
  cleanups.push(() => document.removeEventListener('click', onLinkClick, true));

  // ---- start ----
  loadFrom(wf);
  canvas.resize();
  if (wf && model.tasks.length) canvas.fit(0.5);
  const draft = (() => { try { return JSON.parse(sessionStorage.getItem(DRAFT_PREFIX + posKey()) || 'null'); } catch { return null; } })();
  if (draft && draft.def && JSON.stringify(draft.def) !== saved) {
    const note = h('div', { class: 'ed-note', role: 'status' },
      `You left unsaved changes here ${new Date(draft.at).toLocaleTimeString()}${draft.version && wf && draft.version !== wf.version ? ` (made on version ${draft.version}; this is version ${wf.version})` : ''}. `,
      h('button', { type: 'button', onClick: () => { applyJson(draft.def); sessionStorage.removeItem(DRAFT_PREFIX + posKey()); note.remove(); say('Restored your unsaved changes.'); } }, 'Restore them'),
      ' ',
      h('button', { type: 'button', class: 'link', onClick: () => { sessionStorage.removeItem(DRAFT_PREFIX + posKey()); note.remove(); } }, 'Discard'));
    banner.append(note);
  }
  const onResize = () => canvas.resize();
  window.addEventListener('resize', onResize);
  cleanups.push(() => window.removeEventListener('resize', onResize));

  return () => {
    // Leaving by the Back button cannot be stopped: keep the work as a draft.
    if (dirty && !readOnly) {
      try { sessionStorage.setItem(DRAFT_PREFIX + posKey(), JSON.stringify({ def: model.definition(), at: Date.now(), version: wf?.version })); } catch { /* best effort */ }
      toast('Your unsaved changes were kept as a draft; open the editor again to restore them.', 'info');
    }
    clearTimeout(posTimer);
    // Positions are written now (the timer may not have fired).
    const out = {};
    for (const t of model.tasks) { const p = model.pos.get(t.uid); if (p) out[t.key] = [p.x, p.y]; }
    try { if (model.tasks.length) localStorage.setItem(POS_PREFIX + posKey(), JSON.stringify(out)); } catch { /* best effort */ }
    model.removeEventListener('change', onChange);
    cleanups.forEach((fn) => fn());
    json.destroy();
    canvas.destroy();
  };
}
