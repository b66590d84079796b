// The server's rules for a workflow definition, checked in the browser
// (Sources/WeftEngine/WorkflowDefinition.swift, TaskTypes.swift): the same
// limits, patterns and messages, so a problem shows on its field before the
// save. The server still has the last word (its answer is shown too).

export const TYPES = [
  ['noop', 'No-op', 'Does nothing; passes config.output on'],
  ['log', 'Log', 'Writes a message to the execution log'],
  ['http', 'HTTP request', 'Calls a URL'],
  ['delay', 'Delay', 'Waits for a duration or until a time'],
  ['transform', 'Transform', 'Builds JSON from templates'],
  ['condition', 'Condition', 'Chooses a branch with an expression'],
  ['external', 'External', 'Run by a worker polling a queue'],
];
export const TYPE_NAMES = TYPES.map((t) => t[0]);
export const typeLabel = (type) => TYPES.find((t) => t[0] === type)?.[1] || type;

export const ALLOWED = {
  noop: ['output'],
  log: ['message', 'level'],
  http: ['url', 'method', 'headers', 'body', 'expectedStatus', 'followRedirects', 'maxResponseBytes', 'integration'],
  delay: ['duration', 'until'],
  transform: ['output'],
  condition: ['expression', 'then', 'else'],
  external: ['queue', 'input'],
};

export const LIMITS = {
  maxTasks: 500, maxName: 200, maxDescription: 10_000, maxLabel: 200,
  maxTimeoutMs: 7 * 24 * 3_600_000, maxBackoffMs: 24 * 3_600_000, maxTotalTimeoutMs: 366 * 86_400_000,
};
export const HTTP_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];
export const LOG_LEVELS = ['Info', 'Warning', 'Error'];
export const ERROR_KINDS = ['timeout', 'connection', 'http_4xx', 'http_5xx', 'http_3xx', 'response_too_large', 'external', 'any'];
const FORBIDDEN_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-connection',
  'te', 'trailer', 'upgrade', 'proxy-authenticate', 'proxy-authorization']);

export const KEY_RE = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
export const SECRET_RE = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
const QUEUE_RE = /^[A-Za-z0-9._-]{1,64}$/;
const HEADER_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}$/;
const RFC3339_RE = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

export const KEY_RULE = 'must start with a letter and hold only letters, digits, \'_\' or \'-\' (at most 64)';

export const defaultConfig = (type) => ({
  http: { method: 'GET', url: '' }, log: { message: '', level: 'Info' }, delay: { duration: '30s' },
  transform: { output: {} }, condition: { expression: 'input.ok == true' }, external: { queue: 'default' },
}[type] || {});

/** "Fetch the Order!" -> "fetch_the_order" (the server's slug), "" if nothing is left. */
export function slug(name) {
  let out = '';
  let sep = false;
  for (const ch of String(name).toLowerCase()) {
    if (/[a-z0-9]/.test(ch)) { if (sep && out) out += '_'; out += ch; sep = false; } else sep = true;
    if (out.length >= 60) break;
  }
  if (out && !/^[a-z]/.test(out)) out = 't_' + out;
  return out;
}

/** A key from `base` not in `taken` (a Set): base, base_2, base_3, ... */
export function uniqueKey(base, taken) {
  let b = slug(base) || 'task';
  b = b.slice(0, 56);
  if (!taken.has(b)) return b;
  for (let i = 2; ; i++) if (!taken.has(`${b}_${i}`)) return `${b}_${i}`;
}

// ---- durations ----

/** Text durations the server reads in configs ("500ms", "30s", "5m", "1h30m", "2d") -> ms, or null. */
export function textDurationMs(text) {
  const t = String(text ?? '').trim();
  if (!t) return null;
  let total = 0, i = 0, num = '', saw = false;
  while (i < t.length) {
    const c = t[i];
    if (/[0-9.]/.test(c)) { num += c; i++; continue; }
    if (!/^\d*\.?\d*$/.test(num) || num === '' || num === '.') return null;
    const v = Number(num);
    let unit = c;
    if (c === 'm' && t[i + 1] === 's') { unit = 'ms'; i++; }
    i++;
    const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[unit];
    if (!mult) return null;
    total += v * mult;
    num = '';
    saw = true;
  }
  if (num !== '' || !saw || !Number.isFinite(total) || total >= 1e15) return null;
  return Math.trunc(total);
}

/** A proto3 JSON Duration ("1.5s", "30s") -> ms, or null when it is not one. */
export function protoDurationMs(text) {
  const m = /^(-?)(\d+)(?:\.(\d{1,9}))?s$/.exec(String(text ?? ''));
  if (!m) return null;
  const ms = Number(m[2]) * 1000 + Number(((m[3] || '') + '000').slice(0, 3));
  return m[1] ? -ms : ms;
}

/** ms -> the proto3 JSON form the server takes ("1.5s"). */
export function protoDuration(ms) {
  const whole = Math.floor(ms / 1000), frac = ms % 1000;
  return frac ? `${whole}.${String(frac).padStart(3, '0').replace(/0+$/, '')}s` : `${whole}s`;
}

/** What a user types in a duration field (either form) -> proto form, or null. */
export function normalizeDuration(text) {
  const t = String(text ?? '').trim();
  if (!t) return '';
  const ms = protoDurationMs(t) ?? textDurationMs(t);
  return ms === null ? null : protoDuration(ms);
}

// ---- validation ----

const kind = (v) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v === 'number' ? 'number' : typeof v);
const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Strings inside a config value, with their path (config.headers.X, config.body[0]). */
function* strings(value, path) {
  if (typeof value === 'string') yield [path, value];
  else if (Array.isArray(value)) for (let i = 0; i < value.length; i++) yield* strings(value[i], `${path}[${i}]`);
  else if (isObj(value)) for (const k of Object.keys(value).sort()) yield* strings(value[k], `${path}.${k}`);
}

/** Template problems the browser can see without the server's parser. */
function templateProblem(text) {
  let rest = text, at = 0;
  for (;;) {
    const open = rest.indexOf('{{');
    if (open < 0) return null;
    const close = rest.indexOf('}}', open + 2);
    if (close < 0) return `"{{" without "}}" at character ${at + open + 1}`;
    const inner = rest.slice(open + 2, close);
    for (const m of inner.matchAll(/(^|[^A-Za-z0-9_.])secrets\.([A-Za-z0-9_]*)/g)) {
      if (!SECRET_RE.test(m[2])) return `secrets.${m[2]} is not a secret name (letters, digits and '_', starting with a letter, at most 64)`;
    }
    at += close + 2;
    rest = rest.slice(close + 2);
  }
}

function checkConfig(task, keys, add) {
  const type = task.action;
  const allowed = ALLOWED[type];
  if (!allowed) { add('action', `unknown action (task type) "${type}"; known types: ${TYPE_NAMES.join(', ')}`); return; }
  const c = task.config ?? {};
  if (!isObj(c)) { add('config', `config must be a JSON object, got ${kind(c)}`); return; }
  for (const k of Object.keys(c).sort()) {
    if (!allowed.includes(k)) { add('config', `config of a ${type} task has no field "${k}"; allowed: ${[...allowed].sort().join(', ')}`); return; }
  }
  switch (type) {
    case 'log':
      if ('message' in c && typeof c.message !== 'string') add('config.message', `config.message must be a string, got ${kind(c.message)}`);
      if ('level' in c && !LOG_LEVELS.includes(c.level)) add('config.level', 'config.level must be "Info", "Warning" or "Error"');
      break;
    case 'http': {
      if (typeof c.url !== 'string' || !c.url) add('config.url', 'an http task needs config.url (a string)');
      else if (!/^https?:\/\//i.test(c.url) && !c.url.startsWith('{{')) add('config.url', `config.url must start with http:// or https:// (got "${c.url}")`);
      if ('method' in c && (typeof c.method !== 'string' || !HTTP_METHODS.includes(c.method.toUpperCase()))) add('config.method', `config.method must be one of ${[...HTTP_METHODS].sort().join(', ')}`);
      if ('headers' in c) {
        if (!isObj(c.headers)) add('config.headers', 'config.headers must be an object of strings');
        else {
          for (const name of Object.keys(c.headers).sort()) {
            const v = c.headers[name];
            if (typeof v !== 'string') { add('config.headers', `config.headers.${name} must be a string, got ${kind(v)}`); break; }
            if (/[\r\n\0]/.test(v)) { add('config.headers', `config.headers.${name} must not contain CR, LF or NUL characters`); break; }
            if (!HEADER_RE.test(name)) { add('config.headers', `config.headers has "${name}", which is not an HTTP header name (RFC 9110 token characters)`); break; }
            if (FORBIDDEN_HEADERS.has(name.toLowerCase())) { add('config.headers', `config.headers.${name} cannot be set by a task (the client sets Host, Content-Length and Transfer-Encoding; hop-by-hop headers are the connection's)`); break; }
          }
        }
      }
      if ('integration' in c && !(typeof c.integration === 'string' && c.integration.startsWith('int_') && c.integration.length <= 64)) add('config.integration', 'config.integration must be the id of an http_auth integration (int_…)');
      if ('expectedStatus' in c) {
        const e = c.expectedStatus;
        if (!Array.isArray(e) || !e.length) add('config.expectedStatus', 'config.expectedStatus must be a non-empty array of status codes');
        else if (!e.every((n) => Number.isInteger(n) && n >= 100 && n <= 599)) add('config.expectedStatus', 'config.expectedStatus entries must be integers from 100 to 599');
      }
      if ('followRedirects' in c && typeof c.followRedirects !== 'boolean') add('config.followRedirects', 'config.followRedirects must be a boolean');
      if ('maxResponseBytes' in c && !(Number.isInteger(c.maxResponseBytes) && c.maxResponseBytes >= 1 && c.maxResponseBytes <= 1e12)) add('config.maxResponseBytes', 'config.maxResponseBytes must be a positive whole number of bytes');
      break;
    }
    case 'delay': {
      const hasD = 'duration' in c, hasU = 'until' in c;
      if (hasD === hasU) { add(hasU ? 'config.until' : 'config.duration', 'a delay task needs exactly one of config.duration and config.until'); break; }
      if (hasD) {
        const ms = typeof c.duration === 'string' ? textDurationMs(c.duration) : null;
        if (ms === null) add('config.duration', 'config.duration must be a duration such as "500ms", "30s", "5m" or "1h30m"');
        else if (ms > 366 * 86_400_000) add('config.duration', 'config.duration must be at most 366 days');
      } else if (!(typeof c.until === 'string' && (c.until.startsWith('{{') || (RFC3339_RE.test(c.until) && !Number.isNaN(Date.parse(c.until)))))) {
        add('config.until', 'config.until must be an RFC 3339 time (e.g. 2026-12-01T09:00:00Z) or a {{ template }}');
      }
      break;
    }
    case 'transform':
      if (!('output' in c)) add('config.output', 'a transform task needs config.output');
      break;
    case 'condition':
      if (typeof c.expression !== 'string' || !c.expression.trim()) add('config.expression', 'a condition task needs config.expression (a non-empty string)');
      for (const branch of ['then', 'else']) {
        if (!(branch in c)) continue;
        if (!Array.isArray(c[branch])) { add(`config.${branch}`, `config.${branch} must be an array of task keys`); continue; }
        for (const item of c[branch]) {
          if (typeof item !== 'string' || !keys.has(item)) { add(`config.${branch}`, `config.${branch} names ${typeof item === 'string' ? `"${item}"` : kind(item)}, which is not a task of this workflow`); break; }
        }
      }
      break;
    case 'external':
      if (typeof c.queue !== 'string' || !QUEUE_RE.test(c.queue)) add('config.queue', 'an external task needs config.queue: 1 to 64 letters, digits, \'.\', \'_\' or \'-\'');
      break;
    default:
  }
  for (const [path, text] of strings(c, 'config')) {
    if (type === 'condition' && path === 'config.expression') {
      const sr = /(^|[^A-Za-z0-9_.])secrets\.([A-Za-z0-9_]*)/.exec(text);
      if (sr) { add('config.expression', `config.expression reads secrets.${sr[2]}; conditions cannot read secrets`); break; }
      continue;
    }
    const p = templateProblem(text);
    if (p) { add(fieldOf(path), `${path}: ${p}`); break; }
  }
}

/** config.headers.Authorization -> config.headers (the form's field). */
export function fieldOf(path) {
  const m = /^(config\.[A-Za-z]+|retry\.[A-Za-z]+|[A-Za-z]+)/.exec(path);
  return m ? m[1] : path;
}

function checkRetry(r, add) {
  if (!isObj(r)) { add('retry', `retry must be an object, got ${kind(r)}`); return; }
  const dur = (f, def) => {
    if (!(f in r)) return def;
    const ms = typeof r[f] === 'string' ? protoDurationMs(r[f]) : null;
    if (ms === null) { add(`retry.${f}`, `retry.${f} must be a duration in seconds such as "1.5s"`); return NaN; }
    return ms;
  };
  const total = dur('totalTimeout', null);
  if (total !== null && !Number.isNaN(total) && (total <= 0 || total > LIMITS.maxTotalTimeoutMs)) add('retry.totalTimeout', 'retry.totalTimeout must be more than 0 and at most 366 days');
  const attempts = r.maxAttempts ?? 0;
  if (!Number.isInteger(attempts)) add('retry.maxAttempts', 'retry.maxAttempts must be a whole number');
  else if (attempts !== 0 && (attempts < 1 || attempts > 100)) add('retry.maxAttempts', 'retry.maxAttempts must be from 1 to 100');
  const initial = dur('initialBackoff', 1000), max = dur('maxBackoff', 60_000);
  if (initial < 0 || max < 0) add(initial < 0 ? 'retry.initialBackoff' : 'retry.maxBackoff', 'retry backoffs must not be negative');
  else if (initial > LIMITS.maxBackoffMs || max > LIMITS.maxBackoffMs) add(initial > LIMITS.maxBackoffMs ? 'retry.initialBackoff' : 'retry.maxBackoff', 'retry backoffs must be at most 1 day');
  else if (max > 0 && max < initial) add('retry.maxBackoff', 'retry.maxBackoff must not be less than retry.initialBackoff');
  const mult = r.backoffMultiplier ?? 0;
  if (typeof mult !== 'number' || (mult !== 0 && !(mult >= 1 && mult <= 100))) add('retry.backoffMultiplier', 'retry.backoffMultiplier must be from 1 to 100');
  const jitter = r.jitter ?? 0;
  if (typeof jitter !== 'number' || !(jitter >= 0 && jitter <= 1)) add('retry.jitter', 'retry.jitter must be from 0 to 1');
  const kinds = r.retryableErrors ?? [];
  if (!Array.isArray(kinds)) add('retry.retryableErrors', 'retry.retryableErrors must be an array');
  else {
    const bad = kinds.find((k) => !ERROR_KINDS.includes(k));
    if (bad !== undefined) add('retry.retryableErrors', `retry.retryableErrors has unknown kind "${bad}"; known: ${[...ERROR_KINDS].sort().join(', ')}`);
  }
  if ('continueOnFailure' in r && typeof r.continueOnFailure !== 'boolean') add('retry.continueOnFailure', 'retry.continueOnFailure must be a boolean');
}

/** A cycle as keys (first == last), or null. */
export function findCycle(tasks) {
  const byKey = new Map(tasks.map((t) => [t.key, t]));
  const mark = new Map();
  const stack = [];
  const visit = (k) => {
    if (mark.get(k) === 2) return null;
    if (mark.get(k) === 1) return [...stack.slice(stack.indexOf(k)), k];
    mark.set(k, 1);
    stack.push(k);
    for (const d of byKey.get(k)?.dependsOn || []) {
      if (typeof d !== 'string') continue;
      const c = visit(d);
      if (c) return c;
    }
    stack.pop();
    mark.set(k, 2);
    return null;
  };
  for (const t of tasks) { const c = visit(t.key); if (c) return c; }
  return null;
}

/**
 * Checks {name, description, tasks} (tasks carry `uid`). Returns
 * { workflow: [{field, message}], tasks: Map uid -> [{field, message}], count }.
 */
export function validate(def) {
  const out = { workflow: [], tasks: new Map(), count: 0 };
  const wf = (field, message) => { out.workflow.push({ field, message }); out.count++; };
  const name = def.name;
  if (typeof name !== 'string' || !name.trim()) wf('name', 'workflow name must not be empty');
  else if ([...name].length > LIMITS.maxName) wf('name', `workflow name is longer than ${LIMITS.maxName} characters`);
  if (typeof def.description !== 'string' && def.description !== undefined) wf('description', 'workflow description must be a string');
  else if ([...(def.description || '')].length > LIMITS.maxDescription) wf('description', `workflow description is longer than ${LIMITS.maxDescription} characters`);
  if (/\0/.test(String(name ?? '') + String(def.description ?? ''))) wf('name', 'workflow name and description must not contain NUL characters');
  const tasks = def.tasks;
  if (tasks.length > LIMITS.maxTasks) wf('tasks', `a workflow has at most ${LIMITS.maxTasks} tasks (got ${tasks.length})`);
  const seen = new Map();
  const keys = new Set(tasks.map((t) => t.key));
  tasks.forEach((t, i) => {
    const list = [];
    const add = (field, message) => { list.push({ field, message }); out.count++; };
    const label = `task "${t.key}" (#${i + 1})`;
    for (const f of ['key', 'name', 'description', 'action']) {
      if (t[f] !== undefined && typeof t[f] !== 'string') add(f, `${f} must be a string, got ${kind(t[f])}`);
    }
    if (typeof t.name !== 'string' || !t.name.trim()) add('name', `task #${i + 1}: name must not be empty`);
    else if ([...t.name].length > LIMITS.maxName) add('name', `task #${i + 1} "${t.name}": name is longer than ${LIMITS.maxName} characters`);
    if (typeof t.key === 'string') {
      if (!KEY_RE.test(t.key)) add('key', `key "${t.key}" ${KEY_RULE}`);
      else if (seen.has(t.key)) add('key', `key "${t.key}" is already used by task #${seen.get(t.key) + 1}; task keys must be unique`);
      else seen.set(t.key, i);
    }
    const deps = t.dependsOn ?? [];
    if (!Array.isArray(deps)) add('dependsOn', `dependsOn must be an array of task keys, got ${kind(deps)}`);
    else {
      const ds = new Set();
      for (const d of deps) {
        if (d === t.key) { add('dependsOn', `${label}: depends on itself`); break; }
        if (!keys.has(d)) { add('dependsOn', `${label}: dependsOn names "${d}", which is not a task of this workflow`); break; }
        if (ds.has(d)) { add('dependsOn', `${label}: dependsOn names "${d}" twice`); break; }
        ds.add(d);
      }
    }
    checkConfig(t, keys, add);
    if (t.action === 'condition' && isObj(t.config)) {
      for (const b of ['then', 'else']) {
        for (const target of Array.isArray(t.config[b]) ? t.config[b] : []) {
          const tt = tasks.find((x) => x.key === target);
          if (tt && !(tt.dependsOn || []).includes(t.key)) { add(`config.${b}`, `branch task "${target}" must list "${t.key}" in its dependsOn`); break; }
        }
      }
    }
    if (t.timeout !== undefined) {
      const ms = typeof t.timeout === 'string' ? protoDurationMs(t.timeout) : null;
      if (ms === null) add('timeout', 'timeout must be a duration in seconds such as "30s" or "1.5s"');
      else if (ms <= 0 || ms > LIMITS.maxTimeoutMs) add('timeout', 'timeout must be more than 0 and at most 7 days');
    }
    if (t.retry !== undefined) checkRetry(t.retry, add);
    if (list.length) out.tasks.set(t.uid, list);
  });
  const cycle = Array.isArray(tasks) ? findCycle(tasks.filter((t) => Array.isArray(t.dependsOn ?? []))) : null;
  if (cycle) {
    const t = tasks.find((x) => x.key === cycle[0]);
    const list = out.tasks.get(t.uid) || [];
    list.push({ field: 'dependsOn', message: `the dependencies form a cycle (${cycle.join(' -> ')}); a workflow must be acyclic` });
    out.tasks.set(t.uid, list);
    out.count++;
  }
  return out;
}

// ---- the server's answer ----

/** Field names the forms use, longest first (config.maxResponseBytes before config.method). */
const FIELDS = ['config.maxResponseBytes', 'config.followRedirects', 'config.expectedStatus', 'config.integration', 'config.expression',
  'config.headers', 'config.message', 'config.duration', 'config.method', 'config.output', 'config.queue', 'config.input', 'config.level',
  'config.until', 'config.body', 'config.then', 'config.else', 'config.url',
  'retry.continueOnFailure', 'retry.retryableErrors', 'retry.backoffMultiplier', 'retry.initialBackoff', 'retry.totalTimeout',
  'retry.maxAttempts', 'retry.maxBackoff', 'retry.jitter', 'dependsOn', 'description', 'timeout', 'action', 'config', 'retry', 'key', 'name'];

/**
 * Reads a server error about a definition: which task (by index into the
 * tasks sent, 0-based, or key) and which field it names.
 * -> { index, key, field, message }
 */
export function parseServerError(message, tasks) {
  const m = String(message || '');
  let index = null, key = null;
  let r;
  if ((r = /task "([^"]*)" \(#(\d+)\)/.exec(m))) { key = r[1]; index = Number(r[2]) - 1; }
  else if ((r = /task #(\d+)/.exec(m))) index = Number(r[1]) - 1;
  else if ((r = /tasks\[(\d+)\]/.exec(m))) index = Number(r[1]);
  else if ((r = /task "([^"]*)"/.exec(m))) {
    key = r[1];
    const i = tasks.findIndex((t) => t.key === key);
    index = i >= 0 ? i : tasks.findIndex((t) => t.name === key);
  }
  if (index !== null && (index < 0 || index >= tasks.length)) index = null;
  // The field: what follows the task's prefix.
  let rest = m;
  const colon = m.indexOf(': ');
  if (index !== null && colon >= 0) rest = m.slice(colon + 2);
  let field = null;
  if (/\bworkflow name\b/.test(m) && index === null) field = 'name';
  else if (/depends on itself|form a cycle/.test(rest)) field = 'dependsOn';
  else if (/branch task/.test(rest)) field = 'config.then';
  else if (/retry backoffs/.test(rest)) field = 'retry.initialBackoff';
  else if (/unknown action/.test(rest)) field = 'action';
  else if (/^key "|: key "| key "[^"]*" (must|is already)/.test(rest) || /^key\b/.test(rest)) field = 'key';
  else if ((r = /tasks\[\d+\]\.([A-Za-z]+(?:\.[A-Za-z]+)?)/.exec(m))) field = fieldOf(r[1]);
  else {
    // The field named first in the message (`retry.maxBackoff must not be less than retry.initialBackoff`).
    let best = Infinity;
    for (const f of FIELDS) {
      const re = new RegExp(`(^|[^A-Za-z0-9_])${f.replace('.', '\\.')}([^A-Za-z0-9_]|$)`);
      const hit = re.exec(rest);
      if (hit && hit.index < best) { best = hit.index; field = f; }
    }
  }
  if (field === null && index !== null && /name must not be empty|name is longer/.test(rest)) field = 'name';
  return { index, key, field, message: m };
}
