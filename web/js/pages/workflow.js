// #/workflows/:id — a workflow at a glance: its description and DAG (a
// node's config opens in a side panel), its last runs, its active schedules
// and links to the pages that change it.
import { get, qs } from '../api.js';
import { ensureCss } from '../css.js';
import { dagExplorer, loadFailure } from '../diff.js';
import { ago, badge, h, clear, time, statusName } from '../ui.js';
import { loadWorkflow, workflowHeader } from '../workflowNav.js';

ensureCss('versions');

export async function render(main, ctx) {
  const id = ctx.params.id;
  let wf;
  try {
    wf = await loadWorkflow(id, ctx.signal);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    main.append(loadFailure(e));
    return;
  }
  const base = `#/workflows/${encodeURIComponent(wf.id)}`;
  const tasks = wf.tasks || [];

  const runs = h('div', { 'aria-live': 'polite' }, h('p', { class: 'loading' }, 'Loading runs…'));
  const schedules = h('div', { 'aria-live': 'polite' }, h('p', { class: 'loading' }, 'Loading schedules…'));

  main.append(
    workflowHeader(wf, ''),
    h('div', { class: 'ov-grid' },
      h('section', { class: 'card', 'aria-labelledby': 'ov-def' },
        h('h2', { id: 'ov-def' }, 'Definition'),
        wf.description ? h('p', { class: 'ov-desc' }, wf.description) : h('p', { class: 'empty' }, 'No description.'),
        h('p', { class: 'muted' }, `${tasks.length} task${tasks.length === 1 ? '' : 's'} · version ${wf.version ?? 1} · updated ${ago(wf.updatedAt)}`,
          tasks.length ? ' · select a task to see its config' : ''),
        dagExplorer(tasks, {
          title: `${wf.name}: tasks and their dependencies`,
          empty: 'No tasks yet: add some in the editor.',
        })),
      h('div', {},
        h('section', { class: 'card', 'aria-labelledby': 'ov-runs' },
          h('h2', { id: 'ov-runs' }, 'Last runs'), runs,
          h('p', {}, h('a', { href: `${base}/runs` }, 'All runs'))),
        h('section', { class: 'card', 'aria-labelledby': 'ov-sched' },
          h('h2', { id: 'ov-sched' }, 'Active schedules'), schedules,
          h('p', {}, h('a', { href: `${base}/schedules` }, 'Manage schedules'))),
        h('section', { class: 'card', 'aria-labelledby': 'ov-links' },
          h('h2', { id: 'ov-links' }, 'Quick links'),
          h('div', { class: 'quick-links' },
            h('a', { class: 'button', href: `${base}/edit` }, 'Edit'),
            wf.role === 'viewer' ? null : h('a', { class: 'button primary', href: `${base}/run` }, 'Run'),
            h('a', { class: 'button', href: `${base}/versions` }, 'Versions'),
            h('a', { class: 'button', href: `${base}/stats` }, 'Statistics'))))));

  const path = `/workflows/${encodeURIComponent(wf.id)}`;
  await Promise.all([
    get(`${path}/executions${qs({ pageSize: 5 })}`, { signal: ctx.signal })
      .then((r) => showRuns(runs, wf, r?.executions || []), (e) => failed(runs, e)),
    get(`${path}/schedules${qs({ pageSize: 100 })}`, { signal: ctx.signal })
      .then((r) => showSchedules(schedules, r?.schedules || []), (e) => failed(schedules, e)),
  ]);
}

function failed(box, e) {
  if (e.name === 'AbortError') return;
  clear(box).append(h('p', { class: 'form-error', role: 'alert' }, e.message || String(e)));
}

function showRuns(box, wf, executions) {
  clear(box);
  if (!executions.length) {
    box.append(h('p', { class: 'empty' }, 'No runs yet.'));
    return;
  }
  const base = `#/workflows/${encodeURIComponent(wf.id)}/executions/`;
  box.append(h('ul', { class: 'run-list' }, executions.slice(0, 5).map((e) => h('li', {},
    badge(e.status),
    h('a', { href: base + encodeURIComponent(e.executionId), 'aria-label': `Execution ${e.executionId}, ${statusName(e.status)}` }, e.executionId),
    h('span', { class: 'muted' },
      [`v${e.workflowVersion ?? '?'}`, e.trigger || null, h('time', { datetime: e.createdAt, title: time(e.createdAt) }, ago(e.createdAt))]
        .filter(Boolean).flatMap((x, i) => (i ? [' · ', x] : [x])))))));
}

function showSchedules(box, list) {
  clear(box);
  const active = list.filter((s) => !s.paused);
  const paused = list.length - active.length;
  if (!active.length) box.append(h('p', { class: 'empty' }, 'No active schedules.'));
  else {
    box.append(h('ul', { class: 'sched-list' }, active.map((s) => h('li', {},
      h('code', {}, s.cron),
      h('span', { class: 'muted' }, s.timezone || 'UTC'),
      s.description ? h('span', {}, s.description) : null,
      h('span', {}, 'next: ', s.nextRunAt
        ? h('time', { datetime: s.nextRunAt, title: s.nextRunAt }, `${time(s.nextRunAt)} (${ago(s.nextRunAt)})`)
        : h('span', { class: 'muted' }, 'none (past its end)'))))));
  }
  if (paused) box.append(h('p', { class: 'muted' }, `${paused} paused schedule${paused === 1 ? '' : 's'} not shown.`));
}
