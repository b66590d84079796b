// A workflow's runs (#/workflows/:id/runs): its executions, newest first,
// paged with "Load more", filtered by status, refreshed every 5 s while one
// of the shown runs is still going. Also the helpers the run form, the
// monitor and the operations view share (statuses, re-run, cancel).
import { get, post, qs, isAbort } from '../api.js';
import { h, clear, table, duration, between, time, ago, money, confirmDialog } from '../ui.js';
import { loadWorkflow, workflowHeader } from '../workflowNav.js';
import { ensureCss } from '../css.js';

const PAGE_SIZE = 25;
const REFRESH_MS = 5000;
const IDLE_MS = 30_000;

export const enc = encodeURIComponent;
export { isAbort };

/** Execution statuses (Execution.Status names) that are not final. */
export const ACTIVE = new Set(['Pending', 'Running']);
export const isActive = (ex) => ACTIVE.has(ex?.status);
export const STATUSES = ['Pending', 'Running', 'Completed', 'Failed', 'Cancelled', 'TimedOut'];

/** "TimedOut" -> "timed_out", "Completed" -> "completed" (CSS class and label). */
export function stateName(status) {
  if (!status || status === 'STATUS_UNSPECIFIED') return 'unknown';
  return String(status).replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase();
}

/** A status badge: the state in words (never by colour alone). */
export function stBadge(status) {
  const name = stateName(status);
  return h('span', { class: `badge s-${name}` }, name.replace(/_/g, ' '));
}

export const execPath = (wfId, exId) => `/workflows/${enc(wfId)}/executions/${enc(exId)}`;
export const monitorHref = (wfId, exId) => '#' + execPath(wfId, exId);

/** How long it ran (to now while it runs). */
export function runTime(ex) {
  if (!ex?.startedAt) return '—';
  return duration(between(ex.startedAt, ex.completedAt));
}

export function when(ts) {
  if (!ts) return '—';
  return h('time', { datetime: ts, title: time(ts) }, ago(ts));
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) { resolve(); return; }
    const t = setTimeout(done, ms);
    function done() { clearTimeout(t); signal?.removeEventListener('abort', done); resolve(); }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** The server's message, with the wait a 429 asks for when api.js passes it on. */
export function errorText(err) {
  let text = err?.message || String(err);
  const wait = Number(err?.retryAfter ?? err?.body?.retryAfter);
  if (err?.status === 429) text += Number.isFinite(wait) && wait > 0 ? ` (try again in ${wait} s)` : ' (try again shortly)';
  return text;
}

/** Starts the workflow again with the execution's input; resolves with the new execution id. */
export async function rerun(wfId, ex) {
  const res = await post(`/workflows/${enc(wfId)}/execute`, { input: ex.input || {} });
  return res.executionId;
}

/**
 * Asks, then cancels. Resolves with the execution after the cancel, or null
 * when the user said no. Throws the server's error.
 */
export async function cancelRun(wfId, exId, label) {
  const ok = await confirmDialog(`Cancel ${label || exId}? Running tasks are told to stop; waiting ones never start.`, { confirm: 'Cancel run', dismiss: 'Keep running', danger: true });
  if (!ok) return null;
  return post(`${execPath(wfId, exId)}/cancel`, {});
}

/** Keeps keyboard focus on the same link or button when a list is rebuilt. */
export function keepFocus(container, rebuild) {
  const active = document.activeElement;
  const key = container.contains(active) ? active.dataset.focus || active.getAttribute('href') : null;
  rebuild();
  if (!key) return;
  const again = [...container.querySelectorAll('a, button')].find((el) => (el.dataset.focus || el.getAttribute('href')) === key);
  again?.focus({ preventScroll: true });
}

export async function render(main, ctx) {
  ensureCss('monitor');
  const { signal } = ctx;
  const wfId = ctx.params.id;
  const wf = await loadWorkflow(wfId, signal);
  let status = STATUSES.includes(ctx.query?.status) ? ctx.query.status : '';
  let rows = [];
  let next = '';
  let timer = null;

  const filter = h('select', { id: 'runs-status', name: 'status' },
    h('option', { value: '' }, 'All statuses'),
    STATUSES.map((s) => h('option', { value: s, selected: s === status }, stateName(s).replace(/_/g, ' '))));
  const summary = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' });
  const errorBox = h('div', { class: 'form-error', role: 'alert' });
  const listArea = h('div', { class: 'runs-table' });
  const more = h('button', { type: 'button', class: 'runs-more', hidden: true }, 'Load more');
  main.append(
    workflowHeader(wf, '/runs'),
    h('div', { class: 'runs-bar' },
      h('div', { class: 'field' }, h('label', { for: 'runs-status' }, 'Status'), filter),
      h('div', { class: 'field' }, h('button', { type: 'button', onClick: () => reload() }, 'Refresh'))),
    errorBox, summary, listArea, h('div', { class: 'actions' }, more));

  const columns = [
    { label: 'Execution', cell: (ex) => h('a', { href: monitorHref(wfId, ex.executionId) }, h('code', {}, ex.executionId)) },
    { label: 'Status', cell: (ex) => stBadge(ex.status) },
    { label: 'Started', cell: (ex) => when(ex.startedAt || ex.createdAt) },
    { label: 'Duration', class: 'num', cell: (ex) => runTime(ex) },
    { label: 'Trigger', cell: (ex) => ex.trigger || '—' },
    { label: 'Version', class: 'num', cell: (ex) => String(ex.workflowVersion ?? '—') },
    { label: 'Cost', class: 'num', cell: (ex) => money(ex.cost) },
  ];

  function draw() {
    keepFocus(listArea, () => {
      clear(listArea).append(table(columns, rows, {
        caption: 'Runs, newest first',
        empty: status ? `No ${stateName(status).replace(/_/g, ' ')} runs.` : 'No runs yet. Use Run to start one.',
      }));
    });
    more.hidden = !next;
    const active = rows.filter(isActive).length;
    summary.textContent = rows.length
      ? `${rows.length} run${rows.length === 1 ? '' : 's'} shown${active ? `, ${active} still going (refreshing every ${REFRESH_MS / 1000} s)` : ''}.`
      : '';
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    timer = null;
    if (signal.aborted) return;
    // Every REFRESH_MS while something runs; otherwise every IDLE_MS, so runs
    // started elsewhere (a schedule, a webhook, another tab) show up too.
    timer = setTimeout(() => { if (document.hidden) schedule(); else reload({ keep: true, quiet: true }); },
      rows.some(isActive) ? REFRESH_MS : IDLE_MS);
  }

  /** Loads the first page again (as many rows as are shown when `keep`); a newer load wins. */
  let generation = 0;
  async function reload({ keep = false, quiet = false } = {}) {
    const mine = ++generation;
    if (!quiet) summary.textContent = 'Loading…';
    try {
      const size = keep ? Math.min(1000, Math.max(PAGE_SIZE, rows.length)) : PAGE_SIZE;
      const page = await get(`/workflows/${enc(wfId)}/executions${qs({ pageSize: size, status })}`, { signal });
      if (mine !== generation) return;
      rows = page.executions || [];
      next = page.nextPageToken || '';
      errorBox.textContent = '';
      draw();
    } catch (e) {
      if (isAbort(e) || signal.aborted || mine !== generation) return;
      errorBox.textContent = errorText(e);
      summary.textContent = '';
      schedule();
    }
  }

  more.addEventListener('click', async () => {
    if (!next) return;
    const mine = ++generation;
    more.disabled = true;
    try {
      const page = await get(`/workflows/${enc(wfId)}/executions${qs({ pageSize: PAGE_SIZE, status, pageToken: next })}`, { signal });
      if (mine !== generation) return;
      const seen = new Set(rows.map((r) => r.executionId));
      rows = rows.concat((page.executions || []).filter((r) => !seen.has(r.executionId)));
      next = page.nextPageToken || '';
      errorBox.textContent = '';
      draw();
    } catch (e) {
      if (isAbort(e) || signal.aborted || mine !== generation) return;
      errorBox.textContent = errorText(e);
    } finally {
      more.disabled = false;
    }
  });

  filter.addEventListener('change', () => { status = filter.value; rows = []; reload(); });
  signal.addEventListener('abort', () => clearTimeout(timer));
  await reload();
  return () => clearTimeout(timer);
}
