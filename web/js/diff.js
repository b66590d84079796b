// Comparing workflow definitions: the canonical JSON of a definition
// (sorted keys, output-only fields left out), a task-by-task diff for the
// DAG picture and its list in words, and a Myers line diff for the JSON.
import { h, clear } from './ui.js';
import { layoutDag, renderDag } from './dag.js';

// Output-only fields: they differ between versions without the definition
// changing (ids, timestamps), so they are no part of the comparison.
const TASK_OUTPUT_ONLY = new Set(['id', 'workflowId', 'createdAt', 'updatedAt']);

/** A task without its output-only fields. */
export function definitionTask(task) {
  const out = {};
  for (const [k, v] of Object.entries(task || {})) if (!TASK_OUTPUT_ONLY.has(k)) out[k] = v;
  return out;
}

/** The definition of a workflow or a version: {name, description, tasks}. */
export function definition(wf) {
  return { name: wf?.name || '', description: wf?.description || '', tasks: (wf?.tasks || []).map(definitionTask) };
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** JSON with sorted object keys, two-space indents (the same text for the same value). */
export function canonicalJson(value, indent = '') {
  const inner = indent + '  ';
  if (Array.isArray(value)) {
    if (!value.length) return '[]';
    return '[\n' + value.map((v) => inner + canonicalJson(v, inner)).join(',\n') + '\n' + indent + ']';
  }
  if (isObject(value)) {
    const keys = Object.keys(value).filter((k) => value[k] !== undefined).sort();
    if (!keys.length) return '{}';
    return '{\n' + keys.map((k) => `${inner}${JSON.stringify(k)}: ${canonicalJson(value[k], inner)}`).join(',\n') + '\n' + indent + '}';
  }
  return value === undefined ? 'null' : JSON.stringify(value);
}

export const sameValue = (a, b) => canonicalJson(a) === canonicalJson(b);

/** Short JSON for a sentence: strings quoted, long values clipped. */
export function shortValue(v, n = 80) {
  const text = v === undefined ? '(unset)' : JSON.stringify(v);
  return text.length > n ? text.slice(0, n - 1) + '…' : text;
}

/** Leaf-level differences of two values: [{path, from, to}] (objects are walked, arrays compared whole). */
export function fieldChanges(a, b, path = '', out = []) {
  if (sameValue(a, b)) return out;
  if (isObject(a) && isObject(b)) {
    for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
      fieldChanges(a[k], b[k], path ? `${path}.${k}` : k, out);
    }
  } else {
    out.push({ path, from: a, to: b });
  }
  return out;
}

/** "config.url changed from "x" to "y"" and friends. */
export function changeText({ path, from, to }) {
  if (from === undefined) return `${path} set to ${shortValue(to)}`;
  if (to === undefined) return `${path} removed (was ${shortValue(from)})`;
  return `${path} changed from ${shortValue(from)} to ${shortValue(to)}`;
}

/**
 * Compares two definitions (workflows or versions) task by task.
 * Returns {
 *   tasks: the union for the DAG (B's order, then tasks only in A), each
 *          {key, name, action, dependsOn (union of both), state, a, b},
 *   state: Map key -> 'added' | 'removed' | 'changed' | 'same',
 *   edges: Map "from>to" -> 'added' | 'removed' | 'same',
 *   changes: [{kind, task?, text}] in words,
 *   count: number of differences }
 * A task is `changed` when any of its fields but `dependsOn` differs; its
 * edges carry their own added/removed state.
 */
export function diffDefinitions(a, b) {
  const da = definition(a), db = definition(b);
  const ta = new Map(da.tasks.map((t) => [t.key, t]));
  const tb = new Map(db.tasks.map((t) => [t.key, t]));
  const keys = [...db.tasks.map((t) => t.key), ...da.tasks.map((t) => t.key).filter((k) => !tb.has(k))];
  const state = new Map();
  const edges = new Map();
  const changes = [];
  for (const field of ['name', 'description']) {
    if (da[field] !== db[field]) changes.push({ kind: 'changed', text: `workflow ${changeText({ path: field, from: da[field] || undefined, to: db[field] || undefined })}` });
  }
  const tasks = keys.map((key) => {
    const x = ta.get(key), y = tb.get(key);
    let st = 'same';
    if (!x) {
      st = 'added';
      changes.push({ kind: 'added', task: key, text: `task ${key} added (${y.action || 'no action'})` });
    } else if (!y) {
      st = 'removed';
      changes.push({ kind: 'removed', task: key, text: `task ${key} removed (was ${x.action || 'no action'})` });
    } else {
      const strip = (t) => { const { dependsOn, key: _k, ...rest } = t; return rest; };
      const fields = fieldChanges(strip(x), strip(y));
      if (fields.length) {
        st = 'changed';
        fields.forEach((f) => changes.push({ kind: 'changed', task: key, text: `task ${key}: ${changeText(f)}` }));
      }
    }
    state.set(key, st);
    const depsA = x?.dependsOn || [], depsB = y?.dependsOn || [];
    for (const d of new Set([...depsA, ...depsB])) {
      const e = depsA.includes(d) ? (depsB.includes(d) ? 'same' : 'removed') : 'added';
      edges.set(`${d}>${key}`, e);
    }
    const t = y || x;
    return { key, name: t.name, action: t.action, dependsOn: [...new Set([...depsA, ...depsB])], state: st, a: x, b: y };
  });
  for (const [edge, e] of edges) {
    if (e === 'same') continue;
    const [from, to] = edge.split('>');
    // An edge that comes or goes with its task is said with the task.
    if (state.get(to) === 'added' || state.get(to) === 'removed') continue;
    changes.push({ kind: e, edge, text: `edge ${from} → ${to} ${e} (${to} ${e === 'added' ? 'now waits for' : 'no longer waits for'} ${from})` });
  }
  return { tasks, state, edges, changes, count: changes.length };
}

/**
 * Myers' O(ND) diff of two line arrays. Returns ops in order:
 * {op: ' ' | '-' | '+', text, a (1-based line in A or null), b (in B or null)}.
 */
export function lineDiff(a, b) {
  const n = a.length, m = b.length, max = n + m;
  const v = new Int32Array(2 * max + 3);
  const off = max + 1;
  const trace = [];
  let found = -1;
  outer: for (let d = 0; d <= max; d++) {
    for (let k = -d; k <= d; k += 2) {
      let x = (k === -d || (k !== d && v[off + k - 1] < v[off + k + 1])) ? v[off + k + 1] : v[off + k - 1] + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) { x++; y++; }
      v[off + k] = x;
      if (x >= n && y >= m) { trace.push(v.slice(off - d, off + d + 1)); found = d; break outer; }
    }
    trace.push(v.slice(off - d, off + d + 1)); // v for k in [-d, d] after step d
  }
  const ops = [];
  let x = n, y = m;
  for (let d = found; d > 0; d--) {
    const prev = trace[d - 1];
    const at = (k) => prev[k + d - 1];
    const k = x - y;
    const prevK = (k === -d || (k !== d && at(k - 1) < at(k + 1))) ? k + 1 : k - 1;
    const px = at(prevK), py = px - prevK;
    const down = prevK === k + 1; // an insertion moves down (y + 1), a deletion right (x + 1)
    const ex = down ? px : px + 1, ey = ex - k;
    while (x > ex && y > ey) { ops.push({ op: ' ', text: a[x - 1], a: x, b: y }); x--; y--; }
    if (down) ops.push({ op: '+', text: b[py], a: null, b: py + 1 });
    else ops.push({ op: '-', text: a[px], a: px + 1, b: null });
    x = px; y = py;
  }
  while (x > 0 && y > 0) { ops.push({ op: ' ', text: a[x - 1], a: x, b: y }); x--; y--; }
  return ops.reverse();
}

// ---- rendering the JSON diff ----

const MARK = { ' ': ['same', ' ', ''], '-': ['del', '−', 'removed: '], '+': ['add', '+', 'added: '] };

function lineEl(op, num, text) {
  const [cls, mark, spoken] = MARK[op];
  return h('div', { class: `dl ${cls}` },
    h('span', { class: 'ln', 'aria-hidden': 'true' }, num ?? ''),
    h('span', { class: 'mk' }, h('span', { 'aria-hidden': 'true' }, mark), spoken ? h('span', { class: 'visually-hidden' }, spoken) : null),
    h('span', { class: 'tx' }, text));
}

const blank = () => h('div', { class: 'dl blank', 'aria-hidden': 'true' }, h('span', { class: 'ln' }), h('span', { class: 'mk' }), h('span', { class: 'tx' }, ' '));

/** Splits rows into shown rows and folds of unchanged rows more than `context` away from a change. */
function fold(rows, changed, context = 3) {
  const near = rows.map(() => false);
  rows.forEach((r, i) => { if (changed(r)) for (let j = Math.max(0, i - context); j <= Math.min(rows.length - 1, i + context); j++) near[j] = true; });
  const parts = [];
  let i = 0;
  while (i < rows.length) {
    if (near[i]) { parts.push({ rows: [rows[i]] }); i++; continue; }
    let j = i;
    while (j < rows.length && !near[j]) j++;
    if (j - i <= 2) rows.slice(i, j).forEach((r) => parts.push({ rows: [r] }));
    else parts.push({ rows: rows.slice(i, j), folded: true });
    i = j;
  }
  return parts;
}

/** A "… N unchanged lines" button; expanding it shows the lines in every pane of the diff. */
function foldButton(root, id, count) {
  return h('button', {
    type: 'button', class: 'fold link', dataset: { fold: id }, 'aria-label': `Show ${count} unchanged lines`,
    onClick: () => root.querySelectorAll(`[data-fold="${id}"]`).forEach((b) => b.dispatchEvent(new CustomEvent('expand'))),
  }, `⋯ ${count} unchanged lines`);
}

function renderParts(root, parts, pane, drawRow) {
  parts.forEach((p, id) => {
    if (!p.folded) { p.rows.forEach((r) => pane.append(drawRow(r))); return; }
    const btn = foldButton(root, String(id), p.rows.length);
    btn.addEventListener('expand', () => {
      const focus = document.activeElement === btn;
      const rows = p.rows.map(drawRow);
      btn.replaceWith(...rows);
      if (focus) rows[0]?.closest('.diff-pane')?.focus();
    });
    pane.append(btn);
  });
}

/** Unified view: one pane, both line numbers. */
export function unifiedView(ops, titleA, titleB) {
  const root = h('div', { class: 'json-diff unified' });
  const pane = h('div', { class: 'diff-pane', tabindex: '0', role: 'group', 'aria-label': `Changes from ${titleA} to ${titleB}` });
  renderParts(root, fold(ops, (o) => o.op !== ' '), pane, (o) => lineEl(o.op, o.op === '+' ? o.b : o.a, o.text));
  root.append(h('div', { class: 'diff-legend muted' }, `− ${titleA}   + ${titleB}`), pane);
  return root;
}

/** Side by side: removed lines on the left, added on the right, aligned; stacks on narrow screens. */
export function sideBySideView(ops, titleA, titleB) {
  const rows = [];
  for (let i = 0; i < ops.length;) {
    if (ops[i].op === ' ') { rows.push({ left: ops[i], right: ops[i] }); i++; continue; }
    const dels = [], adds = [];
    while (i < ops.length && ops[i].op !== ' ') { (ops[i].op === '-' ? dels : adds).push(ops[i]); i++; }
    for (let j = 0; j < Math.max(dels.length, adds.length); j++) rows.push({ left: dels[j] || null, right: adds[j] || null });
  }
  const parts = fold(rows, (r) => r.left !== r.right);
  const root = h('div', { class: 'json-diff side' });
  const paneA = h('div', { class: 'diff-pane', tabindex: '0', role: 'group', 'aria-label': titleA });
  const paneB = h('div', { class: 'diff-pane', tabindex: '0', role: 'group', 'aria-label': titleB });
  renderParts(root, parts, paneA, (r) => (r.left ? lineEl(r.left === r.right ? ' ' : '-', r.left.a, r.left.text) : blank()));
  renderParts(root, parts, paneB, (r) => (r.right ? lineEl(r.right === r.left ? ' ' : '+', r.right.b, r.right.text) : blank()));
  // Side by side, the panes scroll together (their rows are aligned); stacked, each on its own.
  let leader = null;
  const follow = (from, to) => from.addEventListener('scroll', () => {
    if (leader && leader !== from) return;
    if (from.getBoundingClientRect().top !== to.getBoundingClientRect().top) return;
    leader = from;
    to.scrollTop = from.scrollTop;
    to.scrollLeft = from.scrollLeft;
    requestAnimationFrame(() => { leader = null; });
  }, { passive: true });
  follow(paneA, paneB);
  follow(paneB, paneA);
  root.append(
    h('div', { class: 'side-col' }, h('h3', {}, titleA), paneA),
    h('div', { class: 'side-col' }, h('h3', {}, titleB), paneB));
  return root;
}

// ---- one task, for the side panels ----

/** The details of one task: what the side panel next to a DAG shows. */
export function taskDetails(task) {
  const t = definitionTask(task);
  const { key, name, action, dependsOn, config, description, ...rest } = t;
  return h('div', { class: 'task-details' },
    h('dl', {},
      h('dt', {}, 'Key'), h('dd', {}, h('code', {}, key || '')),
      h('dt', {}, 'Name'), h('dd', {}, name || '—'),
      description ? [h('dt', {}, 'Description'), h('dd', {}, description)] : null,
      h('dt', {}, 'Action'), h('dd', {}, action || '—'),
      h('dt', {}, 'Depends on'), h('dd', {}, dependsOn?.length ? dependsOn.join(', ') : 'nothing')),
    h('h4', {}, 'Config'),
    h('pre', { tabindex: '0' }, canonicalJson(config || {})),
    Object.keys(rest).length ? [h('h4', {}, 'Other settings'), h('pre', { tabindex: '0' }, canonicalJson(rest))] : null);
}

/**
 * A read-only DAG with a side panel: activating a node (click, Enter or
 * Space) shows `details(task)` next to the graph; Escape or Close hides it.
 * opts: renderDag's nodeClass, edgeClass, label, title; details(task) -> Node.
 */
export function dagExplorer(tasks, opts = {}) {
  if (!tasks.length) return h('p', { class: 'empty' }, opts.empty || 'No tasks yet.');
  const details = opts.details || taskDetails;
  const area = h('div', { class: 'dag-area' });
  const panel = h('section', { class: 'task-panel', hidden: true, 'aria-label': 'Task details' });
  let selected = null;
  const nodeOf = (key) => [...svg.querySelectorAll('.node')].find((n) => n.dataset.key === key);
  const close = () => {
    if (!selected) return;
    const node = nodeOf(selected);
    node?.classList.remove('selected');
    selected = null;
    panel.hidden = true;
    area.classList.remove('open');
    node?.focus();
  };
  const select = (t) => {
    if (selected) nodeOf(selected)?.classList.remove('selected');
    selected = t.key;
    nodeOf(t.key)?.classList.add('selected');
    const title = `Task ${t.name || t.key}`;
    clear(panel).append(
      h('header', {}, h('h3', {}, title),
        h('button', { type: 'button', class: 'link', 'aria-label': `Close ${title}`, onClick: close }, 'Close')),
      details(t));
    panel.setAttribute('aria-label', title);
    panel.hidden = false;
    area.classList.add('open');
  };
  const positions = layoutDag(tasks);
  const svg = renderDag(tasks, { ...opts, positions, onSelect: select });
  area.addEventListener('keydown', (e) => { if (e.key === 'Escape' && selected) { e.preventDefault(); close(); } });
  area.append(h('div', { class: 'dag-scroll' }, svg), panel);
  return area;
}

/** What a page shows when its workflow cannot be read (404: unknown, or no access). */
export function loadFailure(err) {
  const missing = err?.status === 404;
  return h('div', {},
    h('div', { class: 'page-header' }, h('h1', { tabindex: '-1' }, missing ? 'Workflow not found' : 'Could not load the workflow')),
    h('p', { class: 'form-error', role: 'alert' }, err?.message || String(err)),
    missing ? h('p', { class: 'muted' }, 'It may have been deleted, or it is not shared with you.') : null,
    h('p', {}, h('a', { href: '#/workflows' }, 'Back to workflows')));
}
