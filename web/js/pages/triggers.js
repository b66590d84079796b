// A workflow's webhook and event triggers: list, add (a webhook's URL and
// how to sign it are shown once, with its secret), publish a test event,
// delete. docs/SCHEDULES.md (Webhook triggers, Event triggers).
import { all, post, del } from '../api.js';
import { h, clear, field, table, toast, confirmDialog, dialog, clearErrors, ago, time } from '../ui.js';
import { workflowHeader, loadWorkflow } from '../workflowNav.js';
import { ensureCss } from '../css.js';
import {
  Invalid, reportError, errorArea, jsonObject, seconds, utf8Length, randomSecret, copyField, copyText, secretField,
  section, focusSoon, isHeaderName,
} from './automation-forms.js';

ensureCss('automation');

const EVENT_NAME = /^[A-Za-z0-9._:/-]{1,128}$/;
const RULES = [[/event name/i, 'eventName'], [/^filter:/i, 'filter'], [/signature_secret must/i, 'signatureSecret']];

const hookUrl = (t) => `${location.origin}${t.url || `/hooks/${t.id}`}`;

/** A shell word: single-quoted, so nothing in it is expanded (header names may hold ` and $). */
const sh = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

/** Shell lines that sign and send one delivery (docs/SCHEDULES.md, Signatures). */
function curlExample(t, secret) {
  const url = sh(hookUrl(t));
  const body = '{"hello":"world"}';
  if (!t.signed) return `curl -s ${url} -H 'content-type: application/json' --data-binary ${sh(body)}`;
  const sigHeader = t.signatureHeader || 'x-weft-signature';
  const lines = [
    `SECRET=${sh(secret || '<the signing secret>')}`,
    `BODY=${sh(body)}`,
  ];
  if (t.timestampHeader) {
    lines.push('TS=$(date +%s)',
      `SIG=$(printf '%s.%s' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* //')`,
      `curl -s ${url} -H 'content-type: application/json' \\`,
      `  -H ${sh(`${t.timestampHeader}: `)}"$TS" -H ${sh(`${sigHeader}: sha256=`)}"$SIG" --data-binary "$BODY"`);
  } else {
    lines.push(`SIG=$(printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* //')`,
      `curl -s ${url} -H 'content-type: application/json' -H ${sh(`${sigHeader}: sha256=`)}"$SIG" --data-binary "$BODY"`);
  }
  return lines.join('\n');
}

/** How to call a webhook trigger: the rules, and a copyable example. */
function howTo(t, secret) {
  const code = curlExample(t, secret);
  const pre = h('pre', { class: 'howto', tabindex: '0', 'aria-label': 'Example request' }, code);
  const status = h('span', { class: 'muted small', role: 'status', 'aria-live': 'polite' });
  const copy = h('button', { type: 'button', onClick: async () => {
    const how = await copyText(code, null);
    if (how !== 'copied') {
      const range = document.createRange();
      range.selectNodeContents(pre);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      pre.focus();
    }
    status.textContent = how === 'copied' ? 'Copied.' : 'Selected: press Ctrl+C (⌘C) to copy.';
  } }, 'Copy example');
  const rules = t.signed
    ? h('ul', {},
      t.timestampHeader
        ? h('li', {}, 'Send ', h('code', {}, `${t.timestampHeader}: <unix seconds>`), ' and ',
          h('code', {}, `${t.signatureHeader}: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`), '.')
        : h('li', {}, 'Send ', h('code', {}, `${t.signatureHeader}: sha256=<hex HMAC-SHA256(secret, body)>`), ' (no timestamp: the body alone is signed).'),
      h('li', {}, 'Sign the body bytes exactly as you send them; the body must be a JSON object and becomes the execution\'s input.'),
      t.timestampHeader ? h('li', {}, `The timestamp must be within ±${seconds(t.timestampTolerance) ?? 300} s of the server's clock; a retry is signed again with a new timestamp (the same signature twice is a replay, 409).`) : null,
      t.idempotencyHeader ? h('li', {}, 'Repeat a delivery with the same ', h('code', {}, t.idempotencyHeader), ' value to get the earlier execution back.') : null)
    : h('ul', {},
      h('li', {}, 'Unsigned: anyone with the URL can start the workflow. POST a JSON object; it becomes the execution\'s input.'),
      t.idempotencyHeader ? h('li', {}, 'Repeat a delivery with the same ', h('code', {}, t.idempotencyHeader), ' value to get the earlier execution back.') : null);
  return h('div', { class: 'howto-box' }, rules, pre, h('div', { class: 'actions' }, copy, status));
}

export async function render(main, ctx) {
  const wf = await loadWorkflow(ctx.params.id, ctx.signal);
  const base = `/workflows/${encodeURIComponent(wf.id)}/triggers`;
  const canEdit = wf.role !== 'viewer';

  const listBox = h('div', { class: 'auto-list' }, h('p', { class: 'loading', role: 'status' }, 'Loading triggers…'));
  const listError = errorArea();
  const formBox = h('div');
  const createdBox = h('div');
  const addButton = h('button', { type: 'button', class: 'primary', onClick: () => openForm() }, 'Add trigger');

  main.append(
    workflowHeader(wf, '/triggers'),
    createdBox,
    formBox,
    section('triggers-title', 'Triggers', canEdit ? addButton : null,
      h('p', { class: 'muted' }, 'A webhook starts this workflow when its URL is POSTed to (no credentials; optionally signed). ',
        'An event trigger starts it when an event of its name is published in the organization (POST /events).',
        canEdit ? null : ' You are a viewer: you can see the triggers but not change them.'),
      listError, listBox));

  let triggers = [];
  const open = new Set(); // triggers whose "how to call" is shown

  async function load() {
    try {
      triggers = await all(base, 'triggers', {}, 1000, { signal: ctx.signal });
      listError.textContent = '';
      renderList();
    } catch (e) {
      if (e.name === 'AbortError') return;
      listError.textContent = `Could not load the triggers: ${e.message}`;
    }
  }

  function details(t) {
    if (t.type === 'webhook') {
      const id = `howto-${t.id}`;
      const box = h('div', { id, hidden: !open.has(t.id) }, open.has(t.id) ? howTo(t) : null);
      const toggle = h('button', { type: 'button', 'aria-expanded': String(open.has(t.id)), 'aria-controls': id, onClick: () => {
        const show = !open.has(t.id);
        if (show) open.add(t.id); else open.delete(t.id);
        toggle.setAttribute('aria-expanded', String(show));
        box.hidden = !show;
        clear(box);
        if (show) box.append(howTo(t));
      } }, 'How to call it');
      return h('div', { class: 'trigger-details' },
        copyField({ label: 'Hook URL', value: hookUrl(t), name: t.id }),
        h('div', { class: 'muted small' }, t.signed
          ? `Signed: ${t.signatureHeader}${t.timestampHeader ? `, ${t.timestampHeader} ±${seconds(t.timestampTolerance) ?? 300} s` : ', no timestamp'}`
          : 'Unsigned', t.idempotencyHeader ? ` · idempotency header ${t.idempotencyHeader}` : ''),
        toggle, box);
    }
    return h('div', { class: 'trigger-details' },
      h('div', {}, 'Event ', h('code', {}, t.eventName)),
      h('div', { class: 'small' }, t.filter ? ['Filter ', h('code', {}, t.filter)] : h('span', { class: 'muted' }, 'no filter: every event of this name')));
  }

  function renderList() {
    clear(listBox).append(table([
      { label: 'Type', cell: (t) => h('span', { class: `badge kind-${t.type}` }, t.type) },
      { label: 'Trigger', cell: (t) => h('div', {}, t.description ? h('div', { class: 'desc' }, t.description) : null, details(t)) },
      { label: 'Fired', cell: (t) => h('div', {}, `${t.firedCount || 0} time${String(t.firedCount) === '1' ? '' : 's'}`,
        t.lastFiredAt ? h('div', { class: 'muted small' }, 'last ', h('time', { datetime: t.lastFiredAt, title: time(t.lastFiredAt) }, ago(t.lastFiredAt))) : null) },
      { label: 'Created', cell: (t) => h('time', { datetime: t.createdAt, title: time(t.createdAt) }, ago(t.createdAt)) },
      { label: 'Actions', cell: (t) => h('div', { class: 'actions row-actions' },
        t.type === 'event' && canEdit ? h('button', { type: 'button', onClick: () => publish(t) }, 'Publish test event') : null,
        canEdit ? h('button', { type: 'button', class: 'danger', onClick: () => remove(t) }, 'Delete') : null) },
    ], triggers, { empty: 'No triggers yet.', caption: `${triggers.length} trigger${triggers.length === 1 ? '' : 's'}` }));
  }

  async function remove(t) {
    const what = t.type === 'webhook' ? `the webhook ${t.id}` : `the event trigger for “${t.eventName}”`;
    if (!(await confirmDialog(`Delete ${what}?`, { confirm: 'Delete', danger: true }))) return;
    try {
      await del(`${base}/${encodeURIComponent(t.id)}`);
      toast('Trigger deleted.', 'ok');
      if (createdBox.dataset.id === t.id) clear(createdBox);
      await load();
    } catch (e) { listError.textContent = e.message; }
  }

  async function publish(t) {
    await dialog(`Publish “${t.eventName}”`, (close) => {
      const result = h('div', { role: 'status', 'aria-live': 'polite' });
      const form = h('form', { novalidate: true },
        h('p', { class: 'muted' }, 'Publishes the event in this workflow\'s organization: every workflow with a matching event trigger starts.'),
        errorArea(),
        field({ name: 'payload', label: 'Payload (a JSON object)', type: 'textarea', rows: 5, value: '{}', attrs: { class: 'code' } }),
        h('div', { class: 'actions' },
          h('button', { type: 'submit', class: 'primary' }, 'Publish'),
          h('button', { type: 'button', onClick: () => close(null) }, 'Close')),
        result);
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        clearErrors(form);
        try {
          const payload = jsonObject(form.elements.payload.value, 'payload');
          const r = await post('/events', { name: t.eventName, payload, orgId: wf.orgId || '' });
          const ids = r?.executionIds || [];
          clear(result).append(h('p', {}, ids.length ? `Started ${ids.length} execution${ids.length === 1 ? '' : 's'}: ` : 'No trigger matched: nothing started.',
            ids.map((id, i) => [i ? ', ' : '', h('code', {}, id)])));
        } catch (err) { reportError(form, err); }
      });
      return form;
    });
    await load();
  }

  // ---- the add form ----

  const closeForm = () => { clear(formBox); addButton.hidden = false; };

  function openForm() {
    closeForm();
    clear(createdBox);
    addButton.hidden = true;
    const webhookPart = h('fieldset', { class: 'plain' },
      h('legend', {}, 'Webhook'),
      secretField({ name: 'signatureSecret', label: 'Signing secret (optional)', generate: () => randomSecret('whsec_', 24),
        hint: '16 to 256 bytes. Empty: unsigned — the URL alone starts the workflow. Weft stores it sealed and never shows it again.' }),
      h('details', { class: 'advanced' },
        h('summary', {}, 'Signature and idempotency headers'),
        field({ name: 'signatureHeader', label: 'Signature header', attrs: { placeholder: 'X-Weft-Signature', autocomplete: 'off' },
          hint: 'Carries sha256=<hex HMAC>. E.g. X-Hub-Signature-256 for GitHub.' }),
        field({ name: 'timestampHeader', label: 'Timestamp header', attrs: { placeholder: 'X-Weft-Timestamp', autocomplete: 'off' },
          hint: 'Unix seconds, signed as "<timestamp>.<body>". "-": no timestamp, the body alone is signed.' }),
        field({ name: 'timestampTolerance', label: 'Timestamp tolerance (seconds)', type: 'number', attrs: { placeholder: '300', min: 1, max: 86400, step: 1 } }),
        field({ name: 'idempotencyHeader', label: 'Idempotency header (optional)', attrs: { placeholder: 'Idempotency-Key', autocomplete: 'off' },
          hint: 'Deliveries that repeat its value start nothing new (works unsigned too).' })));
    const eventPart = h('fieldset', { class: 'plain' },
      h('legend', {}, 'Event'),
      field({ name: 'eventName', label: 'Event name', required: true, attrs: { placeholder: 'order.created', autocomplete: 'off', maxlength: 128 },
        hint: '1 to 128 characters of letters, digits and . _ : / -' }),
      field({ name: 'filter', label: 'Filter (optional)', attrs: { class: 'mono', placeholder: 'event.amount > 100', autocomplete: 'off', spellcheck: 'false' },
        hint: 'An expression over the payload as event: event.country == "DE" && !event.test' }));
    const form = h('form', { class: 'auto-form', novalidate: true, 'aria-labelledby': 'trg-form-title' },
      h('h2', { id: 'trg-form-title', tabindex: '-1' }, 'New trigger'),
      errorArea(),
      field({ name: 'type', label: 'Type', type: 'select', value: 'webhook', options: [['webhook', 'Webhook (POST to a URL)'], ['event', 'Event (POST /events)']] }),
      field({ name: 'description', label: 'Description (optional)', attrs: { maxlength: 1024 } }),
      webhookPart, eventPart,
      h('div', { class: 'actions' },
        h('button', { type: 'submit', class: 'primary' }, 'Create trigger'),
        h('button', { type: 'button', onClick: () => { closeForm(); addButton.focus(); } }, 'Cancel')));
    const els = form.elements;
    const sync = () => {
      webhookPart.hidden = els.type.value !== 'webhook';
      eventPart.hidden = els.type.value !== 'event';
      webhookPart.disabled = webhookPart.hidden;
      eventPart.disabled = eventPart.hidden;
    };
    els.type.addEventListener('change', sync);
    sync();

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(form);
      let body;
      let secret = '';
      try {
        body = { type: els.type.value, description: els.description.value };
        if (utf8Length(body.description) > 1024) throw new Invalid('description', 'description is longer than 1024 bytes');
        if (body.type === 'webhook') {
          secret = els.signatureSecret.value;
          const sigHeader = els.signatureHeader.value.trim();
          const tsHeader = els.timestampHeader.value.trim();
          const tolerance = els.timestampTolerance.value;
          const idem = els.idempotencyHeader.value.trim();
          if (idem) {
            if (!isHeaderName(idem)) throw new Invalid('idempotencyHeader', `idempotency_header "${idem}" is not an HTTP header name (at most 64 token characters)`);
            body.idempotencyHeader = idem;
          }
          if (!secret && (sigHeader || tsHeader || tolerance)) {
            throw new Invalid('signatureSecret', 'signature_header, timestamp_header and timestamp_tolerance need a signature_secret');
          }
          if (secret) {
            const n = utf8Length(secret);
            if (n < 16 || n > 256) throw new Invalid('signatureSecret', `signature_secret must be 16 to 256 bytes, got ${n}`);
            body.signatureSecret = secret;
            if (sigHeader) {
              if (!isHeaderName(sigHeader)) throw new Invalid('signatureHeader', `signature_header "${sigHeader}" is not an HTTP header name (at most 64 token characters)`);
              body.signatureHeader = sigHeader;
            }
            if (tsHeader) {
              if (tsHeader !== '-' && !isHeaderName(tsHeader)) throw new Invalid('timestampHeader', `timestamp_header "${tsHeader}" is not an HTTP header name (at most 64 token characters)`);
              body.timestampHeader = tsHeader;
            }
            if (tolerance !== '') {
              const t = Number(tolerance);
              if (!Number.isFinite(t) || t < 1 || t > 86400) throw new Invalid('timestampTolerance', 'timestamp_tolerance must be from 1s to 24h');
              body.timestampTolerance = `${t}s`;
            }
          }
        } else {
          const name = els.eventName.value.trim();
          if (!name) throw new Invalid('eventName', 'event_name is required');
          if (!EVENT_NAME.test(name)) throw new Invalid('eventName', `event name "${name}" must be 1 to 128 characters of letters, digits and . _ : / -`);
          body.eventName = name;
          if (els.filter.value.trim()) body.filter = els.filter.value.trim();
        }
      } catch (err) { reportError(form, err); return; }
      const submit = form.querySelector('button[type=submit]');
      submit.disabled = true;
      try {
        const t = await post(base, body);
        toast('Trigger created.', 'ok');
        closeForm();
        showCreated(t, secret);
        await load();
      } catch (err) {
        reportError(form, err, RULES);
      } finally {
        submit.disabled = false;
      }
    });
    formBox.append(h('div', { class: 'card' }, form));
    focusSoon(els.type);
  }

  /** Once, right after creating: the URL, the secret (never shown again) and how to sign. */
  function showCreated(t, secret) {
    clear(createdBox);
    createdBox.dataset.id = t.id;
    const done = h('button', { type: 'button', onClick: () => { clear(createdBox); addButton.focus(); } }, 'Done');
    const heading = h('h2', { id: 'trg-created-title', tabindex: '-1' }, t.type === 'webhook' ? 'Webhook trigger created' : 'Event trigger created');
    const body = t.type === 'webhook'
      ? [
        copyField({ label: 'Hook URL', value: hookUrl(t), name: 'new-url', hint: 'POST a JSON object to it; no credentials needed.' }),
        secret ? copyField({ label: 'Signing secret (shown only now)', value: secret, name: 'new-secret',
          hint: 'Weft keeps it sealed and never shows it again: store it with the sender now.' }) : null,
        h('h3', {}, 'How to call it'),
        howTo(t, secret),
      ]
      : [h('p', {}, 'Publishing ', h('code', {}, t.eventName), ' in this organization now starts this workflow',
        t.filter ? [' when ', h('code', {}, t.filter), ' holds'] : '', '.'),
      h('pre', { class: 'howto' }, `curl -s ${sh(`${location.origin}/events`)} -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \\\n  -d ${sh(JSON.stringify({ name: t.eventName, payload: {} }))}`)];
    createdBox.append(h('section', { class: 'card created', 'aria-labelledby': 'trg-created-title' }, heading, body, h('div', { class: 'actions' }, done)));
    focusSoon(heading);
  }

  await load();
  if (ctx.query?.add === '1' && canEdit) openForm();
}
