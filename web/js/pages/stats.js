// #/workflows/:id/stats: a workflow's statistics over a window (docs/ANALYTICS.md),
// its insights and its monthly cost budget. Every number is the server's
// (GET /workflows/{id}/stats, /insights, /budget); this page only lays it out.
import { get, put, del, all, qs } from '../api.js';
import { h, clear, field, showError, clearErrors, confirmDialog, toast, duration, money, time, ago } from '../ui.js';
import { loadWorkflow, workflowHeader } from '../workflowNav.js';
import { stackedBars, barList, boxStrip, budgetBar } from '../charts.js';
import { ensureCss } from '../css.js';

export const num = (v) => Number(v || 0);
/** 0.6 -> "60.0 %" */
export const pct = (v) => `${(num(v) * 100).toFixed(1)} %`;
/** "1.256s" -> 1.256 (seconds), or null */
export const secs = (d) => (d === undefined || d === null || d === '' ? null : parseFloat(d));
/** A Duration ("0.004s") or milliseconds for people; zero is "0 ms" (not "0 µs"). */
export const dur = (d) => (d === '0s' || d === 0 ? '0 ms' : duration(d));
export const fmtSecs = (v) => (v ? duration(v * 1000) : '0');
const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
const WINDOWS = [['hour', 'Last hour'], ['day', 'Last day'], ['week', 'Last week'], ['month', 'Last 30 days']];
export const STATUS = [['completed', 'Completed', 'c-completed'], ['failed', 'Failed', 'c-failed'], ['cancelled', 'Cancelled', 'c-cancelled'], ['timedOut', 'Timed out', 'c-timed_out']];

/** A headline figure. */
export const kpi = (key, label, value, sub) => h('div', { class: 'kpi', 'data-kpi': key },
  h('dt', {}, label), h('dd', {}, h('span', { class: 'kpi-value' }, value), sub ? h('span', { class: 'kpi-sub' }, sub) : null));

const dl = (pairs) => h('dl', { class: 'pairs' }, pairs.filter(Boolean).map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v))));

export async function render(main, ctx) {
  ensureCss('analytics');
  const { signal } = ctx;
  const id = ctx.params.id;
  const wf = await loadWorkflow(id, signal);
  const versions = await all(`/workflows/${encodeURIComponent(id)}/versions`, 'versions', {}, 500, { signal }).catch(() => []);
  const state = { window: WINDOWS.some(([w]) => w === ctx.query.window) ? ctx.query.window : 'day', version: ctx.query.version || '' };

  const insightsPath = (w) => `/workflows/${encodeURIComponent(id)}/insights${qs({ window: w === 'month' ? 'month' : 'week' })}`;
  // The first insights answer carries the workflow's budget (as GET …/budget
  // answers it, or nothing when there is none): the budget card starts from it.
  let firstInsights = get(insightsPath(state.window), { signal });
  const initialBudget = firstInsights.then((v) => v.budget || null, () => undefined);
  const statsBox = h('div', { class: 'stats-body', 'aria-live': 'polite', 'aria-busy': 'true' });
  const insightsBox = h('div', { class: 'insights-body', 'aria-busy': 'true' });
  const filters = h('form', { class: 'card filters', 'aria-label': 'Statistics window', onSubmit: (e) => { e.preventDefault(); load(); } },
    field({ name: 'window', label: 'Window', type: 'select', value: state.window, options: WINDOWS }),
    field({ name: 'version', label: 'Version', type: 'select', value: state.version,
      options: [['', 'All versions'], ...versions.map((v) => [String(v.version), `v${v.version}${v.label ? ` · ${v.label}` : ''}`])] }),
    h('p', { class: 'muted window-note' }));
  filters.addEventListener('change', () => load());

  main.append(workflowHeader(wf, '/stats'), filters,
    h('section', { 'aria-labelledby': 'st-h' }, h('h2', { id: 'st-h' }, 'Statistics'), statsBox),
    h('section', { 'aria-labelledby': 'in-h' }, h('h2', { id: 'in-h' }, 'Insights'), insightsBox),
    budgetPanel({
      heading: 'Monthly budget', path: `/workflows/${encodeURIComponent(id)}/budget`, signal, initial: initialBudget,
      note: wf.role === 'viewer' ? 'You are a viewer: only the owner or an editor can change this budget.' : null,
    }));

  let seq = 0;
  async function load() {
    const n = ++seq;
    clearErrors(filters);
    state.window = filters.querySelector('[name=window]').value;
    state.version = filters.querySelector('[name=version]').value;
    history.replaceState(null, '', `#/workflows/${encodeURIComponent(id)}/stats${qs({ window: state.window, version: state.version })}`);
    const iw = state.window === 'month' ? 'month' : 'week';
    statsBox.setAttribute('aria-busy', 'true');
    insightsBox.setAttribute('aria-busy', 'true');
    const [st, ins] = await Promise.allSettled([
      get(`/workflows/${encodeURIComponent(id)}/stats${qs({ window: state.window, version: state.version })}`, { signal }),
      firstInsights || get(insightsPath(state.window), { signal }),
    ]);
    firstInsights = null;
    if (n !== seq || signal.aborted) return;
    if (st.status === 'fulfilled') {
      renderStats(statsBox, st.value, signal);
      filters.querySelector('.window-note').textContent =
        `Executions created ${time(st.value.windowStart)} – ${time(st.value.windowEnd)} (whole UTC hours) and finished since.`;
    } else {
      clear(statsBox);
      showError(filters, st.reason);
    }
    if (ins.status === 'fulfilled') renderInsights(insightsBox, ins.value, iw, id);
    else clear(insightsBox).append(h('p', { class: 'form-error', role: 'alert' }, ins.reason.message));
    statsBox.setAttribute('aria-busy', 'false');
    insightsBox.setAttribute('aria-busy', 'false');
  }
  await load();
}

// ---- statistics ----

function renderStats(box, st, signal) {
  clear(box);
  const finished = num(st.finished), running = num(st.running);
  box.append(h('dl', { class: 'kpis' },
    kpi('executions', 'Executions', String(num(st.totalExecutions)), `${finished} finished · ${running} running`),
    // Nothing finished: no rate (not "0.0 %", which reads as all failed).
    kpi('success-rate', 'Success rate', finished ? pct(st.successRate) : '—', `${num(st.completed)} of ${finished} finished`),
    kpi('retry-rate', 'Retry rate', finished ? pct(st.retryRate) : '—', 'finished runs with a retried task'),
    kpi('p95', 'Duration p95', dur(st.p95Duration), `p50 ${dur(st.p50Duration)}`),
    kpi('cost', 'Total cost', money(st.totalCost), `average ${money(st.averageCost)}`),
    kpi('last', 'Last finished', st.lastExecutionAt ? ago(st.lastExecutionAt) : '—', st.lastExecutionAt ? time(st.lastExecutionAt) : 'nothing finished')));
  if (!finished && !running) {
    box.append(h('p', { class: 'empty' }, 'No execution of this workflow finished in this window yet. Run it, or choose a longer window.'));
  }
  const maxStatus = Math.max(1, ...STATUS.map(([k]) => num(st[k])), running);
  const errBound = st.durationErrorBound ? `Percentiles within ±${(st.durationErrorBound * 100).toFixed(2)} %.` : '';
  box.append(h('div', { class: 'grid' },
    h('div', { class: 'card' }, h('h3', {}, 'By status'),
      barList([...STATUS.map(([k, label, cls]) => ({ label, value: num(st[k]), cls, text: `${num(st[k])}${finished ? ` (${pct(num(st[k]) / finished)})` : ''}` })),
        { label: 'Running', value: running, cls: 'c-running', text: String(running) }], { label: 'Executions by status', max: maxStatus }),
      st.byTrigger?.length ? h('p', { class: 'muted' }, 'By trigger: ', st.byTrigger.map((t) => `${t.trigger} ${num(t.executions)}`).join(' · ')) : null),
    h('div', { class: 'card' }, h('h3', {}, 'Duration'),
      finished ? boxStrip({ title: 'Execution duration', summary: `Execution duration: p50 ${dur(st.p50Duration)}, p95 ${dur(st.p95Duration)}, p99 ${dur(st.p99Duration)}, max ${dur(st.maxDuration)}, mean ${dur(st.meanDuration)}`,
        p50: secs(st.p50Duration), p95: secs(st.p95Duration), p99: secs(st.p99Duration), max: secs(st.maxDuration), mean: secs(st.meanDuration), format: fmtSecs, signal }) : null,
      dl([['p50', dur(st.p50Duration)], ['p95', dur(st.p95Duration)], ['p99', dur(st.p99Duration)], ['max', dur(st.maxDuration)], ['mean', dur(st.meanDuration)]]),
      h('p', { class: 'hint' }, 'From acceptance to the final status. ', errBound)),
    h('div', { class: 'card' }, h('h3', {}, 'Queue wait'),
      finished ? boxStrip({ title: 'Queue wait', summary: `Queue wait on the critical path: p50 ${dur(st.p50QueueWait)}, p95 ${dur(st.p95QueueWait)}, p99 ${dur(st.p99QueueWait)}`,
        p50: secs(st.p50QueueWait), p95: secs(st.p95QueueWait), p99: secs(st.p99QueueWait), format: fmtSecs, signal }) : null,
      dl([['p50', dur(st.p50QueueWait)], ['p95', dur(st.p95QueueWait)], ['p99', dur(st.p99QueueWait)]]),
      h('p', { class: 'hint' }, 'Time the critical path waited for a worker.')),
    h('div', { class: 'card' }, h('h3', {}, 'Cost'),
      dl([['total', money(st.totalCost)], ['average', money(st.averageCost)], ['p95', money(st.p95Cost)], ['max', money(st.maxCost)]]),
      h('p', { class: 'hint' }, 'US dollars, under the server\'s cost rates.'))));

  const tasks = st.tasks || [];
  box.append(h('h3', {}, 'Tasks'), taskTable(tasks));
  const byKey = Object.fromEntries(tasks.map((t) => [t.taskKey, t]));
  const slow = (st.slowestTasks || []).map((k) => byKey[k]).filter(Boolean);
  const failing = (st.mostFailingTasks || []).map((k) => byKey[k]).filter(Boolean);
  box.append(h('div', { class: 'grid' },
    h('div', { class: 'card' }, h('h3', {}, 'Slowest tasks (p95)'), slow.length
      ? barList(slow.map((t) => ({ label: t.taskKey, value: secs(t.p95Duration), text: dur(t.p95Duration), cls: 'c-dur' })), { label: 'Slowest tasks by p95 duration' })
      : h('p', { class: 'empty' }, 'No task ran in this window.')),
    h('div', { class: 'card' }, h('h3', {}, 'Most failing tasks'), failing.length
      ? barList(failing.map((t) => ({ label: t.taskKey, value: t.failureRate, text: `${pct(t.failureRate)} (${num(t.failed)} of ${num(t.runs)})`, cls: 'c-failed' })), { label: 'Tasks by failure rate', max: 1 })
      : h('p', { class: 'empty' }, 'No task failed in this window.'))));

  const vs = st.versions || [];
  box.append(h('h3', {}, 'Versions'));
  if (!vs.length) { box.append(h('p', { class: 'empty' }, 'No version has finished executions in this window.')); return; }
  box.append(plainTable(['Version', 'Finished', 'Completed', 'Failed', 'Success rate', 'p50', 'p95', 'Average cost', 'First started', 'Last finished'],
    vs.map((v) => [`v${v.version}`, num(v.finished), num(v.completed), num(v.failed), pct(v.successRate), dur(v.p50Duration), dur(v.p95Duration), money(v.averageCost), time(v.firstStarted), time(v.lastFinished)]),
    'Executions per workflow version, newest first'));
  const ordered = [...vs].reverse();
  const labels = ordered.map((v) => `v${v.version}`);
  box.append(h('div', { class: 'grid charts-2' },
    stackedBars({ title: 'Success rate by version', summary: `Success rate by version: ${ordered.map((v) => `v${v.version} ${pct(v.successRate)}`).join(', ')}`,
      labels, series: [{ name: 'Success rate', values: ordered.map((v) => num(v.successRate)), cls: 'c-completed' }], format: pct, max: 1, signal }),
    stackedBars({ title: 'Median duration by version', summary: `p50 duration by version: ${ordered.map((v) => `v${v.version} ${dur(v.p50Duration)}`).join(', ')}`,
      labels, series: [{ name: 'p50 duration', values: ordered.map((v) => secs(v.p50Duration) ?? 0), cls: 'c-dur' }], format: fmtSecs, signal })));
}

function plainTable(columns, rows, caption) {
  return h('div', { class: 'table-wrap' }, h('table', {}, h('caption', { class: 'sr-caption' }, caption),
    h('thead', {}, h('tr', {}, columns.map((c, i) => h('th', { scope: 'col', class: i ? 'num' : undefined }, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((v, i) => h('td', { class: i ? 'num' : undefined, 'data-label': columns[i] }, String(v))))))));
}

const TASK_COLUMNS = [
  ['taskKey', 'Task', (t) => t.taskKey, (t) => t.taskKey],
  ['runs', 'Runs', (t) => num(t.runs)],
  ['failed', 'Failures', (t) => num(t.failed)],
  ['failureRate', 'Failure rate', (t) => num(t.failureRate), (t) => pct(t.failureRate)],
  ['retried', 'Retried', (t) => num(t.retried)],
  ['flaky', 'Flaky', (t) => num(t.flaky)],
  ['attempts', 'Attempts', (t) => num(t.attempts)],
  ['p50', 'p50', (t) => secs(t.p50Duration) ?? -1, (t) => dur(t.p50Duration)],
  ['p95', 'p95', (t) => secs(t.p95Duration) ?? -1, (t) => dur(t.p95Duration)],
  ['p99', 'p99', (t) => secs(t.p99Duration) ?? -1, (t) => dur(t.p99Duration)],
  ['max', 'Max', (t) => secs(t.maxDuration) ?? -1, (t) => dur(t.maxDuration)],
  ['cost', 'Cost', (t) => num(t.cost), (t) => money(t.cost)],
  ['costShare', 'Cost share', (t) => num(t.costShare), (t) => pct(t.costShare)],
  ['criticalPathRuns', 'Critical-path runs', (t) => num(t.criticalPathRuns)],
  ['contribution', 'Mean critical contribution', (t) => secs(t.meanCriticalContribution) ?? -1, (t) => dur(t.meanCriticalContribution)],
];

/** The per-task table, sortable by any column (buttons in the headers, aria-sort). */
function taskTable(tasks) {
  if (!tasks.length) return h('p', { class: 'empty' }, 'No task ran in this window.');
  let by = 'taskKey', asc = true;
  const tbody = h('tbody');
  const ths = TASK_COLUMNS.map(([key, label]) => h('th', { scope: 'col', class: key === 'taskKey' ? undefined : 'num' },
    h('button', { type: 'button', class: 'link sort', onClick: () => { asc = by === key ? !asc : key === 'taskKey'; by = key; draw(); } }, label)));
  const sid = `ts-${Math.random().toString(36).slice(2, 7)}`;
  const sortSelect = h('select', { id: sid, onChange: (e) => { [by] = e.target.value.split(':'); asc = e.target.value.endsWith(':asc'); draw(); } },
    TASK_COLUMNS.flatMap(([key, label]) => [[`${key}:desc`, `${label}, highest first`], [`${key}:asc`, `${label}, lowest first`]])
      .map(([v, l]) => h('option', { value: v }, key0(v) === 'taskKey' ? (v.endsWith('asc') ? 'Task, A to Z' : 'Task, Z to A') : l)));
  const draw = () => {
    const col = TASK_COLUMNS.find((c) => c[0] === by);
    const rows = [...tasks].sort((a, b) => {
      const x = col[2](a), y = col[2](b);
      const c = typeof x === 'string' ? x.localeCompare(y) : x - y;
      return (asc ? c : -c) || a.taskKey.localeCompare(b.taskKey);
    });
    ths.forEach((th, i) => th.setAttribute('aria-sort', TASK_COLUMNS[i][0] === by ? (asc ? 'ascending' : 'descending') : 'none'));
    sortSelect.value = `${by}:${asc ? 'asc' : 'desc'}`;
    clear(tbody).append(...rows.map((t) => h('tr', { 'data-task': t.taskKey }, TASK_COLUMNS.map(([key, label, value, show]) =>
      h(key === 'taskKey' ? 'th' : 'td', { scope: key === 'taskKey' ? 'row' : undefined, class: key === 'taskKey' ? undefined : 'num', 'data-label': label }, show ? show(t) : String(value(t)))))));
  };
  draw();
  return h('div', {}, h('div', { class: 'task-sort' }, h('label', { for: sid }, 'Sort tasks by'), sortSelect),
    h('div', { class: 'table-wrap' }, h('table', { class: 'task-stats' },
    h('caption', { class: 'sr-caption' }, 'Per-task statistics; the column buttons sort the table'),
    h('thead', {}, h('tr', {}, ths)), tbody)));
}
const key0 = (v) => v.split(':')[0];

// ---- insights ----

function insightCard(kind, title, numbers, explanation, extra) {
  return h('article', { class: 'card insight', 'data-kind': kind },
    h('h3', {}, title), dl(numbers), extra || null, explanation ? h('p', { class: 'explanation' }, explanation) : null);
}

function renderInsights(box, ins, window, wfId) {
  clear(box);
  box.append(h('p', { class: 'muted' }, `Learned from the last ${window === 'month' ? '30 days' : 'week'} (${time(ins.windowStart)} – ${time(ins.windowEnd)}).`));
  const cards = [];
  const nr = ins.nextRun || {};
  cards.push(insightCard('next_run', 'Next run duration', nr.predicted ? [
    ['predicted', dur(nr.predicted)],
    ['interval', `${dur(nr.low)} – ${dur(nr.high)}`],
    ['confidence', pct(nr.confidence)],
    ['sample', plural(num(nr.sampleSize), 'run')],
    ['mean ± sd', `${dur(nr.mean)} ± ${dur(nr.standardDeviation)}`],
  ] : [['sample', plural(num(nr.sampleSize), 'run')]], nr.explanation));
  const b = ins.bottleneck;
  if (b) {
    cards.push(insightCard('bottleneck', `Bottleneck: ${b.taskKey}`, [
      ['mean contribution', dur(b.meanContribution)], ['share of duration', pct(b.shareOfDuration)],
      ['on critical path', pct(b.onCriticalPath)], ['sample', plural(num(b.sampleSize), 'execution')],
    ], b.explanation));
  }
  for (const f of ins.flakyTasks || []) {
    cards.push(insightCard('flaky', `Flaky task: ${f.taskKey}`, [
      ['flaky runs', `${num(f.flakyRuns)} of ${num(f.runs)} (${pct(f.flakyRate)})`], ['at least (95 %)', pct(f.confidence)],
    ], f.explanation, f.errors?.length ? h('div', {}, h('h4', {}, 'Last errors'),
      h('ul', { class: 'errors' }, f.errors.map((e) => h('li', {}, h('code', {}, e.message), ` × ${num(e.count)}`)))) : null));
  }
  for (const sg of ins.suggestions || []) {
    const sameTimeout = sg.currentTimeout === sg.suggestedTimeout;
    const sameAttempts = sg.currentMaxAttempts === sg.suggestedMaxAttempts;
    cards.push(insightCard('suggestion', `Settings for ${sg.taskKey}`, [
      ['timeout', `${sg.currentTimeout ? dur(sg.currentTimeout) : 'none'} → ${dur(sg.suggestedTimeout)}${sameTimeout ? ' (keep)' : ''}`],
      ['max attempts', `${sg.currentMaxAttempts ?? 1} → ${sg.suggestedMaxAttempts ?? 1}${sameAttempts ? ' (keep)' : ''}`],
      ['observed p99 / max', `${dur(sg.observedP99)} / ${dur(sg.observedMax)}`],
      ['attempt failure rate', pct(sg.attemptFailureRate)], ['sample', plural(num(sg.sampleSize), 'run')],
    ], sg.explanation));
  }
  const KIND = { slow_run: 'Slow run', costly_run: 'Costly run', success_rate_drop: 'Success-rate drop' };
  for (const a of ins.anomalies || []) {
    const fmt = a.kind === 'costly_run' ? money : a.kind === 'success_rate_drop' ? pct : (v) => fmtSecs(num(v));
    cards.push(insightCard('anomaly', `Anomaly: ${KIND[a.kind] || a.kind}`, [
      ['observed', fmt(a.observed)], ['expected', fmt(a.expected)], ['score', num(a.score).toFixed(2)], ['confidence', pct(a.confidence)],
      a.version ? ['version', `v${a.version}`] : null, a.at ? ['at', time(a.at)] : null,
    ], a.explanation, a.executionId ? h('p', {}, h('a', { href: `#/workflows/${encodeURIComponent(wfId)}/executions/${encodeURIComponent(a.executionId)}` }, `Open execution ${a.executionId}`)) : null));
  }
  box.append(h('div', { class: 'grid insights' }, cards));
  if (cards.length === 1) {
    box.append(h('p', { class: 'empty insights-empty' }, 'No bottleneck, flaky tasks, suggestions or anomalies yet: most insights need at least 10 finished runs in the window.'));
  }
}

// ---- budgets (workflow and organization; analytics.js uses this too) ----

const zones = () => { try { return Intl.supportedValuesOf('timeZone'); } catch { return ['UTC']; } };
export const browserZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
const STATUS_TEXT = { ok: 'on track', forecast_over: 'forecast over limit', over: 'over limit' };

/**
 * A budget card: GET/PUT/DELETE `path`. opts: {heading, path, signal, note (a hint above the form),
 * editable (false hides the form), initial (a promise of the budget, null for none, undefined: GET it)}
 */
export function budgetPanel(opts) {
  const hid = `b-${Math.random().toString(36).slice(2, 7)}`;
  const view = h('div', { class: 'budget-view', 'aria-live': 'polite' });
  const dlId = `${hid}-zones`;
  const form = h('form', { class: 'budget-form', novalidate: true, 'aria-label': `${opts.heading}: set the limit` },
    h('div', { class: 'form-error', role: 'alert' }),
    opts.note ? h('p', { class: 'hint' }, opts.note) : null,
    h('div', { class: 'form-row' },
      field({ name: 'monthlyLimitUsd', label: 'Monthly limit (US $)', type: 'number', attrs: { step: 'any', inputmode: 'decimal' }, hint: 'More than 0, at most 1,000,000,000.' }),
      field({ name: 'timeZone', label: 'Time zone of the month', value: browserZone(), attrs: { list: dlId, autocomplete: 'off', spellcheck: 'false' }, hint: 'An IANA zone, like UTC or Europe/Berlin.' })),
    h('datalist', { id: dlId }, zones().map((z) => h('option', { value: z }))),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save budget'),
      h('button', { type: 'button', class: 'danger', hidden: true, onClick: remove }, 'Remove budget')));
  const removeBtn = form.querySelector('button.danger');
  const section = h('section', { class: 'card budget', 'aria-labelledby': hid }, h('h2', { id: hid }, opts.heading), view, opts.editable === false ? null : form);
  let budget = null;

  function draw() {
    clear(view);
    removeBtn.hidden = !budget;
    form.querySelector('button.primary').textContent = budget ? 'Update budget' : 'Save budget';
    if (!budget) { view.append(h('p', { class: 'empty budget-none' }, 'No budget set: there is no monthly cost limit.')); return; }
    const b = budget;
    const status = b.status || 'ok';
    view.append(
      h('p', { class: 'budget-status' }, h('span', { class: `badge s-${status}` }, STATUS_TEXT[status] || status), ` ${b.month || ''} · zone ${b.timeZone}`),
      h('dl', { class: 'kpis' },
        kpi('spent', 'Spent this month', money(b.spentUsd), `of ${money(b.monthlyLimitUsd)}`),
        kpi('rate', 'Daily rate', `${money(b.dailyRateUsd)}/day`),
        kpi('forecast', 'Month-end forecast', money(b.forecastUsd), `95 % interval ${money(b.forecastLowUsd)} – ${money(b.forecastHighUsd)}`),
        kpi('limit', 'Limit', money(b.monthlyLimitUsd))),
      budgetBar({ title: `${opts.heading}: spend, forecast and limit`, signal: opts.signal,
        summary: `Spent ${money(b.spentUsd)} of a ${money(b.monthlyLimitUsd)} limit; forecast ${money(b.forecastUsd)} (95 % interval ${money(b.forecastLowUsd)} to ${money(b.forecastHighUsd)}); ${STATUS_TEXT[status] || status}`,
        spent: num(b.spentUsd), forecast: num(b.forecastUsd), low: num(b.forecastLowUsd), high: num(b.forecastHighUsd), limit: num(b.monthlyLimitUsd), format: money }),
      b.explanation ? h('p', { class: 'explanation' }, b.explanation) : null);
    form.querySelector('[name=monthlyLimitUsd]').value = String(b.monthlyLimitUsd);
    form.querySelector('[name=timeZone]').value = b.timeZone || 'UTC';
  }

  async function load() {
    const initial = await opts.initial;
    if (initial !== undefined) { budget = initial; draw(); return; }
    try {
      budget = await get(opts.path, { signal: opts.signal });
    } catch (e) {
      if (e.name === 'AbortError') return;
      budget = null;
      if (e.status !== 404) { draw(); view.prepend(h('p', { class: 'form-error', role: 'alert' }, e.message)); return; }
    }
    draw();
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const raw = form.querySelector('[name=monthlyLimitUsd]').value.trim();
    const body = { monthlyLimitUsd: raw === '' ? 0 : Number(raw), timeZone: form.querySelector('[name=timeZone]').value.trim() };
    const btn = form.querySelector('button.primary');
    btn.disabled = true;
    try {
      budget = await put(opts.path, body, { signal: opts.signal });
      draw();
      toast('Budget saved.', 'ok');
    } catch (err) {
      if (err.name !== 'AbortError') showError(form, err);
    } finally { btn.disabled = false; }
  });

  async function remove() {
    if (!(await confirmDialog('Remove this budget?', { confirm: 'Remove', danger: true }))) return;
    clearErrors(form);
    try {
      await del(opts.path, { signal: opts.signal });
      budget = null;
      draw();
      toast('Budget removed.', 'ok');
    } catch (err) {
      if (err.name !== 'AbortError') showError(form, err);
    }
  }

  load();
  return section;
}
