// One execution (#/workflows/:id/executions/:executionId): its status,
// times, cost and trace; the DAG of the version it runs, coloured by task
// state and kept live from the watch stream; a task's attempts, input,
// output and error; the execution log (live tail while it runs, paged once
// it ended) with a level filter; Cancel and Re-run.
import { get, stream, qs } from '../api.js';
import { h, clear, toast, duration, between, time, money, pretty } from '../ui.js';
import { renderDag, clip } from '../dag.js';
import { loadWorkflow, workflowHeader } from '../workflowNav.js';
import { traceUrl } from '../session.js';
import { ensureCss } from '../css.js';
import { enc, isAbort, isActive, stateName, stBadge, execPath, runTime, sleep, errorText, rerun, cancelRun } from './runs.js';

// LogEntry.Level names (proto/weft/v1/logs.proto); the filter is a minimum, as the API's `minLevel`.
const LEVELS = [['', 'All levels'], ['Warning', 'Warning and above'], ['Error', 'Errors only']];
const LEVEL_TAG = { Info: 'INFO', Warning: 'WARN', Error: 'ERROR' };
const LOG_PAGE = 200;
const MAX_LOG_LINES = 5000;
const REFRESH_THROTTLE_MS = 3000;
// An attempt's row keeps the state it reached; these do not overwrite it.
const WAITING = new Set(['Pending', 'Queued', 'STATUS_UNSPECIFIED']);

/** The task list of the version the execution runs (it is pinned to it). */
async function definitionOf(wf, ex, signal) {
  let tasks = wf.tasks || [];
  let note = null;
  if (ex.workflowVersion && ex.workflowVersion !== wf.version) {
    try {
      tasks = (await get(`/workflows/${enc(wf.id)}/versions/${ex.workflowVersion}`, { signal })).tasks || [];
    } catch (e) {
      if (isAbort(e) || signal.aborted) throw e;
      note = `Version ${ex.workflowVersion} could not be read (${e.message}); the graph shows the current version.`;
    }
  }
  const keys = new Set(tasks.map((t) => t.key));
  const extra = (ex.tasks || []).filter((t) => !keys.has(t.taskKey))
    .map((t) => ({ key: t.taskKey, id: t.taskId, name: t.taskKey, dependsOn: [] }));
  return { tasks: tasks.concat(extra), note };
}

/** An error string, pretty-printed when it is JSON. */
function prettyMaybe(text) {
  const t = String(text || '').trim();
  if (t.startsWith('{') || t.startsWith('[')) { try { return pretty(JSON.parse(t)); } catch { /* plain text */ } }
  return t;
}

/** Replaces el's children (arrays flattened; null, undefined and false left out). */
function fill(el, ...children) {
  clear(el).append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

const clock = (ts) => {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
};

export async function render(main, ctx) {
  ensureCss('monitor');
  const { signal } = ctx;
  const wfId = ctx.params.id;
  const exId = ctx.params.executionId;
  const base = execPath(wfId, exId);
  const [wf, first] = await Promise.all([loadWorkflow(wfId, signal), get(base, { signal })]);
  let ex = first;
  const { tasks, note: defNote } = await definitionOf(wf, ex, signal);
  const canRun = wf.role !== 'viewer';
  const byKey = new Map(tasks.map((t) => [t.key, t]));

  // ---- task state, from the execution and then its events ----
  const states = new Map();    // task key -> TaskExecution (latest)
  const attempts = new Map();  // task key -> Map(attempt number -> {attempt, status, startedAt, completedAt, error, taskSpan})
  // A stored TaskExecution (GET, the watch's "current state") keeps the task's
  // first start whatever its attempt; a live event carries its attempt's own
  // start. `taskSpan`: the row's times are the task's, not the attempt's.
  function noteTask(t, live = false) {
    if (!t?.taskKey) return;
    states.set(t.taskKey, t);
    if (!t.attempt) return;
    let m = attempts.get(t.taskKey);
    if (!m) attempts.set(t.taskKey, (m = new Map()));
    const a = m.get(t.attempt);
    if (!a) {
      m.set(t.attempt, { attempt: t.attempt, status: t.status, startedAt: t.startedAt, completedAt: t.completedAt, error: t.error, taskSpan: !live && t.attempt > 1 });
      return;
    }
    if (WAITING.has(t.status) && !WAITING.has(a.status)) return;
    a.status = t.status;
    if (live && t.startedAt && a.taskSpan) { a.startedAt = t.startedAt; a.taskSpan = false; }
    else a.startedAt = a.startedAt || t.startedAt;  // a later stored record must not replace the attempt's own start
    a.completedAt = t.completedAt || a.completedAt;
    a.error = t.error || a.error;
  }
  (ex.tasks || []).forEach((t) => noteTask(t));
  const taskStatus = (key) => states.get(key)?.status || 'Pending';

  // ---- header ----
  const statusLine = h('p', { class: 'mon-status', 'aria-live': 'polite', 'aria-atomic': 'true' });
  const facts = {};
  const fact = (name, label) => h('div', {}, h('dt', {}, label), (facts[name] = h('dd', {})));
  const cancelBtn = h('button', { type: 'button', class: 'danger' }, 'Cancel');
  const rerunBtn = h('button', { type: 'button' }, 'Re-run');
  const logsBtn = h('button', { type: 'button' }, 'Logs');
  const actionError = h('div', { class: 'form-error', role: 'alert' });
  const errorEl = h('pre', { class: 'mon-error', hidden: true });
  const outputPre = h('pre', {});
  const outputBox = h('details', { hidden: true }, h('summary', {}, 'Output'), outputPre);
  const head = h('section', { class: 'card mon-head', 'aria-labelledby': 'mon-title' },
    h('div', { class: 'mon-title' }, h('h2', { id: 'mon-title' }, 'Execution ', h('code', {}, exId)), statusLine),
    h('div', { class: 'actions' }, cancelBtn, rerunBtn, logsBtn,
      h('a', { class: 'button', href: `#/workflows/${enc(wfId)}/run?from=${enc(exId)}` }, 'Run with other input')),
    actionError,
    h('dl', { class: 'mon-facts' },
      fact('started', 'Started'), fact('ended', 'Ended'), fact('duration', 'Duration'), fact('trigger', 'Trigger'),
      fact('version', 'Version'), fact('cost', 'Cost'), fact('trace', 'Trace')),
    errorEl,
    h('details', {}, h('summary', {}, 'Input'), h('pre', {}, pretty(ex.input || {}))),
    outputBox);
  facts.version.append(h('a', { href: `#/workflows/${enc(wfId)}/versions/${ex.workflowVersion}` }, `version ${ex.workflowVersion}`));
  if (!canRun) cancelBtn.title = rerunBtn.title = 'Viewers cannot run or cancel this workflow';

  let shownStatus = null;
  let shownTrace = null;
  function updateHeader() {
    if (ex.status !== shownStatus) {
      shownStatus = ex.status;
      clear(statusLine).append(h('span', { class: 'sr-only' }, 'Status: '), stBadge(ex.status));
    }
    facts.started.textContent = ex.startedAt ? time(ex.startedAt) : ex.createdAt ? `queued ${time(ex.createdAt)}` : '—';
    facts.ended.textContent = ex.completedAt ? time(ex.completedAt) : isActive(ex) ? 'not yet' : '—';
    facts.duration.textContent = runTime(ex);
    facts.trigger.textContent = (ex.trigger || '—') + (ex.triggerId ? ` (${ex.triggerId})` : '');
    facts.cost.textContent = ex.cost ? money(ex.cost) : '$0';
    const b = ex.costBreakdown;
    if (b) facts.cost.title = `${b.taskAttempts || 0} attempts, ${Number(b.workerSeconds || 0).toFixed(2)} worker-seconds, ${b.requests || 0} requests`;
    if (ex.traceId !== shownTrace) {
      shownTrace = ex.traceId;
      const url = ex.traceId ? traceUrl(ex.traceId) : null;
      clear(facts.trace).append(!ex.traceId ? h('span', { class: 'muted' }, 'none (tracing off)')
        : url && /^https?:\/\//i.test(url)
          ? h('a', { class: 'trace-link', href: url, target: '_blank', rel: 'noopener noreferrer', title: 'Open in the trace viewer (new tab)' }, h('code', {}, ex.traceId))
          : h('code', {}, ex.traceId));
    }
    errorEl.hidden = !ex.error;
    errorEl.textContent = ex.error ? prettyMaybe(ex.error) : '';
    if (ex.output && Object.keys(ex.output).length) { outputBox.hidden = false; outputPre.textContent = pretty(ex.output); }
    cancelBtn.disabled = !canRun || !isActive(ex);
    rerunBtn.disabled = !canRun;
  }

  // ---- the graph ----
  let selected = null;
  const nodeLabel = (key) => {
    const st = states.get(key);
    const name = stateName(taskStatus(key)).replace(/_/g, ' ');
    return st?.attempt > 1 ? `${name} · attempt ${st.attempt}` : name;
  };
  const nodeClass = (key) => [`st-${stateName(taskStatus(key))}`, key === selected ? 'selected' : ''].filter(Boolean).join(' ');
  const svg = renderDag(tasks, {
    title: `Tasks of version ${ex.workflowVersion}`,
    nodeClass: (t) => nodeClass(t.key), label: (t) => nodeLabel(t.key), onSelect: (t) => select(t.key),
  });
  const baseW = Number(svg.getAttribute('width'));
  const baseH = Number(svg.getAttribute('height'));
  const dagBox = h('div', { class: 'dag-scroll dag-box', tabindex: '-1' }, svg);
  let zoom = 1;
  const zoomLabel = h('span', { class: 'muted', 'aria-live': 'polite' }, '100%');
  function setZoom(z) {
    zoom = Math.min(2, Math.max(0.3, z));
    svg.setAttribute('width', String(Math.round(baseW * zoom)));
    svg.setAttribute('height', String(Math.round(baseH * zoom)));
    zoomLabel.textContent = `${Math.round(zoom * 100)}%`;
  }
  const streamNote = h('p', { class: 'stream-note', role: 'status' });

  function paint() {
    for (const g of svg.querySelectorAll('g.node')) {
      const key = g.dataset.key;
      g.setAttribute('class', `node ${nodeClass(key)}`);
      const label = nodeLabel(key);
      g.setAttribute('aria-label', `${key}, ${label}`);
      if (key === selected) g.setAttribute('aria-pressed', 'true'); else g.removeAttribute('aria-pressed');
      const sub = g.querySelector('.node-sub');
      if (sub) sub.textContent = clip(label, 24);
    }
  }

  // ---- task panel ----
  const panelTitle = h('h2', { id: 'task-title', tabindex: '-1' });
  const panelBody = h('div', {});
  const panel = h('section', { class: 'task-panel card', 'aria-labelledby': 'task-title', hidden: true },
    h('div', { class: 'panel-head' }, panelTitle,
      h('button', { type: 'button', 'aria-label': 'Close task details', onClick: () => closePanel() }, '✕')),
    panelBody);
  panel.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.preventDefault(); closePanel(); } });
  const layout = h('div', { class: 'mon-layout' },
    h('section', { class: 'card mon-graph', 'aria-labelledby': 'graph-title' },
      tasks.length ? [
        h('div', { class: 'dag-tools' },
          h('h2', { id: 'graph-title', class: 'sr-only' }, 'Tasks'),
          h('span', { class: 'muted' }, 'Select a task for its attempts, input and output.'),
          h('span', { class: 'actions' },
            h('button', { type: 'button', 'aria-label': 'Zoom out', onClick: () => setZoom(zoom / 1.25) }, '−'),
            zoomLabel,
            h('button', { type: 'button', 'aria-label': 'Zoom in', onClick: () => setZoom(zoom * 1.25) }, '+'),
            h('button', { type: 'button', onClick: () => setZoom(Math.min(1, (dagBox.clientWidth - 4) / baseW)) }, 'Fit'))),
        dagBox,
      ] : [
        // No tasks: no empty box with zoom buttons, say so.
        h('h2', { id: 'graph-title', class: 'sr-only' }, 'Tasks'),
        h('p', { class: 'empty' }, `Version ${ex.workflowVersion} has no tasks: this execution had nothing to run.`),
      ],
      streamNote),
    panel);

  function renderPanel() {
    if (!selected) return;
    const key = selected;
    const def = byKey.get(key) || { key };
    const st = states.get(key);
    panelTitle.textContent = `Task ${def.name || key}`;
    const rows = [...(attempts.get(key)?.values() || [])].sort((a, b) => a.attempt - b.attempt);
    const worker = def.action === 'external' ? `external worker (queue ${def.config?.queue ?? '?'})` : def.action ? 'built-in' : '—';
    const hasOutput = st?.output !== undefined && st?.output !== null;
    const attempt = (a) => {
      // A failed attempt that was retried shows as failed once the next one exists.
      const status = a.status === 'Retrying' && rows.some((b) => b.attempt > a.attempt) ? 'Failed' : a.status;
      // An attempt that ended without an end time (retried) has no duration; a running one counts to now.
      const span = a.startedAt && (a.completedAt || status === 'Running') ? between(a.startedAt, a.completedAt) : null;
      // Times from a stored record of a later attempt are the task's (backoffs included).
      const later = a.taskSpan;
      return h('li', { class: 'attempt' },
        h('div', { class: 'attempt-head' }, h('strong', {}, `Attempt ${a.attempt}`), ' ', stBadge(status)),
        h('dl', { class: 'attempt-facts' },
          h('div', {}, h('dt', {}, later ? 'Task started' : 'Started'), h('dd', {}, a.startedAt ? time(a.startedAt) : '—')),
          h('div', {}, h('dt', {}, later ? 'Since task start' : 'Duration'), h('dd', {}, span === null ? '—' : span < 1 ? 'under 1 ms' : duration(span))),
          h('div', {}, h('dt', {}, 'Worker'), h('dd', {}, worker))),
        a.error ? h('pre', { class: 'task-error' }, prettyMaybe(a.error)) : null);
    };
    fill(panelBody,
      h('p', {}, stBadge(taskStatus(key)), ' ', h('code', {}, key), def.action ? ` · ${def.action}` : '',
        def.dependsOn?.length ? ` · after ${def.dependsOn.join(', ')}` : ''),
      h('h3', {}, 'Attempts'),
      rows.length ? h('ol', { class: 'attempts' }, rows.map(attempt)) : h('p', { class: 'empty' }, 'Not started yet.'),
      h('h3', {}, 'Input'),
      h('p', { class: 'hint' }, `Its config in version ${ex.workflowVersion}; {{ … }} templates are filled in when an attempt starts.`),
      h('pre', { class: 'task-input' }, pretty(def.config ?? {})),
      h('h3', {}, 'Output'),
      hasOutput ? h('pre', { class: 'task-output' }, pretty(st.output)) : h('p', { class: 'empty' }, isActive(ex) ? 'No output yet.' : 'No output.'),
      st?.error ? [h('h3', {}, 'Error'), h('pre', { class: 'task-error' }, prettyMaybe(st.error))] : null,
      def.id || st?.taskId
        ? h('div', { class: 'actions' }, h('button', { type: 'button', onClick: () => logs.showTask(def.id || st.taskId) }, 'Logs of this task'))
        : null);
  }
  function select(key) {
    selected = key;
    paint();
    renderPanel();
    panel.hidden = false;
    layout.classList.add('with-panel');
    panelTitle.focus({ preventScroll: true });
    panel.scrollIntoView({ block: 'nearest' });
  }
  function closePanel() {
    const key = selected;
    selected = null;
    panel.hidden = true;
    layout.classList.remove('with-panel');
    paint();
    if (key) svg.querySelector(`g.node[data-key="${CSS.escape(key)}"]`)?.focus();
  }

  // ---- logs ----
  const logs = logView({
    base, signal, live: () => isActive(ex),
    taskName: (id) => tasks.find((t) => t.id === id)?.key || [...states.values()].find((t) => t.taskId === id)?.taskKey || id,
    tasks: tasks.filter((t) => t.id),
  });

  fill(main,
    workflowHeader(wf, '/runs'),
    h('a', { class: 'mon-back', href: `#/workflows/${enc(wfId)}/runs` }, '← All runs'),
    head,
    defNote ? h('p', { class: 'notice' }, defNote) : null,
    layout,
    logs.section);

  // ---- updates ----
  let painting = false;
  function updateAll() {
    if (painting) return;
    painting = true;
    requestAnimationFrame(() => {
      painting = false;
      if (signal.aborted) return;
      updateHeader();
      paint();
      renderPanel();
    });
  }
  updateHeader();
  paint();

  let refreshing = null;
  async function refresh() {
    if (refreshing) return refreshing;
    refreshing = (async () => {
      try {
        const fresh = await get(base, { signal });
        ex = fresh;
        (ex.tasks || []).forEach((t) => noteTask(t));
        updateAll();
      } catch (e) {
        if (isAbort(e) || signal.aborted) return;
        streamNote.textContent = `Could not refresh: ${errorText(e)}`;
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }
  let refreshTimer = null;
  function refreshSoon() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => { refreshTimer = null; if (!signal.aborted && isActive(ex)) refresh(); }, REFRESH_THROTTLE_MS);
  }

  function onEvent(ev) {
    if (ev.task) noteTask(ev.task, ev.message !== 'current state');
    // A final status never goes back to a running one (events can repeat).
    if (ev.status && ev.status !== 'STATUS_UNSPECIFIED' && !(isActive({ status: ev.status }) && !isActive(ex))) {
      ex = { ...ex, status: ev.status };
    }
    updateAll();
    if (ev.message !== 'current state') refreshSoon();
  }

  async function watch() {
    let backoff = 1000;
    while (!signal.aborted && isActive(ex)) {
      let clean = false;
      try {
        await stream(`${base}/watch`, onEvent, { signal });
        clean = true;
        backoff = 1000;
        streamNote.textContent = '';
      } catch (e) {
        if (isAbort(e) || signal.aborted) return;
        streamNote.textContent = `Live updates interrupted (${errorText(e)}); reconnecting…`;
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, 15000);
      }
      if (signal.aborted) return;
      // The watch ends when the execution does: read it whole (times, cost, output).
      await refresh();
      if (clean && isActive(ex)) await sleep(1000, signal);
    }
  }

  // ---- actions ----
  cancelBtn.addEventListener('click', async () => {
    actionError.textContent = '';
    try {
      const done = await cancelRun(wfId, exId, `execution ${exId}`);
      if (!done) return;
      ex = done;
      (ex.tasks || []).forEach((t) => noteTask(t));
      updateAll();
      toast('Execution cancelled.', 'ok');
    } catch (e) {
      if (isAbort(e) || signal.aborted) return;
      actionError.textContent = errorText(e);
    }
  });
  rerunBtn.addEventListener('click', async () => {
    actionError.textContent = '';
    rerunBtn.disabled = true;
    try {
      const id = await rerun(wfId, ex);
      toast('Started a new run with the same input.', 'ok');
      ctx.navigate(execPath(wfId, id));
    } catch (e) {
      if (isAbort(e) || signal.aborted) return;
      actionError.textContent = errorText(e);
      rerunBtn.disabled = !canRun;
    }
  });
  logsBtn.addEventListener('click', () => logs.reveal());

  const tick = setInterval(() => { if (isActive(ex)) facts.duration.textContent = runTime(ex); }, 1000);
  signal.addEventListener('abort', () => { clearInterval(tick); clearTimeout(refreshTimer); }, { once: true });
  logs.start();
  watch();
  return () => { clearInterval(tick); clearTimeout(refreshTimer); };
}

/**
 * The execution log: a live tail (NDJSON) while the execution runs,
 * reconnecting after the last line it got; pages of GET …/logs once it
 * ended. Auto-scrolls to new lines unless the reader scrolled up.
 */
function logView({ base, signal, live, taskName, tasks }) {
  const levelSel = h('select', { id: 'log-level', name: 'minLevel' }, LEVELS.map(([v, l]) => h('option', { value: v }, l)));
  const taskSel = h('select', { id: 'log-task', name: 'taskId' },
    h('option', { value: '' }, 'All tasks'), tasks.map((t) => h('option', { value: t.id }, t.name && t.name !== t.key ? `${t.key} (${t.name})` : t.key)));
  const box = h('div', { class: 'log-box', role: 'log', tabindex: '0', 'aria-label': 'Execution log lines' });
  const stateText = h('span', { class: 'muted', role: 'status' });
  const jump = h('button', { type: 'button', hidden: true }, 'Paused: jump to the latest lines');
  const more = h('button', { type: 'button', hidden: true }, 'Load more');
  const section = h('section', { class: 'card mon-logs', id: 'logs', 'aria-labelledby': 'logs-title' },
    h('h2', { id: 'logs-title', tabindex: '-1' }, 'Logs'),
    h('div', { class: 'log-controls' },
      h('div', { class: 'field' }, h('label', { for: 'log-level' }, 'Level'), levelSel),
      tasks.length ? h('div', { class: 'field' }, h('label', { for: 'log-task' }, 'Task'), taskSel) : null),
    box,
    h('div', { class: 'log-foot' }, jump, more, stateText));

  let run = null;          // AbortController of the current load
  let follow = true;
  let lastSeq = 0;
  let lines = 0;
  let nextToken = '';
  let tailing = false;
  let scrollPending = false;

  const atBottom = () => box.scrollHeight - box.scrollTop - box.clientHeight < 24;
  box.addEventListener('scroll', () => {
    if (!tailing) return;
    follow = atBottom();
    if (follow) jump.hidden = true;
  });
  jump.addEventListener('click', () => { follow = true; jump.hidden = true; box.scrollTop = box.scrollHeight; });

  function add(entry) {
    const seq = Number(entry.sequence) || 0;
    if (seq && seq <= lastSeq) return; // a repeat after a reconnect
    lastSeq = Math.max(lastSeq, seq);
    if (!lines) box.querySelector('.empty')?.remove();
    const level = entry.level || 'Info';
    box.append(h('div', { class: `log-line lv-${stateName(level)}`, dataset: { seq: String(seq), level } },
      h('span', { class: 'log-time' }, clock(entry.createdAt)), ' ',
      h('span', { class: 'log-level' }, LEVEL_TAG[level] || level), ' ',
      entry.taskId ? [h('span', { class: 'log-task' }, `[${taskName(entry.taskId)}]`), ' '] : null,
      h('span', { class: 'log-msg' }, entry.message)));
    lines++;
    if (lines > MAX_LOG_LINES) { box.querySelector('.log-line')?.remove(); lines--; }
    if (tailing && follow) {
      if (!scrollPending) {
        scrollPending = true;
        requestAnimationFrame(() => { scrollPending = false; if (follow) box.scrollTop = box.scrollHeight; });
      }
    } else if (tailing) {
      jump.hidden = false;
    }
  }
  const query = () => ({ minLevel: levelSel.value, taskId: taskSel.value });

  async function tail(ctl) {
    tailing = true;
    let backoff = 1000;
    while (!ctl.signal.aborted) {
      try {
        stateText.textContent = 'Live: new lines appear as they are written.';
        await stream(`${base}/logs/tail${qs({ afterSequence: lastSeq || undefined, ...query() })}`, add, { signal: ctl.signal });
        stateText.textContent = 'The execution ended: this is its whole log.';
        tailing = false;
        jump.hidden = true;
        return;
      } catch (e) {
        if (isAbort(e) || ctl.signal.aborted) return;
        stateText.textContent = `Log stream interrupted (${errorText(e)}); reconnecting…`;
        await sleep(backoff, ctl.signal);
        backoff = Math.min(backoff * 2, 15000);
      }
    }
  }

  async function page(ctl) {
    tailing = false;
    more.disabled = true;
    stateText.textContent = 'Loading…';
    try {
      const res = await get(`${base}/logs${qs({ pageSize: LOG_PAGE, pageToken: nextToken, ...query() })}`, { signal: ctl.signal });
      (res.entries || []).forEach(add);
      nextToken = res.nextPageToken || '';
      more.hidden = !nextToken;
      stateText.textContent = nextToken ? `${lines} lines shown; more below.` : `${lines} line${lines === 1 ? '' : 's'}: the whole log.`;
    } catch (e) {
      if (isAbort(e) || ctl.signal.aborted) return;
      stateText.textContent = `Could not load the log: ${errorText(e)}`;
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener('click', () => { if (run && nextToken) page(run); });

  function start() {
    run?.abort();
    run = new AbortController();
    clear(box).append(h('p', { class: 'empty' }, 'No log lines yet.'));
    lastSeq = 0;
    lines = 0;
    nextToken = '';
    follow = true;
    jump.hidden = true;
    more.hidden = true;
    if (live()) tail(run); else page(run);
  }
  levelSel.addEventListener('change', start);
  taskSel.addEventListener('change', start);
  signal.addEventListener('abort', () => run?.abort(), { once: true });

  return {
    section,
    start,
    reveal() {
      section.scrollIntoView({ block: 'start' });
      section.querySelector('h2').focus({ preventScroll: true });
    },
    showTask(taskId) {
      taskSel.value = taskId;
      start();
      this.reveal();
    },
  };
}
