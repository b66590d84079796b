// A workflow's cron schedules: list, add/edit with a live preview of the next
// fire times (POST /schedules/preview), pause/resume, backfill, delete.
// docs/SCHEDULES.md.
import { all, get, post, put, del } from '../api.js';
import { h, clear, field, table, badge, toast, confirmDialog, dialog, clearErrors, ago, pretty } from '../ui.js';
import { workflowHeader, loadWorkflow } from '../workflowNav.js';
import { ensureCss } from '../css.js';
import {
  Invalid, reportError, fieldError, clearFieldError, errorArea, jsonObject, seconds, toLocalInput, fromLocalInput,
  browserZone, timeZones, inZone, debounce, section, focusSoon,
} from './automation-forms.js';

ensureCss('automation');

// The server's allowed values (ScheduleAPI: OverlapPolicy, CatchUpPolicy).
const OVERLAP = [
  ['skip', 'skip — skip a tick while the last run is still running (default)'],
  ['allow', 'allow — start it anyway'],
  ['buffer_one', 'buffer_one — one tick waits for the running one to end'],
  ['cancel_other', 'cancel_other — cancel the running one, start the new one'],
  ['terminate_other', 'terminate_other — terminate the running one, start the new one'],
];
const CATCHUP = [
  ['run_once', 'run_once — run the latest missed tick (default)'],
  ['skip', 'skip — run none of the missed ticks'],
  ['run_all', 'run_all — run every missed tick within the window'],
];
const PRESETS = [
  ['*/5 * * * *', 'every 5 minutes'], ['0 * * * *', 'hourly'], ['0 9 * * *', 'daily 09:00'],
  ['0 9 * * MON-FRI', 'weekdays 09:00'], ['0 0 1 * *', 'monthly'],
];
const MAX_JITTER_S = 3599;
const WINDOW_S = [1, 30 * 86400];

// Server messages that name a field in words, or start "cron:" about another field.
const RULES = [[/time zone/i, 'timezone'], [/^cron:/i, 'cron'], [/start_at|before end_at/i, 'startAt'], [/end_at/i, 'endAt']];

export async function render(main, ctx) {
  const wf = await loadWorkflow(ctx.params.id, ctx.signal);
  const base = `/workflows/${encodeURIComponent(wf.id)}/schedules`;
  const canEdit = wf.role !== 'viewer';
  const zone = browserZone();

  const listBox = h('div', { class: 'auto-list' }, h('p', { class: 'loading', role: 'status' }, 'Loading schedules…'));
  const listError = errorArea();
  const formBox = h('div');
  const addButton = h('button', { type: 'button', class: 'primary', onClick: () => openForm(null) }, 'Add schedule');

  main.append(
    workflowHeader(wf, '/schedules'),
    formBox,
    section('schedules-title', 'Schedules', canEdit ? addButton : null,
      h('p', { class: 'muted' }, 'Cron expressions in a time zone start this workflow. ',
        'Each tick starts one execution whose input is the schedule\'s input plus ', h('code', {}, 'scheduledTime'), '.',
        canEdit ? null : ' You are a viewer: you can see the schedules but not change them.'),
      listError, listBox));

  let schedules = [];

  async function load() {
    try {
      schedules = await all(base, 'schedules', {}, 1000, { signal: ctx.signal });
      listError.textContent = '';
      renderList();
    } catch (e) {
      if (e.name === 'AbortError') return;
      listError.textContent = `Could not load the schedules: ${e.message}`;
    }
  }

  function renderList() {
    clear(listBox).append(table([
      { label: 'Schedule', cell: (s) => h('div', {},
        h('code', { class: 'cron' }, s.cron),
        s.description ? h('div', {}, s.description) : null,
        h('div', { class: 'muted small' }, `overlap ${s.overlapPolicy || 'skip'} · catch-up ${s.catchupPolicy || 'run_once'}`,
          seconds(s.jitter) ? ` · jitter ${seconds(s.jitter)} s` : '')) },
      { label: 'Time zone', cell: (s) => s.timezone || 'UTC' },
      { label: 'State', cell: (s) => h('div', {}, badge(s.paused ? 'paused' : 'active'),
        s.paused && s.pausedNote ? h('div', { class: 'muted small' }, s.pausedNote) : null,
        s.buffered ? h('div', { class: 'muted small' }, 'a tick is buffered') : null) },
      { label: 'Next fire', cell: (s) => (s.nextRunAt
        ? h('div', {}, h('time', { datetime: s.nextRunAt }, inZone(s.nextRunAt, s.timezone)), h('div', { class: 'muted small' }, ago(s.nextRunAt)))
        : h('span', { class: 'muted' }, s.paused ? 'none while paused' : 'none (past its end)')) },
      { label: 'Last fire', cell: (s) => (s.lastFireAt || s.lastOutcome
        ? h('div', {},
          s.lastFireAt ? h('time', { datetime: s.lastFireAt }, inZone(s.lastFireAt, s.timezone)) : null,
          h('div', { class: 'small' },
            s.lastOutcome ? badge(s.lastOutcome) : null, ' ',
            s.lastExecutionId ? h('a', { href: `#/workflows/${encodeURIComponent(wf.id)}/executions/${encodeURIComponent(s.lastExecutionId)}` }, 'execution') : null),
          h('div', { class: 'muted small' }, `fired ${s.firedCount || 0} · skipped ${s.skippedCount || 0} · missed ${s.missedCount || 0}`,
            s.lastSkipReason ? ` (last skip: ${s.lastSkipReason})` : ''))
        : h('span', { class: 'muted' }, 'never')) },
      { label: 'Actions', cell: (s) => (canEdit ? h('div', { class: 'actions row-actions' },
        h('button', { type: 'button', onClick: () => openForm(s) }, 'Edit'),
        s.paused
          ? h('button', { type: 'button', onClick: () => setPaused(s, false) }, 'Resume')
          : h('button', { type: 'button', onClick: () => setPaused(s, true) }, 'Pause'),
        h('button', { type: 'button', onClick: () => backfill(s) }, 'Backfill'),
        h('button', { type: 'button', class: 'danger', onClick: () => remove(s) }, 'Delete')) : h('span', { class: 'muted' }, '—')) },
    ], schedules, { empty: 'No schedules yet.', caption: `${schedules.length} schedule${schedules.length === 1 ? '' : 's'}` }));
  }

  async function setPaused(s, pause) {
    try {
      await post(`${base}/${encodeURIComponent(s.id)}/${pause ? 'pause' : 'resume'}`, pause ? { note: '' } : {});
      toast(pause ? 'Schedule paused.' : 'Schedule resumed.', 'ok');
      await load();
    } catch (e) { listError.textContent = e.message; }
  }

  async function remove(s) {
    if (!(await confirmDialog(`Delete the schedule “${s.cron}” (${s.timezone})?`, { confirm: 'Delete', danger: true }))) return;
    try {
      await del(`${base}/${encodeURIComponent(s.id)}`);
      toast('Schedule deleted.', 'ok');
      if (formBox.dataset.editing === s.id) closeForm();
      await load();
    } catch (e) { listError.textContent = e.message; }
  }

  // ---- the add / edit form, with its live preview ----

  let previewAbort = null;
  const closeForm = () => {
    previewAbort?.abort();
    clear(formBox);
    delete formBox.dataset.editing;
    addButton.hidden = false;
  };

  function openForm(s) {
    closeForm();
    if (s) formBox.dataset.editing = s.id;
    addButton.hidden = true;
    const window0 = seconds(s?.catchupWindow);
    const jitter0 = seconds(s?.jitter);
    const listId = `tz-${Math.random().toString(36).slice(2, 7)}`;
    const previewList = h('ol', { class: 'preview-times', 'aria-label': 'Next fire times' });
    const previewStatus = h('p', { class: 'muted small', role: 'status', 'aria-live': 'polite' }, 'Type a cron expression to see when it fires.');
    const normalized = h('p', { class: 'muted small' });
    const windowField = field({ name: 'catchupWindow', label: 'Catch-up window (seconds)', type: 'number', value: window0 ?? 3600,
      hint: 'run_all only: how far back missed ticks still run (1 s to 30 days).', attrs: { min: WINDOW_S[0], max: WINDOW_S[1], step: 1, inputmode: 'numeric' } });

    const form = h('form', { class: 'auto-form', novalidate: true, 'aria-labelledby': 'sch-form-title' },
      h('h2', { id: 'sch-form-title', tabindex: '-1' }, s ? 'Edit schedule' : 'New schedule'),
      errorArea(),
      h('div', { class: 'form-grid' },
        h('div', {},
          field({ name: 'cron', label: 'Cron expression', value: s?.cron || '', required: true,
            hint: 'minute hour day-of-month month day-of-week (six fields with seconds first), or @hourly, @daily, @weekly…',
            attrs: { class: 'mono', autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', placeholder: '*/15 * * * *' } }),
          h('div', { class: 'presets', role: 'group', 'aria-label': 'Examples' },
            h('span', { class: 'muted small' }, 'Examples:'),
            PRESETS.map(([cron, label]) => h('button', { type: 'button', class: 'chip', title: cron, onClick: () => {
              form.elements.cron.value = cron;
              form.elements.cron.dispatchEvent(new Event('input', { bubbles: true }));
            } }, label))),
          field({ name: 'timezone', label: 'Time zone', value: s?.timezone || zone, required: true,
            hint: `An IANA name (UTC, Europe/Berlin, America/New_York); your browser's is ${zone}. Use UTC for interval schedules (DST).`,
            attrs: { list: listId, autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false' } }),
          h('datalist', { id: listId }, timeZones().map((z) => h('option', { value: z }))),
          h('section', { class: 'preview', 'aria-labelledby': 'sch-preview-title' },
            h('h3', { id: 'sch-preview-title' }, 'Next 5 fire times'),
            previewStatus, previewList, normalized)),
        h('div', {},
          field({ name: 'description', label: 'Description (optional)', value: s?.description || '', attrs: { maxlength: 1024 } }),
          field({ name: 'input', label: 'Input (a JSON object)', type: 'textarea', rows: 4, value: pretty(s?.input || {}),
            hint: 'Each execution gets this input plus "scheduledTime" (the tick, UTC).', attrs: { class: 'code' } }),
          field({ name: 'overlapPolicy', label: 'Overlap policy', type: 'select', options: OVERLAP, value: s?.overlapPolicy || 'skip',
            hint: 'What a tick does while the last execution it started is still running.' }),
          field({ name: 'catchupPolicy', label: 'Catch-up policy', type: 'select', options: CATCHUP, value: s?.catchupPolicy || 'run_once',
            hint: 'Ticks missed while the server was down (late by more than 60 s).' }),
          windowField,
          field({ name: 'jitter', label: 'Jitter (seconds, optional)', type: 'number', value: jitter0 || '',
            hint: 'Each tick fires up to this much later: less than an hour and than the gap between ticks.',
            attrs: { min: 0, max: MAX_JITTER_S, step: 1, inputmode: 'numeric' } }),
          field({ name: 'startAt', label: 'Start at (optional)', type: 'datetime-local', value: toLocalInput(s?.startAt),
            hint: `No tick before this. In your browser's time zone (${zone}).` }),
          field({ name: 'endAt', label: 'End at (optional)', type: 'datetime-local', value: toLocalInput(s?.endAt),
            hint: `No tick after this. In your browser's time zone (${zone}).` }))),
      h('div', { class: 'actions' },
        h('button', { type: 'submit', class: 'primary' }, s ? 'Save changes' : 'Create schedule'),
        h('button', { type: 'button', onClick: () => { closeForm(); addButton.focus(); } }, 'Cancel')));

    const els = form.elements;
    const syncWindow = () => { windowField.hidden = els.catchupPolicy.value !== 'run_all'; };
    els.catchupPolicy.addEventListener('change', syncWindow);
    syncWindow();

    // Live preview: 300 ms after the last keystroke; stale answers are dropped.
    let seq = 0;
    const runPreview = async () => {
      const cron = els.cron.value.trim();
      const timezone = els.timezone.value.trim();
      previewAbort?.abort();
      clearFieldError(form, 'cron');
      clearFieldError(form, 'timezone');
      if (!cron) {
        clear(previewList);
        normalized.textContent = '';
        previewStatus.textContent = 'Type a cron expression to see when it fires.';
        return;
      }
      const body = { cron, timezone: timezone || 'UTC', count: 5 };
      try {
        const start = fromLocalInput(els.startAt.value, 'startAt');
        const end = fromLocalInput(els.endAt.value, 'endAt');
        if (start) body.startAt = start;
        if (end) body.endAt = end;
      } catch { /* the save reports a bad date */ }
      const mine = ++seq;
      previewAbort = new AbortController();
      const onLeave = () => previewAbort?.abort();
      ctx.signal.addEventListener('abort', onLeave, { once: true });
      previewStatus.textContent = 'Checking…';
      try {
        const r = await post('/schedules/preview', body, { signal: previewAbort.signal });
        if (mine !== seq) return;
        const times = r?.times || [];
        clear(previewList).append(...times.map((t, i) => h('li', {},
          h('time', { datetime: r.localTimes?.[i] || t }, inZone(t, body.timezone)),
          h('span', { class: 'muted small' }, ` · ${ago(t)}`,
            body.timezone !== zone ? ` · ${inZone(t, zone)} your time` : ''))));
        normalized.textContent = r?.normalized ? `Normalized: ${r.normalized}` : '';
        previewStatus.textContent = times.length ? `Fires ${times.length === 5 ? 'next' : 'only'} at:` : 'No fire times in this range.';
      } catch (e) {
        if (e.name === 'AbortError' || mine !== seq) return;
        clear(previewList);
        normalized.textContent = '';
        previewStatus.textContent = 'No preview: see the error above.';
        const name = /time zone/i.test(e.message) ? 'timezone' : /start_at/.test(e.message) ? 'startAt' : /end_at/.test(e.message) ? 'endAt' : 'cron';
        if (!fieldError(form, name, e.message, { focus: false })) previewStatus.textContent = e.message;
      } finally {
        ctx.signal.removeEventListener('abort', onLeave);
      }
    };
    const schedulePreview = debounce(runPreview, 300);
    ctx.signal.addEventListener('abort', schedulePreview.cancel, { once: true });
    for (const name of ['cron', 'timezone', 'startAt', 'endAt']) {
      els[name].addEventListener('input', schedulePreview);
      els[name].addEventListener('change', schedulePreview);
    }
    if (els.cron.value) runPreview();

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(form);
      let body;
      try { body = collect(els); } catch (err) { reportError(form, err); return; }
      const submit = form.querySelector('button[type=submit]');
      submit.disabled = true;
      try {
        if (s) await put(`${base}/${encodeURIComponent(s.id)}`, body);
        else await post(base, body);
        toast(s ? 'Schedule saved.' : 'Schedule created.', 'ok');
        closeForm();
        await load();
        addButton.focus();
      } catch (err) {
        reportError(form, err, RULES);
      } finally {
        submit.disabled = false;
      }
    });

    formBox.append(h('div', { class: 'card' }, form));
    focusSoon(els.cron);
  }

  /** The create/update body from the form, checked as the server checks it. */
  function collect(els) {
    const cron = els.cron.value.trim();
    if (!cron) throw new Invalid('cron', 'cron is required');
    const body = {
      cron,
      timezone: els.timezone.value.trim() || 'UTC',
      description: els.description.value,
      input: jsonObject(els.input.value, 'input'),
      overlapPolicy: els.overlapPolicy.value,
      catchupPolicy: els.catchupPolicy.value,
    };
    if (new TextEncoder().encode(body.description).length > 1024) throw new Invalid('description', 'description is longer than 1024 bytes');
    if (body.catchupPolicy === 'run_all') {
      const w = Number(els.catchupWindow.value || 3600);
      if (!Number.isFinite(w) || w < WINDOW_S[0] || w > WINDOW_S[1]) throw new Invalid('catchupWindow', 'catchup_window must be from 1s to 30 days');
      body.catchupWindow = `${w}s`;
    }
    if (els.jitter.value !== '') {
      const j = Number(els.jitter.value);
      if (!Number.isFinite(j) || j < 0 || j > MAX_JITTER_S) throw new Invalid('jitter', 'jitter must be from 0s to less than 1h');
      if (j > 0) body.jitter = `${j}s`;
    }
    const start = fromLocalInput(els.startAt.value, 'startAt');
    const end = fromLocalInput(els.endAt.value, 'endAt');
    if (start && end && Date.parse(start) >= Date.parse(end)) throw new Invalid('startAt', 'start_at must be before end_at');
    if (start) body.startAt = start;
    if (end) body.endAt = end;
    return body;
  }

  // ---- backfills ----

  async function backfill(s) {
    const path = `${base}/${encodeURIComponent(s.id)}/backfills`;
    await dialog(`Backfill “${s.cron}”`, (close) => {
      const runs = h('div', { class: 'auto-list' }, h('p', { class: 'loading', role: 'status' }, 'Loading backfills…'));
      const now = new Date();
      const dayAgo = new Date(now.getTime() - 86400000);
      const form = h('form', { novalidate: true },
        h('p', { class: 'muted' }, 'Runs every tick in [start, end) that has no execution yet (at most 10,000). Times are in your browser\'s time zone.'),
        errorArea(),
        field({ name: 'startTime', label: 'Start', type: 'datetime-local', value: toLocalInput(dayAgo.toISOString()), required: true }),
        field({ name: 'endTime', label: 'End (not in the future)', type: 'datetime-local', value: toLocalInput(now.toISOString()), required: true }),
        field({ name: 'maxConcurrent', label: 'Executions at once (1–64)', type: 'number', value: 1, attrs: { min: 1, max: 64, step: 1 } }),
        h('div', { class: 'actions' },
          h('button', { type: 'submit', class: 'primary' }, 'Start backfill'),
          h('button', { type: 'button', onClick: () => close(null) }, 'Close')));
      let poll = null;
      const showRuns = async () => {
        clearTimeout(poll);
        try {
          const r = await get(path);
          // Progress, while a backfill runs and the dialog is open.
          if ((r?.backfills || []).some((b) => b.status === 'Running')) poll = setTimeout(() => { if (form.isConnected) showRuns(); }, 2000);
          clear(runs).append(table([
            { label: 'Range', cell: (b) => `${inZone(b.startTime, s.timezone)} → ${inZone(b.endTime, s.timezone)}` },
            { label: 'Status', cell: (b) => h('span', {}, badge(b.status), b.error ? h('div', { class: 'small' }, b.error) : null) },
            { label: 'Ticks', cell: (b) => `${b.ticksDone || 0}/${b.ticksTotal || 0} (${b.ticksExisting || 0} existed)`, class: 'num' },
            { label: '', cell: (b) => (b.status === 'Running' ? h('button', { type: 'button', onClick: async () => {
              try { await post(`${path}/${encodeURIComponent(b.id)}/cancel`, {}); await showRuns(); } catch (err) { reportError(form, err); }
            } }, 'Cancel') : '') },
          ], r?.backfills || [], { empty: 'No backfills yet.', caption: 'Backfills of this schedule' }));
        } catch (err) { clear(runs).append(h('p', { class: 'form-error', role: 'alert' }, err.message)); }
      };
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        clearErrors(form);
        try {
          const startTime = fromLocalInput(form.elements.startTime.value, 'startTime');
          const endTime = fromLocalInput(form.elements.endTime.value, 'endTime');
          if (!startTime) throw new Invalid('startTime', 'start_time is required');
          if (!endTime) throw new Invalid('endTime', 'end_time is required');
          if (Date.parse(startTime) >= Date.parse(endTime)) throw new Invalid('startTime', 'start_time must be before end_time');
          const maxConcurrent = Number(form.elements.maxConcurrent.value || 1);
          if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1 || maxConcurrent > 64) throw new Invalid('maxConcurrent', 'max_concurrent must be from 1 to 64');
          const b = await post(path, { startTime, endTime, maxConcurrent });
          toast(`Backfill started: ${b.ticksTotal || 0} ticks.`, 'ok');
          await showRuns();
        } catch (err) { reportError(form, err, [[/end_time/, 'endTime'], [/start_time/, 'startTime']]); }
      });
      showRuns();
      return h('div', { class: 'backfill' }, form, runs);
    });
    await load();
  }

  await load();
  // Keeps "next fire" current; not while the user is on a row (a re-render would drop focus).
  const timer = setInterval(() => {
    if (!document.hidden && !listBox.contains(document.activeElement) && !document.querySelector('dialog[open]')) load();
  }, 30000);
  ctx.signal.addEventListener('abort', () => clearInterval(timer), { once: true });
  if (ctx.query?.add === '1' && canEdit) openForm(null);
  return () => { clearInterval(timer); previewAbort?.abort(); };
}
