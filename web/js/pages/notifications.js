// A workflow's notifications: subscriptions (which events, which channel;
// no update call, so: add and delete) with their deliveries, and
// integrations (Slack, webhook, SMTP, HTTP credentials; secrets sealed and
// never shown back) with add, edit, test and delete. docs/NOTIFICATIONS.md.
import { all, get, post, put, del, qs } from '../api.js';
import { h, clear, field, table, badge, toast, confirmDialog, dialog, clearErrors, ago, time } from '../ui.js';
import { workflowHeader, loadWorkflow } from '../workflowNav.js';
import { session } from '../session.js';
import { ensureCss } from '../css.js';
import {
  Invalid, reportError, errorArea, utf8Length, randomSecret, secretField, checkboxGroup, checked, section, focusSoon,
  isEmail, isHeaderName, checkUrl, fill,
} from './automation-forms.js';

ensureCss('automation');

// NotificationEvent.subscribable (Sources/WeftStore/NotificationRecords.swift).
const EVENTS = [
  ['execution.started', 'execution.started', 'an execution starts'],
  ['execution.completed', 'execution.completed', 'it ends Completed'],
  ['execution.failed', 'execution.failed', 'it ends Failed'],
  ['execution.timed_out', 'execution.timed_out', 'it ends TimedOut'],
  ['execution.cancelled', 'execution.cancelled', 'it ends Cancelled'],
  ['execution.deadline', 'execution.deadline', 'still running a set time after it started'],
  ['task.failed', 'task.failed', 'a task failed its last attempt'],
  ['task.retried', 'task.retried', 'a task attempt failed; another follows'],
  ['schedule.tick_missed', 'schedule.tick_missed', 'ticks missed while the server was down'],
  ['schedule.tick_skipped', 'schedule.tick_skipped', 'a schedule tick was skipped'],
  ['budget.forecast_exceeded', 'budget.forecast_exceeded', 'month-end cost forecast over budget'],
  ['budget.exceeded', 'budget.exceeded', 'monthly cost over budget'],
];
const EVENT_PRESETS = [
  ['Failures', ['execution.failed', 'execution.timed_out', 'execution.cancelled', 'task.failed']],
  ['Every execution event', ['execution.started', 'execution.completed', 'execution.failed', 'execution.timed_out', 'execution.cancelled']],
  ['None', []],
];
const CHANNELS = [['email', 'E-mail'], ['webhook', 'Webhook'], ['slack', 'Slack'], ['in_app', 'In-app (you)']];
const channelLabel = (c) => (CHANNELS.find(([v]) => v === c) || [c, c])[1];
const MAX_DEADLINE = 7 * 86400;
const DELIVERY_STATES = [['', 'All states'], ['pending', 'pending'], ['delivered', 'delivered'], ['dead', 'dead'], ['skipped', 'skipped']];

// Integration types and their settings (IntegrationKind in
// Sources/WeftServer/Notifications/IntegrationConfig.swift). `secret`: sealed,
// never returned; an empty secret input on an edit keeps the stored value.
const KINDS = {
  slack: {
    label: 'Slack (incoming webhook)',
    fields: [
      { name: 'webhookUrl', label: 'Slack webhook URL', secret: true, required: true, hint: 'https://hooks.slack.com/services/… — it carries a token: stored sealed, shown masked.' },
      { name: 'config.channel', label: 'Channel (optional)', placeholder: '#alerts' },
      { name: 'config.username', label: 'Sender name (optional)' },
    ],
  },
  webhook: {
    label: 'Webhook (signed JSON POST)',
    fields: [
      { name: 'webhookUrl', label: 'Webhook URL', type: 'url', required: true, placeholder: 'https://example.com/weft-hook', hint: 'Stored sealed and shown masked. An internal address needs the server\'s --egress-allow.' },
      { name: 'config.signingSecret', label: 'Signing secret', secret: true, required: true, generate: true, hint: '16 to 256 bytes. Each POST carries X-Weft-Signature: sha256=<HMAC of "<timestamp>.<body>">.' },
    ],
  },
  email: {
    label: 'E-mail (an SMTP server)',
    fields: [
      { name: 'config.host', label: 'SMTP host', required: true, placeholder: 'smtp.example.com' },
      { name: 'config.port', label: 'Port', type: 'number', placeholder: '587', attrs: { min: 1, max: 65535, step: 1 } },
      { name: 'config.username', label: 'User name (optional)', attrs: { autocomplete: 'off' } },
      { name: 'config.password', label: 'Password (optional)', secret: true },
      { name: 'config.from', label: 'From address', type: 'email', required: true, placeholder: 'weft@example.com' },
      { name: 'config.fromName', label: 'From name (optional)' },
      { name: 'config.tls', label: 'TLS', type: 'select', options: [['required', 'required — STARTTLS must succeed'], ['opportunistic', 'opportunistic — STARTTLS when offered'], ['none', 'none — never (a trusted relay only)']] },
      { name: 'config.verifyCertificate', label: 'Verify the server\'s certificate', type: 'checkbox', value: true },
      { name: 'config.caCertificate', label: 'CA certificate (PEM, optional)', type: 'textarea', hint: 'To trust a private CA instead of the system\'s.' },
      { name: 'config.heloName', label: 'HELO name (optional)' },
    ],
  },
  http_auth: {
    label: 'HTTP credentials (for http tasks)',
    fields: [
      { name: 'config.scheme', label: 'Scheme', type: 'select', options: [['bearer', 'bearer — Authorization: Bearer <token>'], ['basic', 'basic — user name and password'], ['api_key', 'api_key — a header and its value']] },
      { name: 'config.token', label: 'Token', secret: true, when: 'bearer' },
      { name: 'config.username', label: 'User name', when: 'basic', attrs: { autocomplete: 'off' } },
      { name: 'config.password', label: 'Password', secret: true, when: 'basic' },
      { name: 'config.header', label: 'Header name', when: 'api_key', placeholder: 'X-Api-Key' },
      { name: 'config.value', label: 'Header value', secret: true, when: 'api_key' },
    ],
  },
};
const KIND_OPTIONS = Object.entries(KINDS).map(([k, v]) => [k, v.label]);
const kindOf = (i) => (i.type === 'smtp' ? 'email' : i.type);

export async function render(main, ctx) {
  const wf = await loadWorkflow(ctx.params.id, ctx.signal);
  const wfPath = `/workflows/${encodeURIComponent(wf.id)}`;
  const canEdit = wf.role !== 'viewer';
  const me = session.user?.id;

  let subscriptions = [];
  let integrations = [];

  // ---- page layout ----
  const subList = h('div', { class: 'auto-list' }, h('p', { class: 'loading', role: 'status' }, 'Loading subscriptions…'));
  const subError = errorArea();
  const subFormBox = h('div');
  const deliveriesBox = h('div');
  const addSub = h('button', { type: 'button', class: 'primary', onClick: () => openSubForm() }, 'Add subscription');

  const intList = h('div', { class: 'auto-list' }, h('p', { class: 'loading', role: 'status' }, 'Loading integrations…'));
  const intError = errorArea();
  const intFormBox = h('div');
  const testResult = h('div', { class: 'test-result', role: 'status', 'aria-live': 'polite' });
  const addInt = h('button', { type: 'button', class: 'primary', onClick: () => openIntForm(null) }, 'Add integration');

  main.append(
    workflowHeader(wf, '/notifications'),
    section('subs-title', 'Subscriptions', addSub,
      h('p', { class: 'muted' }, 'Who is told about which events of this workflow, and how. A subscription cannot be changed: delete it and add another. ',
        canEdit ? '' : 'As a viewer you may subscribe yourself in-app.'),
      subError, subFormBox, subList, deliveriesBox),
    section('ints-title', 'Integrations', canEdit ? addInt : null,
      h('p', { class: 'muted' }, 'Where and how to deliver: a Slack or webhook URL, an SMTP server, credentials for http tasks. Their secrets are stored sealed and never shown again.'),
      intError, intFormBox, intList, testResult));

  // Who made a subscription: their name from the workflow's people (anyone with a role may list them).
  let people = new Map();
  const who = (id) => (id === me ? 'you' : people.get(id) || id);
  async function loadPeople() {
    try {
      const list = await all(`${wfPath}/collaborators`, 'collaborators', {}, 1000, { signal: ctx.signal });
      people = new Map(list.map((c) => [c.userId, c.name || c.email || c.userId]));
    } catch { /* names are a nicety: ids stay */ }
  }

  const integrationName = (id) => {
    const i = integrations.find((x) => x.id === id);
    return i ? `${i.name} (${kindOf(i)})` : id;
  };

  async function loadSubs() {
    try {
      subscriptions = await all(`${wfPath}/subscriptions`, 'subscriptions', {}, 1000, { signal: ctx.signal });
      subError.textContent = '';
      renderSubs();
    } catch (e) {
      if (e.name !== 'AbortError') subError.textContent = `Could not load the subscriptions: ${e.message}`;
    }
  }

  async function loadInts() {
    try {
      integrations = await all(`${wfPath}/integrations`, 'integrations', {}, 1000, { signal: ctx.signal });
      intError.textContent = '';
      renderInts();
    } catch (e) {
      if (e.name !== 'AbortError') intError.textContent = `Could not load the integrations: ${e.message}`;
    }
  }

  // ---- subscriptions ----

  let openDeliveries = null; // the subscription whose deliveries are shown

  function renderSubs() {
    clear(subList).append(table([
      { label: 'Events', cell: (s) => h('ul', { class: 'chips' }, (s.events || []).map((e) => h('li', {}, h('code', {}, e)))) },
      { label: 'Channel', cell: (s) => channelLabel(s.notifyVia) },
      { label: 'Destination', cell: (s) => h('div', {},
        s.notifyVia === 'in_app' ? who(s.userId) : null,
        s.destination ? h('div', { class: 'break' }, s.destination) : null,
        s.integrationId ? h('div', {}, 'via ', integrationName(s.integrationId)) : null,
        s.filter ? h('div', { class: 'small' }, 'when ', h('code', {}, s.filter)) : null,
        s.deadlineSeconds ? h('div', { class: 'small muted' }, `deadline ${s.deadlineSeconds} s`) : null) },
      { label: 'Created', cell: (s) => h('div', {}, h('time', { datetime: s.createdAt, title: time(s.createdAt) }, ago(s.createdAt)),
        h('div', { class: 'muted small' }, `by ${who(s.userId)}`)) },
      { label: 'Actions', cell: (s) => h('div', { class: 'actions row-actions' },
        h('button', { type: 'button', 'aria-expanded': String(openDeliveries === s.id), 'aria-controls': 'deliveries-panel', onClick: () => toggleDeliveries(s) }, 'Deliveries'),
        canEdit || s.userId === me ? h('button', { type: 'button', class: 'danger', onClick: () => removeSub(s) }, 'Delete') : null) },
    ], subscriptions, { empty: 'No subscriptions yet.', caption: `${subscriptions.length} subscription${subscriptions.length === 1 ? '' : 's'}` }));
  }

  async function removeSub(s) {
    if (!(await confirmDialog(`Delete the ${channelLabel(s.notifyVia)} subscription to ${s.events.join(', ')}? Its pending deliveries are not sent.`, { confirm: 'Delete', danger: true }))) return;
    try {
      await del(`${wfPath}/subscriptions/${encodeURIComponent(s.id)}`);
      toast('Subscription deleted.', 'ok');
      if (openDeliveries === s.id) closeDeliveries();
      await loadSubs();
    } catch (e) { subError.textContent = e.message; }
  }

  // The deliveries panel: newest first, live while any is pending.
  let deliveriesTimer = null;
  let deliveriesAbort = null;
  function closeDeliveries() {
    openDeliveries = null;
    clearInterval(deliveriesTimer);
    deliveriesAbort?.abort();
    clear(deliveriesBox);
    renderSubs();
  }

  function toggleDeliveries(s) {
    if (openDeliveries === s.id) { closeDeliveries(); return; }
    closeDeliveries();
    openDeliveries = s.id;
    renderSubs();
    const path = `${wfPath}/subscriptions/${encodeURIComponent(s.id)}/deliveries`;
    const stateSelect = field({ name: 'state', label: 'State', type: 'select', options: DELIVERY_STATES, value: '' });
    const rows = h('div', { class: 'auto-list' }, h('p', { class: 'loading', role: 'status' }, 'Loading deliveries…'));
    const status = h('p', { class: 'muted small', role: 'status', 'aria-live': 'polite' });
    let items = [];
    let next = '';
    const load = async (more = false) => {
      if (!more) next = '';
      deliveriesAbort?.abort();
      deliveriesAbort = new AbortController();
      try {
        const page = await get(path + qs({ state: stateSelect.querySelector('select').value, pageSize: 50, pageToken: more ? next : '' }), { signal: deliveriesAbort.signal });
        items = more ? items.concat(page?.deliveries || []) : page?.deliveries || [];
        next = page?.nextPageToken || '';
        draw();
        status.textContent = `${items.length} deliver${items.length === 1 ? 'y' : 'ies'} shown · updated ${new Date().toLocaleTimeString()}`;
      } catch (e) {
        if (e.name !== 'AbortError') status.textContent = `Could not load the deliveries: ${e.message}`;
      }
    };
    const draw = () => {
      fill(rows, table([
        { label: 'Event', cell: (d) => h('div', {}, h('code', {}, d.event), d.executionId
          ? h('div', { class: 'small' }, h('a', { href: `#/workflows/${encodeURIComponent(wf.id)}/executions/${encodeURIComponent(d.executionId)}` }, d.executionId)) : null) },
        { label: 'State', cell: (d) => badge(d.state) },
        { label: 'Attempts', cell: (d) => String(d.attempts ?? 0), class: 'num' },
        { label: 'When', cell: (d) => h('div', {}, h('time', { datetime: d.createdAt, title: time(d.createdAt) }, ago(d.createdAt)),
          d.deliveredAt ? h('div', { class: 'muted small' }, 'delivered ', ago(d.deliveredAt)) : null,
          d.nextAttemptAt ? h('div', { class: 'muted small' }, 'next attempt ', ago(d.nextAttemptAt)) : null) },
        { label: 'Detail', cell: (d) => h('div', {},
          d.lastError ? h('div', { class: 'break' }, d.lastError) : null,
          (d.attemptLog || []).length ? h('details', {}, h('summary', {}, `Attempt log (${d.attemptLog.length})`),
            h('ol', { class: 'attempts' }, d.attemptLog.map((a) => h('li', {},
              `${a.outcome}${a.statusCode ? ` · ${a.statusCode}` : ''} · ${a.durationMs ?? 0} ms · `,
              h('time', { datetime: a.at }, time(a.at)), a.detail ? h('div', { class: 'muted small break' }, a.detail) : null)))) : null,
          h('div', { class: 'muted small mono' }, d.id)) },
      ], items, { empty: 'No deliveries yet: they appear when a subscribed event happens.' }),
      next ? h('button', { type: 'button', onClick: () => load(true) }, 'Load more') : null);
    };
    stateSelect.querySelector('select').addEventListener('change', () => load());
    deliveriesBox.append(h('section', { id: 'deliveries-panel', class: 'deliveries', 'aria-labelledby': 'dlv-title' },
      h('div', { class: 'section-head' },
        h('h3', { id: 'dlv-title' }, `Deliveries: ${channelLabel(s.notifyVia)} · ${s.events.join(', ')}`),
        h('div', { class: 'actions' },
          h('button', { type: 'button', onClick: () => load() }, 'Refresh'),
          h('button', { type: 'button', onClick: () => closeDeliveries() }, 'Close'))),
      stateSelect, status, rows));
    load();
    // Live while something may still change (not while the user reads a row).
    deliveriesTimer = setInterval(() => {
      if (document.hidden || rows.contains(document.activeElement) || rows.querySelector('details[open]')) return;
      if (!items.length || items.some((d) => d.state === 'pending')) load();
    }, 3000);
  }

  function openSubForm() {
    clear(subFormBox);
    addSub.hidden = true;
    const close = () => { clear(subFormBox); addSub.hidden = false; };
    const integrationSelect = field({ name: 'integrationId', label: 'Integration', type: 'select', options: [] });
    const destination = field({ name: 'destination', label: 'Destination', attrs: { autocomplete: 'off' } });
    const deadline = field({ name: 'deadlineSeconds', label: 'Deadline (seconds)', type: 'number',
      hint: 'execution.deadline: notify when an execution is still running this long after it started (1 s to 7 days).',
      attrs: { min: 1, max: MAX_DEADLINE, step: 1, inputmode: 'numeric' } });
    const group = checkboxGroup({ name: 'events', legend: 'Events', options: EVENTS, values: ['execution.failed'] });
    const presets = h('div', { class: 'presets', role: 'group', 'aria-label': 'Choose events' },
      EVENT_PRESETS.map(([label, values]) => h('button', { type: 'button', class: 'chip', onClick: () => {
        group.querySelectorAll('input[type=checkbox]').forEach((c) => { c.checked = values.includes(c.value); });
        sync();
      } }, label)));
    const form = h('form', { class: 'auto-form', novalidate: true, 'aria-labelledby': 'sub-form-title' },
      h('h3', { id: 'sub-form-title', tabindex: '-1' }, 'New subscription'),
      errorArea(),
      h('div', { class: 'form-grid' },
        h('div', {}, group, presets, deadline),
        h('div', {},
          field({ name: 'notifyVia', label: 'Channel', type: 'select', options: canEdit ? CHANNELS : CHANNELS.filter(([c]) => c === 'in_app'), value: canEdit ? 'email' : 'in_app' }),
          integrationSelect,
          destination,
          field({ name: 'filter', label: 'Filter (optional)', attrs: { class: 'mono', autocomplete: 'off', spellcheck: 'false', placeholder: 'event.trigger == "schedule"', maxlength: 2048 },
            hint: 'Notify only when this holds for the event: event.durationMs > 600000, event.task == "charge"…' }))),
      h('div', { class: 'actions' },
        h('button', { type: 'submit', class: 'primary' }, 'Create subscription'),
        h('button', { type: 'button', onClick: () => { close(); addSub.focus(); } }, 'Cancel')));
    const els = form.elements;
    const destInput = destination.querySelector('input');
    const destLabel = destination.querySelector('label');
    const intSel = integrationSelect.querySelector('select');

    function sync() {
      const via = els.notifyVia.value;
      const wanted = { email: 'email', webhook: 'webhook', slack: 'slack' }[via];
      // The integrations that can deliver on this channel.
      const before = intSel.value;
      fill(intSel,
        h('option', { value: '' }, via === 'email' ? 'None: the server\'s SMTP server' : 'None: give a URL'),
        integrations.filter((i) => kindOf(i) === wanted).map((i) => h('option', { value: i.id, selected: i.id === before }, `${i.name} (${i.id})`)));
      integrationSelect.hidden = via === 'in_app';
      const usesIntegrationUrl = (via === 'webhook' || via === 'slack') && intSel.value;
      destination.hidden = via === 'in_app' || !!usesIntegrationUrl;
      destLabel.textContent = via === 'email' ? 'E-mail address' : via === 'slack' ? 'Slack webhook URL' : 'Webhook URL';
      destInput.type = via === 'email' ? 'email' : 'url';
      destInput.placeholder = via === 'email' ? 'ops@example.com' : 'https://…';
      deadline.hidden = !checked(form, 'events').includes('execution.deadline');
    }
    els.notifyVia.addEventListener('change', sync);
    intSel.addEventListener('change', sync);
    group.addEventListener('change', sync);
    sync();

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(form);
      const via = els.notifyVia.value;
      const body = { events: checked(form, 'events'), notifyVia: via };
      try {
        if (!body.events.length) throw new Invalid('events', 'choose at least one event');
        if (body.events.includes('execution.deadline')) {
          const d = Number(els.deadlineSeconds.value);
          if (!Number.isInteger(d) || d < 1 || d > MAX_DEADLINE) throw new Invalid('deadlineSeconds', `execution.deadline needs deadline_seconds from 1 to ${MAX_DEADLINE} (7 days)`);
          body.deadlineSeconds = d;
        }
        if (via !== 'in_app' && intSel.value) body.integrationId = intSel.value;
        const dest = destInput.value.trim();
        if (via === 'email') {
          if (!isEmail(dest)) throw new Invalid('destination', dest ? `destination "${dest}" is not an e-mail address` : 'destination (the e-mail address to notify) is required for email');
          body.destination = dest;
        } else if ((via === 'webhook' || via === 'slack') && !body.integrationId) {
          if (!dest) throw new Invalid('destination', `destination (an http(s) URL) or an integration is required for ${via}`);
          checkUrl(dest, 'destination');
          body.destination = dest;
        }
        const filter = els.filter.value.trim();
        if (filter) {
          if (filter.length > 2048) throw new Invalid('filter', 'filter is longer than 2,048 characters');
          body.filter = filter;
        }
      } catch (err) { reportError(form, err); return; }
      const submit = form.querySelector('button[type=submit]');
      submit.disabled = true;
      try {
        await post(`${wfPath}/subscriptions`, body);
        toast('Subscription created.', 'ok');
        close();
        await loadSubs();
        addSub.focus();
      } catch (err) {
        reportError(form, err, [[/^filter:/i, 'filter'], [/deadline/i, 'deadlineSeconds'], [/^destination|e-mail address|url/i, 'destination'],
          [/integration/i, 'integrationId'], [/^event|events|event_type/i, 'events'], [/notify_via/i, 'notifyVia']]);
      } finally {
        submit.disabled = false;
      }
    });
    subFormBox.append(h('div', { class: 'card inner' }, form));
    focusSoon(form.querySelector('input[type=checkbox]'));
  }

  // ---- integrations ----

  function target(i) {
    const c = i.config || {};
    switch (kindOf(i)) {
      case 'slack': return [i.webhookUrl || '—', c.channel ? ` · ${c.channel}` : ''];
      case 'webhook': return i.webhookUrl || '—';
      case 'email': return `smtp://${c.host || '?'}:${c.port || 587} · from ${c.from || '?'} · TLS ${c.tls || 'required'}`;
      case 'http_auth': return `${c.scheme || '?'}${c.header ? ` (${c.header})` : ''}${c.username ? ` as ${c.username}` : ''}`;
      default: return '—';
    }
  }

  function renderInts() {
    clear(intList).append(table([
      { label: 'Name', cell: (i) => h('div', {}, i.name, h('div', { class: 'muted small mono' }, i.id)) },
      { label: 'Type', cell: (i) => KINDS[kindOf(i)]?.label || i.type },
      { label: 'Target', cell: (i) => h('div', { class: 'break' }, target(i)) },
      { label: 'Secrets', cell: (i) => ((i.secretFields || []).length
        ? h('div', {}, 'sealed: ', (i.secretFields || []).map((f, n) => [n ? ', ' : '', h('code', {}, f)]))
        : h('span', { class: 'muted' }, 'none')) },
      { label: 'Updated', cell: (i) => h('time', { datetime: i.updatedAt, title: time(i.updatedAt) }, ago(i.updatedAt)) },
      { label: 'Actions', cell: (i) => (canEdit ? h('div', { class: 'actions row-actions' },
        h('button', { type: 'button', onClick: () => testIntegration(i) }, 'Test'),
        h('button', { type: 'button', onClick: () => openIntForm(i) }, 'Edit'),
        h('button', { type: 'button', class: 'danger', onClick: () => removeInt(i) }, 'Delete')) : h('span', { class: 'muted' }, '—')) },
    ], integrations, { empty: 'No integrations yet.', caption: `${integrations.length} integration${integrations.length === 1 ? '' : 's'}` }));
  }

  async function testIntegration(i) {
    let body = {};
    if (kindOf(i) === 'email') {
      const address = await dialog(`Send a test e-mail through “${i.name}”`, (close) => {
        const form = h('form', { novalidate: true },
          errorArea(),
          field({ name: 'destination', label: 'Send it to', type: 'email', required: true, attrs: { autocomplete: 'email' } }),
          h('div', { class: 'actions' },
            h('button', { type: 'submit', class: 'primary' }, 'Send test'),
            h('button', { type: 'button', onClick: () => close(null) }, 'Cancel')));
        form.addEventListener('submit', (e) => {
          e.preventDefault();
          const v = form.elements.destination.value.trim();
          if (!isEmail(v)) { reportError(form, new Invalid('destination', 'destination (the address to send the test e-mail to) is required')); return; }
          close(v);
        });
        return form;
      });
      if (!address) return;
      body = { destination: address };
    }
    clear(testResult).append(h('p', { class: 'muted' }, `Testing “${i.name}”…`));
    testResult.className = 'test-result';
    try {
      const r = await post(`${wfPath}/integrations/${encodeURIComponent(i.id)}/test`, body);
      testResult.className = `test-result ${r?.ok ? 'ok' : 'fail'}`;
      fill(testResult, h('p', {},
        h('strong', {}, r?.ok ? '✓ Test succeeded' : '✗ Test failed'), ` — “${i.name}”`,
        r?.statusCode ? ` · status ${r.statusCode}` : '', r?.latencyMs !== undefined ? ` · ${r.latencyMs} ms` : ''),
      r?.detail ? h('p', { class: 'small break' }, r.detail) : null);
    } catch (e) {
      testResult.className = 'test-result fail';
      clear(testResult).append(h('p', {}, h('strong', {}, '✗ Test not sent'), ` — ${e.message}`));
    }
  }

  async function removeInt(i) {
    if (!(await confirmDialog(`Delete the integration “${i.name}”? Its sealed secrets are deleted with it.`, { confirm: 'Delete', danger: true }))) return;
    try {
      await del(`${wfPath}/integrations/${encodeURIComponent(i.id)}`);
      toast('Integration deleted.', 'ok');
      if (intFormBox.dataset.editing === i.id) { clear(intFormBox); addInt.hidden = false; }
      await loadInts();
      renderSubs();
    } catch (e) { intError.textContent = e.message; }
  }

  function kindField(f, i) {
    const key = f.name.startsWith('config.') ? f.name.slice(7) : f.name;
    const stored = i && (i.secretFields || []).includes(key);
    if (f.secret) {
      return secretField({ name: f.name, label: f.label, hint: f.hint, generate: f.generate ? () => randomSecret('whsec_', 24) : null,
        placeholder: stored ? 'stored — leave empty to keep it' : '' });
    }
    const current = i ? i.config?.[key] : undefined;
    if (f.type === 'checkbox') return field({ name: f.name, label: f.label, type: 'checkbox', value: current === undefined ? f.value : current !== false });
    const value = f.name === 'webhookUrl' ? '' : current ?? '';
    const placeholder = f.name === 'webhookUrl' && i?.webhookUrl ? `${i.webhookUrl} — leave empty to keep it` : f.placeholder;
    return field({ name: f.name, label: f.label, type: f.type || 'text', value, hint: f.hint, options: f.options,
      attrs: { autocomplete: 'off', spellcheck: 'false', placeholder, ...(f.attrs || {}) } });
  }

  function openIntForm(i) {
    clear(intFormBox);
    addInt.hidden = true;
    if (i) intFormBox.dataset.editing = i.id; else delete intFormBox.dataset.editing;
    const close = () => { clear(intFormBox); delete intFormBox.dataset.editing; addInt.hidden = false; };
    const fieldsBox = h('div', { class: 'kind-fields' });
    const typeField = field({ name: 'type', label: 'Type', type: 'select', options: KIND_OPTIONS, value: i ? kindOf(i) : 'webhook',
      hint: i ? 'The type of an integration cannot change; create another one instead.' : null, attrs: { disabled: !!i } });
    const form = h('form', { class: 'auto-form', novalidate: true, 'aria-labelledby': 'int-form-title' },
      h('h3', { id: 'int-form-title', tabindex: '-1' }, i ? `Edit integration “${i.name}”` : 'New integration'),
      errorArea(),
      typeField,
      field({ name: 'name', label: 'Name', value: i?.name || '', hint: 'One line, at most 200 bytes (default: the type).', attrs: { maxlength: 200, autocomplete: 'off' } }),
      fieldsBox,
      h('div', { class: 'actions' },
        h('button', { type: 'submit', class: 'primary' }, i ? 'Save changes' : 'Create integration'),
        h('button', { type: 'button', onClick: () => { close(); addInt.focus(); } }, 'Cancel')));
    const typeSelect = typeField.querySelector('select');
    const kind = () => typeSelect.value;

    const syncScheme = () => {
      const scheme = form.elements['config.scheme']?.value;
      fieldsBox.querySelectorAll('[data-when]').forEach((el) => { el.hidden = el.dataset.when !== scheme; });
    };
    const build = () => {
      fill(fieldsBox, KINDS[kind()].fields.map((f) => {
        const el = kindField(f, i);
        if (f.when) el.dataset.when = f.when;
        return el;
      }));
      form.elements['config.scheme']?.addEventListener('change', syncScheme);
      syncScheme();
    };
    typeSelect.addEventListener('change', build);
    build();

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(form);
      let body;
      try { body = collectIntegration(form, kind(), i); } catch (err) { reportError(form, err); return; }
      const submit = form.querySelector('button[type=submit]');
      submit.disabled = true;
      try {
        if (i) await put(`${wfPath}/integrations/${encodeURIComponent(i.id)}`, body);
        else await post(`${wfPath}/integrations`, body);
        toast(i ? 'Integration saved.' : 'Integration created.', 'ok');
        close();
        await loadInts();
        renderSubs();
        addInt.focus();
      } catch (err) {
        reportError(form, err, [[/^webhook_url|webhookUrl/i, 'webhookUrl'], [/^name /i, 'name']]);
      } finally {
        submit.disabled = false;
      }
    });
    intFormBox.append(h('div', { class: 'card inner' }, form));
    focusSoon(i ? form.elements.name : typeSelect);
  }

  /** The create/update body, checked as IntegrationSettings.validate does. */
  function collectIntegration(form, kind, i) {
    const body = { type: kind, name: form.elements.name.value.trim() };
    if (utf8Length(body.name) > 200 || /[\r\n]/.test(body.name)) throw new Invalid('name', 'name must be one line of at most 200 bytes');
    const has = (key) => (i?.secretFields || []).includes(key);
    const config = {};
    for (const f of KINDS[kind].fields) {
      const el = form.elements[f.name];
      if (!el || el.closest('[hidden]')) continue;
      const key = f.name.startsWith('config.') ? f.name.slice(7) : f.name;
      if (f.type === 'checkbox') { if (!el.checked) config[key] = false; continue; }
      const raw = el.value;
      const v = f.secret || f.type === 'textarea' ? raw : raw.trim();
      if (f.secret) {
        if (v && /[\r\n\0]/.test(v)) throw new Invalid(f.name, `${f.label} must not contain line breaks`);
        if (v && utf8Length(v) > 8192) throw new Invalid(f.name, `${f.label} is longer than 8192 bytes`);
      }
      if (f.name === 'webhookUrl') {
        if (v) { checkUrl(v, 'webhookUrl'); body.webhookUrl = v; } else if (!has('webhookUrl')) throw new Invalid(f.name, 'webhook_url is required');
        continue;
      }
      if (!v.trim()) {
        if (f.required && !(f.secret && has(key))) throw new Invalid(f.name, `${f.label} is required`);
        continue;
      }
      if (f.type === 'number') {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Invalid(f.name, 'config.port must be a port number (1 to 65535)');
        config[key] = n;
      } else {
        config[key] = v;
      }
    }
    // The type's own rules.
    if (kind === 'webhook' && config.signingSecret !== undefined) {
      const n = utf8Length(config.signingSecret);
      if (n < 16 || n > 256) throw new Invalid('config.signingSecret', `config.signingSecret must be 16 to 256 bytes, got ${n}`);
    }
    if (kind === 'email') {
      if (/[\s/@]/.test(config.host || '')) throw new Invalid('config.host', 'config.host (the SMTP server\'s host name) is required');
      if (!isEmail(config.from || '')) throw new Invalid('config.from', 'config.from (the sender\'s e-mail address) is required and must be an address');
      if ((config.password || has('password')) && !config.username) throw new Invalid('config.username', 'config.password needs config.username');
      if (config.caCertificate && !config.caCertificate.includes('-----BEGIN CERTIFICATE-----')) throw new Invalid('config.caCertificate', 'config.caCertificate must be a PEM certificate');
    }
    if (kind === 'http_auth') {
      const scheme = config.scheme;
      if (scheme === 'bearer' && !config.token && !has('token')) throw new Invalid('config.token', 'config.token is required for scheme bearer');
      if (scheme === 'basic') {
        if (!config.username || config.username.includes(':')) throw new Invalid('config.username', 'scheme basic needs config.username (no ":") and config.password');
        if (!config.password && !has('password')) throw new Invalid('config.password', 'scheme basic needs config.username (no ":") and config.password');
      }
      if (scheme === 'api_key') {
        if (!isHeaderName(config.header || '')) throw new Invalid('config.header', 'scheme api_key needs config.header, an HTTP header name');
        if (!config.value && !has('value')) throw new Invalid('config.value', 'config.value is required for scheme api_key');
      }
    }
    body.config = config;
    return body;
  }

  await Promise.all([loadInts(), loadPeople().then(loadSubs)]);
  renderSubs();
  return () => { clearInterval(deliveriesTimer); deliveriesAbort?.abort(); };
}
