// #/analytics: execution trends of the workflows the user can see (or, for
// an organization admin, of the whole organization) per day, month or year
// in the browser's time zone (GET /analytics/workflow-executions), and the
// organization's monthly budget (GET/PUT/DELETE /orgs/{orgId}/budget).
import { get, all, qs } from '../api.js';
import { h, clear, field, showError, clearErrors, pageHeader, duration, money } from '../ui.js';
import { session, currentOrg } from '../session.js';
import { lineChart, stackedBars, sparkline } from '../charts.js';
import { ensureCss } from '../css.js';
import { num, pct, secs, fmtSecs, kpi, STATUS, budgetPanel, browserZone } from './stats.js';

const GRAINS = [['daily', 'Day'], ['monthly', 'Month'], ['yearly', 'Year']];
const TRIGGERS = ['manual', 'api', 'schedule', 'webhook', 'event'];
const STATUSES = [['Completed', 'Completed'], ['Failed', 'Failed'], ['Cancelled', 'Cancelled'], ['TimedOut', 'Timed out']];
const NOUN = { daily: 'day', monthly: 'month', yearly: 'year' };

/** "2026-03-01" (a local date) -> that local midnight as RFC 3339 UTC; `plusDays` moves it. */
function localMidnight(date, plusDays = 0) {
  const [y, m, d] = date.split('-').map(Number);
  return new Date(y, m - 1, d + plusDays).toISOString();
}

export async function render(main, ctx) {
  ensureCss('analytics');
  const { signal, query } = ctx;
  const zone = browserZone();
  const org = currentOrg();
  const admin = org?.role === 'admin';
  const workflows = await all('/workflows', 'workflows', { pageSize: 200, summary: true }, 1000, { signal }).catch(() => []);

  const form = h('form', { class: 'card filters trends-filters', novalidate: true, 'aria-label': 'Trend filters', onSubmit: (e) => { e.preventDefault(); load(); } },
    h('div', { class: 'form-error', role: 'alert' }),
    h('div', { class: 'form-row' },
      field({ name: 'since', label: 'From (day)', type: 'date', value: query.since || '', hint: 'Empty: 400 days back.' }),
      field({ name: 'until', label: 'To (day, included)', type: 'date', value: query.until || '', hint: 'Empty: now.' }),
      field({ name: 'workflowId', label: 'Workflow', type: 'select', value: query.workflowId || '',
        options: [['', 'All workflows'], ...workflows.map((w) => [w.id, w.name])] }),
      field({ name: 'trigger', label: 'Trigger', type: 'select', value: query.trigger || '', options: [['', 'Any trigger'], ...TRIGGERS] }),
      field({ name: 'status', label: 'Final status', type: 'select', value: query.status || '', options: [['', 'Any status'], ...STATUSES] }),
      field({ name: 'grain', label: 'Period', type: 'select', value: query.grain || 'daily', options: GRAINS })),
    admin ? field({ name: 'orgWide', label: `Organization-wide (every workflow of ${org.name})`, type: 'checkbox', value: query.org === '1' }) : null,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Apply')));
  const body = h('div', { class: 'trends-body', 'aria-live': 'polite', 'aria-busy': 'true' });
  main.append(pageHeader('Analytics'),
    h('p', { class: 'muted' }, `Finished executions per period in your time zone (${zone}), by the day they were created.`),
    form, h('section', { 'aria-labelledby': 'tr-h' }, h('h2', { id: 'tr-h' }, 'Trends'), body));
  if (org) {
    main.append(budgetPanel({
      heading: `Organization budget · ${org.name}`, path: `/orgs/${encodeURIComponent(org.id)}/budget`, signal,
      note: admin ? null : 'Only an admin of the organization can change its budget.',
    }));
  }

  const val = (name) => form.querySelector(`[name=${name}]`);
  let trends = null;
  let seq = 0;
  form.addEventListener('change', (e) => {
    if (e.target.name === 'grain') { if (trends) draw(); saveQuery(); } else if (e.target.type !== 'date') load();
  });

  function params() {
    const since = val('since').value, until = val('until').value;
    return {
      timeZone: zone,
      since: since ? localMidnight(since) : '',
      until: until ? localMidnight(until, 1) : '',
      workflowId: val('workflowId').value,
      trigger: val('trigger').value,
      status: val('status').value,
      orgId: admin && val('orgWide').checked ? session.orgId : '',
    };
  }
  function saveQuery() {
    history.replaceState(null, '', `#/analytics${qs({
      since: val('since').value, until: val('until').value, workflowId: val('workflowId').value, trigger: val('trigger').value,
      status: val('status').value, grain: val('grain').value, org: admin && val('orgWide').checked ? '1' : '' })}`);
  }

  async function load() {
    const n = ++seq;
    clearErrors(form);
    saveQuery();
    body.setAttribute('aria-busy', 'true');
    try {
      const t = await get(`/analytics/workflow-executions${qs(params())}`, { signal });
      if (n !== seq) return;
      trends = t;
      draw();
    } catch (e) {
      if (e.name === 'AbortError' || n !== seq) return;
      trends = null;
      clear(body);
      showError(form, e);
    } finally {
      if (n === seq) body.setAttribute('aria-busy', 'false');
    }
  }

  function draw() {
    const grain = val('grain').value;
    const points = trends[grain] || [];
    const noun = NOUN[grain];
    clear(body);
    const total = points.reduce((t, p) => t + num(p.started), 0);
    const completed = points.reduce((t, p) => t + num(p.completed), 0);
    const failed = points.reduce((t, p) => t + num(p.failed), 0);
    const cost = points.reduce((t, p) => t + num(p.cost), 0);
    const scope = trends.scope?.startsWith('organization:') ? 'the whole organization' : trends.scope?.startsWith('workflow:') ? 'one workflow' : 'the workflows you can see';
    const spark = (node, values, label) => { if (values.length > 1) node.querySelector('dd').append(sparkline(values, label)); return node; };
    body.append(h('dl', { class: 'kpis' },
      spark(kpi('trend-total', 'Executions', String(total), `finished, in ${scope}`), points.map((p) => num(p.started)), `Executions per ${noun}`),
      spark(kpi('trend-success', 'Success rate', total ? pct(completed / total) : '—', `${completed} completed · ${failed} failed`), points.map((p) => num(p.successRate)), `Success rate per ${noun}`),
      spark(kpi('trend-cost', 'Cost', money(cost)), points.map((p) => num(p.cost)), `Cost per ${noun}`),
      kpi('trend-workflows', 'Workflows', String(num(trends.workflows)), 'in scope')));
    if (trends.hourAligned) {
      body.append(h('p', { class: 'hint' }, `${trends.timeZone} is not a whole number of hours from UTC: each day here starts at the first whole UTC hour after local midnight.`));
    }
    if (!points.length) {
      body.append(h('p', { class: 'empty trends-empty' }, 'No finished executions in this range yet. Run a workflow, or widen the range.'));
      return;
    }
    const labels = points.map((p) => p.period);
    const span = `${labels.length} ${labels.length === 1 ? noun : `${noun}s`} (${labels[0]}${labels.length > 1 ? ` to ${labels[labels.length - 1]}` : ''})`;
    const busiest = points.reduce((a, p) => (num(p.started) > num(a.started) ? p : a), points[0]);
    const desc = `Periods without finished executions are left out. Durations are within ±${((trends.durationErrorBound || 0) * 100).toFixed(2)} %.`;
    const perDur = (k) => points.map((p) => secs(p[k]));
    body.append(h('div', { class: 'grid charts' },
      stackedBars({ title: `Executions per ${noun}, by final status`, integer: true, signal, desc,
        summary: `${total} finished executions over ${span}; the busiest ${noun} ${busiest.period} had ${num(busiest.started)}.`,
        labels, series: STATUS.map(([k, name, cls]) => ({ name, cls, values: points.map((p) => num(p[k])) })), format: (v) => String(Math.round(v * 100) / 100) }),
      lineChart({ title: `Success rate per ${noun}`, signal, desc, min: 0, max: 1, area: true,
        summary: `Success rate per ${noun} over ${span}: from ${pct(Math.min(...points.map((p) => num(p.successRate))))} to ${pct(Math.max(...points.map((p) => num(p.successRate))))}; ${pct(total ? completed / total : 0)} overall.`,
        labels, series: [{ name: 'Success rate', values: points.map((p) => num(p.successRate)), cls: 'c-completed' }], format: pct }),
      lineChart({ title: `Duration percentiles per ${noun}`, signal, desc,
        summary: `Execution duration per ${noun} over ${span}: p50 up to ${duration(Math.max(...perDur('p50Duration').map((v) => v || 0)) * 1000)}, p99 up to ${duration(Math.max(...perDur('p99Duration').map((v) => v || 0)) * 1000)}.`,
        labels, format: fmtSecs, series: [
          { name: 'p50', values: perDur('p50Duration'), cls: 'c-p50' },
          { name: 'p95', values: perDur('p95Duration'), cls: 'c-p95' },
          { name: 'p99', values: perDur('p99Duration'), cls: 'c-p99' }] }),
      stackedBars({ title: `Cost per ${noun}`, signal, desc,
        summary: `Cost per ${noun} over ${span}: ${money(cost)} in total.`,
        labels, series: [{ name: 'Cost (US $)', values: points.map((p) => num(p.cost)), cls: 'c-cost' }], format: money })));
  }

  await load();
}
