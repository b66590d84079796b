// The definition being edited, node positions, and the undo/redo history.
// Every change goes through commit(), which snapshots the state before it:
// undo and redo restore snapshots, so they cover every kind of change
// (moves, edits, connections, deletions, JSON edits) the same way.
// Listeners get a 'change' event: detail = { source, kind, uid }.
//   kind: 'move' (only uid's position), 'task' (uid's fields), 'all'.

import { uniqueKey } from './rules.js';

const LIMIT = 300;          // history entries kept
const COALESCE_MS = 1500;   // typing into one field within this is one entry

let nextUid = 1;
export const newUid = () => `t${nextUid++}`;

/** The definition's own fields of a task (what the server stores), in a stable order. */
export function cleanTask(t) {
  const out = {};
  for (const [k, v] of Object.entries(t)) {
    if (k === 'uid' || k === 'id' || k === 'workflowId' || k === 'createdAt' || k === 'updatedAt') continue;
    if (v === undefined) continue;
    out[k] = v;
  }
  return out;
}

const ORDER = ['key', 'name', 'description', 'action', 'config', 'dependsOn', 'retry', 'timeout'];
function ordered(t) {
  const c = cleanTask(t);
  const out = {};
  for (const k of ORDER) if (k in c) out[k] = c[k];
  for (const k of Object.keys(c)) if (!(k in out)) out[k] = c[k];
  if (out.description === '') delete out.description;
  return out;
}

export class Model extends EventTarget {
  constructor() {
    super();
    this.name = '';
    this.description = '';
    this.tasks = [];           // task objects as the server takes them, plus `uid`
    this.pos = new Map();      // uid -> {x, y}
    this.ids = new Map();      // uid -> the server's task id (kept out of history)
    this.autoKey = new Set();  // uids whose key follows the name
    this.past = [];
    this.future = [];
    this.last = null;          // { coalesce, at } of the newest entry
  }

  // ---- reading ----
  byUid(uid) { return this.tasks.find((t) => t.uid === uid) || null; }
  byKey(key) { return this.tasks.find((t) => t.key === key) || null; }
  keys() { return new Set(this.tasks.map((t) => t.key)); }
  /** {name, description, tasks} as sent to the server (no ids). */
  definition() {
    const d = { name: this.name, description: this.description, tasks: this.tasks.map(ordered) };
    return d;
  }
  /** The same with each task's id, for UpdateWorkflow. */
  requestBody() {
    const d = this.definition();
    d.tasks = d.tasks.map((t, i) => {
      const id = this.ids.get(this.tasks[i].uid);
      return id ? { id, ...t } : t;
    });
    return d;
  }
  /** The edges, as [fromUid, toUid] (unknown dependencies left out). */
  edges() {
    const uidOf = new Map();
    for (const t of this.tasks) if (!uidOf.has(t.key)) uidOf.set(t.key, t.uid);
    const out = [];
    for (const t of this.tasks) {
      for (const d of Array.isArray(t.dependsOn) ? t.dependsOn : []) {
        const from = uidOf.get(d);
        if (from && from !== t.uid) out.push([from, t.uid]);
      }
    }
    return out;
  }

  // ---- history ----
  snapshot() {
    return {
      name: this.name, description: this.description, tasks: structuredClone(this.tasks),
      pos: [...this.pos].map(([k, p]) => [k, { x: p.x, y: p.y }]), autoKey: [...this.autoKey],
    };
  }
  restore(s) {
    this.name = s.name;
    this.description = s.description;
    this.tasks = s.tasks;
    this.pos = new Map(s.pos);
    this.autoKey = new Set(s.autoKey);
  }
  get canUndo() { return this.past.length > 0; }
  get canRedo() { return this.future.length > 0; }

  /**
   * Runs fn(model) as one undoable change. opts: source (who made it),
   * kind, uid, coalesce (a key: a change with the same key right after
   * the last one joins its history entry).
   */
  commit(fn, opts = {}) {
    const now = Date.now();
    const join = opts.coalesce && this.last && this.last.coalesce === opts.coalesce && now - this.last.at < COALESCE_MS && !this.future.length;
    if (!join) {
      this.past.push(this.snapshot());
      if (this.past.length > LIMIT) this.past.shift();
    }
    this.future = [];
    fn(this);
    this.last = { coalesce: opts.coalesce || null, at: now };
    this.emit(opts);
  }
  undo() {
    if (!this.past.length) return false;
    this.future.push(this.snapshot());
    this.restore(this.past.pop());
    this.last = null;
    this.emit({ source: 'history', kind: 'all' });
    return true;
  }
  redo() {
    if (!this.future.length) return false;
    this.past.push(this.snapshot());
    this.restore(this.future.pop());
    this.last = null;
    this.emit({ source: 'history', kind: 'all' });
    return true;
  }
  /** Replaces everything without history (loading). */
  load(def, positions = new Map(), ids = new Map()) {
    this.name = def.name || '';
    this.description = def.description || '';
    this.tasks = def.tasks;
    this.pos = positions;
    this.ids = ids;
    this.autoKey = new Set();
    this.past = [];
    this.future = [];
    this.last = null;
    this.emit({ source: 'load', kind: 'all' });
  }
  emit(detail) { this.dispatchEvent(new CustomEvent('change', { detail: { source: 'model', kind: 'all', ...detail } })); }

  // ---- edits (call them inside commit) ----
  addTask(action, config, at) {
    const key = uniqueKey(action, this.keys());
    const task = { uid: newUid(), key, name: key.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase()), action, config, dependsOn: [] };
    this.tasks.push(task);
    this.pos.set(task.uid, { x: Math.max(0, Math.round(at.x)), y: Math.max(0, Math.round(at.y)) });
    this.autoKey.add(task.uid);
    return task;
  }

  /** Renames a task's key and every reference to it (dependsOn, branches). */
  renameKey(task, key) {
    const old = task.key;
    if (old === key) return;
    task.key = key;
    for (const t of this.tasks) {
      if (Array.isArray(t.dependsOn)) t.dependsOn = t.dependsOn.map((d) => (d === old ? key : d));
      if (t.action === 'condition' && t.config) {
        for (const b of ['then', 'else']) if (Array.isArray(t.config[b])) t.config[b] = t.config[b].map((d) => (d === old ? key : d));
      }
    }
  }

  /** Removes tasks by uid with every reference to them. */
  removeTasks(uids) {
    const gone = new Set(this.tasks.filter((t) => uids.includes(t.uid)).map((t) => t.key));
    this.tasks = this.tasks.filter((t) => !uids.includes(t.uid));
    for (const u of uids) { this.pos.delete(u); this.autoKey.delete(u); }
    for (const t of this.tasks) {
      if (Array.isArray(t.dependsOn)) t.dependsOn = t.dependsOn.filter((d) => !gone.has(d));
      if (t.action === 'condition' && t.config) {
        for (const b of ['then', 'else']) if (Array.isArray(t.config[b])) t.config[b] = t.config[b].filter((d) => !gone.has(d));
      }
    }
  }

  /** Removes the dependency `to` dependsOn `from` (and a branch naming it). */
  removeEdge(fromUid, toUid) {
    const from = this.byUid(fromUid), to = this.byUid(toUid);
    if (!from || !to) return;
    to.dependsOn = (to.dependsOn || []).filter((d) => d !== from.key);
    if (from.action === 'condition' && from.config) {
      for (const b of ['then', 'else']) if (Array.isArray(from.config[b])) from.config[b] = from.config[b].filter((d) => d !== to.key);
    }
  }
}
