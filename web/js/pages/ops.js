// Operations (#/ops), the installed app's start page, made for a phone
// first: the latest runs of your workflows in the selected organization,
// grouped Running / Failed / Succeeded / Cancelled, each a large touch target
// to its monitor, with Run, Cancel and Re-run on the row. There is no
// cross-workflow list of executions in the API, so it reads the workflows
// (summaries) and then each one's latest executions, a few at a time.
import { all, get } from '../api.js';
import { session, currentOrg } from '../session.js';
import { h, clear, toast, pageHeader } from '../ui.js';
import { ensureCss } from '../css.js';
import {
  enc, isAbort, isActive, stBadge, execPath, monitorHref, runTime, when, errorText, rerun, cancelRun, keepFocus,
} from './runs.js';

const MAX_WORKFLOWS = 20;      // workflows looked at (most recently changed first)
const RUNS_PER_WORKFLOW = 6;   // latest executions read of each
const IN_FLIGHT = 6;           // requests at once
const PER_GROUP = 25;          // rows shown per group
const REFRESH_MS = 15000;      // while something runs and the page is visible
const IDLE_MS = 60000;         // while nothing runs (a schedule or a webhook may start something)

const RECENT_MS = 7 * 86400_000; // ended runs older than this are left out
const recent = (ex) => Date.now() - Date.parse(ex.completedAt || ex.startedAt || ex.createdAt || 0) < RECENT_MS;

const GROUPS = [
  { id: 'running', title: 'Running', match: (ex) => isActive(ex), tone: 'st-active', empty: 'Nothing is running.' },
  { id: 'failed', title: 'Failed', match: (ex) => (ex.status === 'Failed' || ex.status === 'TimedOut') && recent(ex), tone: 'st-bad', empty: 'No failures in the last 7 days.' },
  { id: 'succeeded', title: 'Succeeded', match: (ex) => ex.status === 'Completed' && recent(ex), tone: 'st-good', empty: 'No successful runs in the last 7 days.' },
  { id: 'cancelled', title: 'Cancelled', match: (ex) => ex.status === 'Cancelled' && recent(ex), tone: '', empty: null },
];

/** Maps `items` through async `fn` with at most `n` in flight; results in order. */
async function pool(items, n, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => { while (next < items.length) { const i = next++; out[i] = await fn(items[i], i); } };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

const newest = (a, b) => Date.parse(b.ex.startedAt || b.ex.createdAt || 0) - Date.parse(a.ex.startedAt || a.ex.createdAt || 0);

export async function render(main, ctx) {
  ensureCss('monitor');
  const { signal } = ctx;
  const orgId = session.orgId;
  const org = currentOrg();
  let timer = null;
  let loading = null;

  const refreshBtn = h('button', { type: 'button', class: 'primary' }, 'Refresh');
  const summary = h('p', { class: 'ops-summary muted', role: 'status', 'aria-live': 'polite' }, 'Loading…');
  const errorBox = h('div', { class: 'form-error', role: 'alert' });
  const body = h('div', { class: 'ops-body' });
  main.append(
    pageHeader('Operations', refreshBtn),
    h('p', { class: 'muted' }, 'The latest runs of your workflows', org ? [' in ', h('strong', {}, org.name)] : '', '.'),
    summary, errorBox, body);

  function row(item, group) {
    const { ex, wf } = item;
    const editor = wf.role !== 'viewer';
    const label = `${wf.name} run ${ex.executionId}`;
    // A viewer may watch, not run, cancel or re-run (the server answers 403).
    const actions = editor ? [h('a', { class: 'button', href: `#/workflows/${enc(wf.id)}/run`, 'aria-label': `Run ${wf.name}`, dataset: { focus: `run:${ex.executionId}` } }, 'Run')] : [];
    if (editor && isActive(ex)) {
      actions.push(h('button', {
        type: 'button', class: 'danger', 'aria-label': `Cancel ${label}`, dataset: { focus: `cancel:${ex.executionId}` },
        onClick: async (e) => {
          const btn = e.currentTarget;
          btn.disabled = true;
          try {
            const done = await cancelRun(wf.id, ex.executionId, `the run of ${wf.name}`);
            if (done) { toast(`Cancelled the run of ${wf.name}.`, 'ok'); await load(); }
          } catch (err) {
            if (isAbort(err) || signal.aborted) return;
            toast(errorText(err), 'error');
          } finally {
            btn.disabled = false;
          }
        },
      }, 'Cancel'));
    }
    if (editor && !isActive(ex)) {
      actions.push(h('button', {
        type: 'button', 'aria-label': `Re-run ${label}`, dataset: { focus: `rerun:${ex.executionId}` },
        onClick: async (e) => {
          const btn = e.currentTarget;
          btn.disabled = true;
          try {
            const id = await rerun(wf.id, ex);
            toast(`Started ${wf.name} again.`, 'ok');
            ctx.navigate(execPath(wf.id, id));
          } catch (err) {
            if (isAbort(err) || signal.aborted) return;
            toast(errorText(err), 'error');
            btn.disabled = false;
          }
        },
      }, 'Re-run'));
    }
    return h('li', { class: ['ops-row', group.tone], dataset: { execution: ex.executionId } },
      h('a', { class: 'ops-main', href: monitorHref(wf.id, ex.executionId) },
        h('span', { class: 'ops-wf' }, wf.name),
        h('span', { class: 'ops-meta' }, stBadge(ex.status), when(ex.startedAt || ex.createdAt), h('span', {}, runTime(ex)),
          ex.trigger ? h('span', {}, ex.trigger) : null, h('code', {}, ex.executionId)),
        ex.error ? h('span', { class: 'ops-err' }, ex.error) : null),
      h('div', { class: 'ops-actions' }, actions));
  }

  function draw(items, failed) {
    keepFocus(body, () => {
      clear(body);
      for (const g of GROUPS) {
        const mine = items.filter((it) => g.match(it.ex)).sort(newest);
        if (!mine.length && !g.empty) continue;
        body.append(h('section', { class: 'ops-group', 'aria-labelledby': `ops-${g.id}` },
          h('h2', { id: `ops-${g.id}` }, g.title, h('span', { class: 'badge' }, String(mine.length))),
          mine.length
            ? h('ul', { class: 'ops-list' }, mine.slice(0, PER_GROUP).map((it) => row(it, g)))
            : h('p', { class: 'empty' }, g.empty)));
      }
    });
    const running = items.filter((it) => isActive(it.ex)).length;
    const bad = items.filter((it) => GROUPS[1].match(it.ex)).length;
    summary.textContent = `${running} running, ${bad} failed, updated ${new Date().toLocaleTimeString()}.`;
    errorBox.textContent = failed.length ? `Could not read the runs of ${failed.join(', ')}.` : '';
  }

  async function fetchAll() {
    const wfs = (await all('/workflows', 'workflows', { summary: true, pageSize: 100 }, 500, { signal }))
      .filter((w) => !orgId || !w.orgId || w.orgId === orgId)
      .sort((a, b) => Date.parse(b.updatedAt || b.createdAt || 0) - Date.parse(a.updatedAt || a.createdAt || 0))
      .slice(0, MAX_WORKFLOWS);
    const failed = [];
    const lists = await pool(wfs, IN_FLIGHT, async (wf) => {
      try {
        const page = await get(`/workflows/${enc(wf.id)}/executions?pageSize=${RUNS_PER_WORKFLOW}`, { signal });
        return (page.executions || []).map((ex) => ({ ex, wf }));
      } catch (e) {
        if (isAbort(e) || signal.aborted) throw e;
        failed.push(wf.name);
        return [];
      }
    });
    return { wfs, items: lists.flat(), failed };
  }

  function load() {
    if (loading) return loading;
    clearTimeout(timer);
    refreshBtn.disabled = true;
    refreshBtn.textContent = 'Refreshing…';
    loading = (async () => {
      try {
        const { wfs, items, failed } = await fetchAll();
        if (!wfs.length) {
          clear(body).append(h('p', { class: 'empty' }, 'No workflows here yet. ', h('a', { href: '#/workflows/new' }, 'Create one')));
          summary.textContent = '';
          return;
        }
        draw(items, failed);
        // Faster while something runs; slower otherwise, so new runs and failures still show up.
        arm(items.some((it) => isActive(it.ex)) ? REFRESH_MS : IDLE_MS);
      } catch (e) {
        if (isAbort(e) || signal.aborted) return;
        errorBox.textContent = errorText(e);
        summary.textContent = '';
      } finally {
        loading = null;
        refreshBtn.disabled = false;
        refreshBtn.textContent = 'Refresh';
      }
    })();
    return loading;
  }
  /** Looks again in a while (not while the page is hidden). */
  function arm(ms) {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (signal.aborted) return;
      if (document.visibilityState === 'visible') load(); else arm(ms);
    }, ms);
  }

  refreshBtn.addEventListener('click', () => load());
  signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  await load();
  return () => clearTimeout(timer);
}
