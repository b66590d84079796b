// The workflow list (#/workflows, #/): the selected organization's
// workflows the user owns or collaborates on, with search, each one's last
// run and next scheduled run, and Duplicate / Delete.
import { get, post, del, qs, isAbort } from '../api.js';
import { session, currentOrg } from '../session.js';
import { h, clear, field, toast, badge, ago, time, confirmDialog, pageHeader } from '../ui.js';
import { ensureCss } from '../css.js';

const PAGE_SIZE = 50;          // rows asked per request
const MAX_PAGES_PER_LOAD = 10; // pages read to fill one screen when most belong to other organizations
const SEARCH_MAX_BYTES = 1000; // APILimits.searchQueryMaxBytes
const DEBOUNCE_MS = 250;
const DETAIL_CONCURRENCY = 6;  // last-run / schedule requests in flight at once
const LIVE_REFRESH_MS = 5000;  // a row whose last run is still going is looked at again this often
const ACTIVE = new Set(['pending', 'running']);

const enc = encodeURIComponent;
const utf8Length = (s) => new TextEncoder().encode(s).length;

/** Runs at most `n` of the queued async functions at once. */
function limiter(n) {
  let active = 0;
  const queue = [];
  const pump = () => {
    while (active < n && queue.length) {
      const { fn, resolve, reject } = queue.shift();
      active++;
      Promise.resolve().then(fn).then(resolve, reject).finally(() => { active--; pump(); });
    }
  };
  return (fn) => new Promise((resolve, reject) => { queue.push({ fn, resolve, reject }); pump(); });
}

/** Task fields CreateWorkflow does not take (output only). */
function stripTask(task) {
  const { id, workflowId, createdAt, updatedAt, ...rest } = task;
  return rest;
}

function when(ts, prefix = '') {
  if (!ts) return '—';
  return h('time', { datetime: ts, title: time(ts) }, prefix + ago(ts));
}

export async function render(main, ctx) {
  ensureCss('workflows');
  const { signal } = ctx;
  const me = session.user?.id;
  const orgId = session.orgId;
  const org = currentOrg();
  const limit = limiter(DETAIL_CONCURRENCY);
  const timers = new Set();
  const details = new Map(); // workflow id -> Promise of { last, next }
  let memberNames = null;    // Promise of Map user id -> name (the organization's members)

  const inOrg = (w) => !orgId || !w.orgId || w.orgId === orgId;

  // ---- page skeleton ----
  const search = field({
    name: 'query', label: 'Search workflows', type: 'search', value: ctx.query?.q || '',
    hint: 'Words in names, descriptions and task names; press / to come back here.',
    attrs: { autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. nightly report' },
  });
  const searchForm = h('form', { role: 'search', class: 'wf-search', novalidate: true }, search);
  const input = searchForm.querySelector('input');
  const inputError = searchForm.querySelector('.field-error');
  const summary = h('p', { class: 'muted wf-summary', role: 'status', 'aria-live': 'polite' });
  const listArea = h('div', { class: 'wf-list' });
  const more = h('button', { type: 'button', class: 'wf-more', hidden: true }, 'Load more');

  main.append(...[
    pageHeader('Workflows', h('a', { class: 'button primary', href: '#/workflows/new' }, 'New workflow')),
    org ? h('p', { class: 'muted' }, 'In ', h('strong', {}, org.name), '. Switch organizations at the top of the page.') : null,
    searchForm, summary, listArea, h('div', { class: 'actions wf-more-row' }, more)].filter(Boolean));

  // ---- rows ----
  let tbody = null;
  let shown = 0;        // rows in the table
  let query = '';       // the text the current rows answer
  let pageToken = '';   // the next page of the current listing
  let listAbort = null; // the current listing's requests

  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      observer.unobserve(entry.target);
      const row = entry.target;
      fillDetails(row.wfRecord, row);
    }
  }, { rootMargin: '200px 0px' });

  function ownerName(ownerId) {
    if (ownerId === me) return 'you';
    return ownerId;
  }

  function ownerCell(w) {
    const cell = h('span', { title: w.ownerId }, ownerName(w.ownerId));
    if (w.ownerId && w.ownerId !== me && orgId) {
      // Members of the organization may list its members: show a name, not an id.
      memberNames ||= get(`/orgs/${enc(orgId)}/members`, { signal })
        .then((r) => new Map((r?.members || []).map((m) => [m.userId, m.name || m.email])), (e) => {
          if (!isAbort(e)) cell.title = `${w.ownerId} (names unavailable: ${e.message})`;
          return new Map();
        });
      memberNames.then((names) => { if (names.has(w.ownerId)) cell.textContent = names.get(w.ownerId); });
    }
    return cell;
  }

  function makeRow(w) {
    const base = `#/workflows/${enc(w.id)}`;
    const isOwner = w.role ? w.role === 'owner' : w.ownerId === me;
    const dup = h('button', { type: 'button', 'aria-label': `Duplicate ${w.name}` }, 'Duplicate');
    const remove = h('button', {
      type: 'button', class: 'danger', 'aria-label': `Delete ${w.name}`, disabled: !isOwner,
      title: isOwner ? undefined : 'Only the owner can delete this workflow',
    }, 'Delete');
    const cells = {
      last: h('span', { class: 'muted' }, '…'),
      next: h('span', { class: 'muted' }, '…'),
    };
    const td = (label, cls, ...content) => h('td', { 'data-label': label, class: cls }, content);
    const row = h('tr', { dataset: { id: w.id } },
      td('Name', 'wf-name',
        h('a', { href: base }, w.name),
        w.snippet ? h('div', { class: 'muted wf-desc' }, w.snippet) : w.description ? h('div', { class: 'muted wf-desc' }, w.description) : null),
      td('Owner', null, ownerCell(w)),
      td('Last run', 'wf-last', cells.last),
      td('Next run', null, cells.next),
      td('Version', 'num', String(w.version ?? 1)),
      td('Updated', null, when(w.updatedAt)),
      td('Actions', 'wf-actions', h('div', { class: 'actions' }, dup, remove)));
    row.wfRecord = w;
    row.wfCells = cells;
    dup.addEventListener('click', () => duplicate(w, dup));
    remove.addEventListener('click', () => removeWorkflow(w, row, remove));
    return row;
  }

  function ensureTable() {
    if (tbody) return;
    clear(listArea);
    tbody = h('tbody');
    const cols = ['Name', 'Owner', 'Last run', 'Next run', 'Version', 'Updated', 'Actions'];
    listArea.append(h('div', { class: 'table-wrap' }, h('table', { class: 'wf-table' },
      h('caption', { class: 'visually-hidden' }, 'Workflows'),
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col', class: c === 'Version' ? 'num' : undefined }, c)))),
      tbody)));
  }

  function addRows(workflows, { prepend = false } = {}) {
    if (!workflows.length) return;
    ensureTable();
    const rows = workflows.map(makeRow);
    if (prepend) tbody.prepend(...rows); else tbody.append(...rows);
    rows.forEach((r) => observer.observe(r));
    shown += rows.length;
  }

  function showEmpty() {
    tbody = null;
    clear(listArea).append(query
      ? h('div', { class: 'empty-state' },
        h('p', { class: 'empty' }, `No workflow matches “${query}”.`),
        h('p', { class: 'hint' }, 'Every word must match a name, a description or a task name (the last word as a prefix). Try fewer or shorter words.'))
      : h('div', { class: 'empty-state' },
        h('p', { class: 'empty' }, org ? `No workflows in ${org.name} yet.` : 'No workflows yet.'),
        h('p', { class: 'hint' }, 'Create one with ', h('a', { href: '#/workflows/new' }, 'New workflow'),
          ', or ask a colleague to add you as a collaborator on theirs.')));
  }

  function updateSummary(loading) {
    if (loading) { summary.textContent = query ? `Searching for “${query}”…` : 'Loading workflows…'; return; }
    const n = `${shown} workflow${shown === 1 ? '' : 's'}`;
    summary.textContent = query ? `${n} matching “${query}”${pageToken ? ' so far' : ''}.` : `${n}${pageToken ? ' shown; there are more' : ''}.`;
  }

  // ---- last run and next scheduled run, for rows on screen ----
  function fetchDetails(w, row) {
    const id = enc(w.id);
    // Queued requests of rows no longer on the page (a new search) are dropped.
    const guarded = (path) => limit(() => (signal.aborted || !row.isConnected
      ? Promise.reject(new DOMException('row gone', 'AbortError'))
      : get(path, { signal })));
    return Promise.all([
      guarded(`/workflows/${id}/executions${qs({ pageSize: 1 })}`),
      guarded(`/workflows/${id}/schedules`),
    ]).then(([runs, schedules]) => {
      const last = runs?.executions?.[0] || null;
      let next = null;
      for (const s of schedules?.schedules || []) {
        if (s.paused || !s.nextRunAt) continue;
        if (!next || Date.parse(s.nextRunAt) < Date.parse(next)) next = s.nextRunAt;
      }
      return { last, next };
    });
  }

  function fillDetails(w, row) {
    let p = details.get(w.id);
    if (!p) { p = fetchDetails(w, row); details.set(w.id, p); }
    p.then(({ last, next }) => {
      const cells = row.wfCells;
      if (!row.isConnected) return;
      const lastNode = last
        ? h('span', { class: 'wf-run' }, badge(last.status), ' ', when(last.startedAt || last.createdAt))
        : h('span', { class: 'muted' }, 'never run');
      cells.last.replaceWith(lastNode);
      cells.last = lastNode;
      const nextNode = next ? when(next) : h('span', { class: 'muted', title: 'No active schedule' }, '—');
      cells.next.replaceWith(nextNode);
      cells.next = nextNode;
      if (last && ACTIVE.has(String(last.status).toLowerCase())) {
        // Still going: look again in a while (while the row is on the page).
        const t = setTimeout(() => {
          timers.delete(t);
          if (signal.aborted || !row.isConnected) return;
          details.delete(w.id);
          fillDetails(w, row);
        }, LIVE_REFRESH_MS);
        timers.add(t);
      }
    }, (err) => {
      details.delete(w.id);
      if (isAbort(err) || signal.aborted) {
        // A row that is still here (its request was dropped while it was off the page) tries again when seen.
        if (row.isConnected && !signal.aborted) observer.observe(row);
        return;
      }
      for (const key of ['last', 'next']) {
        const node = h('span', { class: 'muted', title: err.message }, 'unavailable');
        row.wfCells[key].replaceWith(node);
        row.wfCells[key] = node;
      }
    });
  }

  // ---- listing and search ----
  async function load({ reset }) {
    listAbort?.abort();
    const ac = new AbortController();
    listAbort = ac;
    const stop = () => ac.abort();
    signal.addEventListener('abort', stop, { once: true });
    if (reset) {
      query = input.value.trim();
      pageToken = '';
      shown = 0;
      tbody = null;
      clear(listArea).append(h('p', { class: 'loading' }, 'Loading…'));
    }
    more.disabled = true;
    updateSummary(true);
    try {
      let added = 0;
      let pages = 0;
      do {
        const params = { pageSize: PAGE_SIZE, pageToken };
        const page = query
          ? await get(`/workflows/search${qs({ query, ...params })}`, { signal: ac.signal })
          : await get(`/workflows${qs({ summary: true, ...params })}`, { signal: ac.signal });
        if (ac.signal.aborted) return;
        const items = query
          ? (page?.results || []).map((r) => ({ ...r.workflow, snippet: r.snippet }))
          : page?.workflows || [];
        // ListWorkflows has no organization filter: keep the selected one's.
        const mine = items.filter(inOrg);
        if (reset && pages === 0) clear(listArea);
        addRows(mine);
        added += mine.length;
        pageToken = page?.nextPageToken || '';
        pages++;
      } while (pageToken && added < PAGE_SIZE && pages < MAX_PAGES_PER_LOAD);
      if (!shown) showEmpty();
      more.hidden = !pageToken;
      updateSummary(false);
    } catch (err) {
      if (isAbort(err) || ac.signal.aborted) return;
      if (reset) clear(listArea);
      listArea.append(h('p', { class: 'form-error', role: 'alert' }, err.message));
      if (err.status === 400 && query) {
        input.setAttribute('aria-invalid', 'true');
        inputError.textContent = err.message;
      }
      summary.textContent = '';
    } finally {
      more.disabled = false;
      signal.removeEventListener('abort', stop);
    }
  }

  let debounce = null;
  function scheduleSearch(now) {
    clearTimeout(debounce);
    const text = input.value.trim();
    input.removeAttribute('aria-invalid');
    inputError.textContent = '';
    if (utf8Length(text) > SEARCH_MAX_BYTES) {
      input.setAttribute('aria-invalid', 'true');
      inputError.textContent = `query is longer than ${SEARCH_MAX_BYTES} bytes`;
      return;
    }
    const run = () => {
      if (!now && text === query) return;
      // Keep the search in the address, so a reload or a shared link shows it.
      history.replaceState(null, '', `#${ctx.path}${text ? qs({ q: text }) : ''}`);
      load({ reset: true });
    };
    if (now) run(); else debounce = setTimeout(run, DEBOUNCE_MS);
  }
  input.addEventListener('input', () => scheduleSearch(false));
  searchForm.addEventListener('submit', (e) => { e.preventDefault(); scheduleSearch(true); });
  more.addEventListener('click', () => load({ reset: false }));

  // ---- actions ----
  async function duplicate(w, button) {
    button.disabled = true;
    try {
      const full = await get(`/workflows/${enc(w.id)}`, { signal });
      const body = {
        name: `${full.name} (copy)`,
        description: full.description || '',
        tasks: (full.tasks || []).map(stripTask),
      };
      if (full.orgId) body.orgId = full.orgId;
      const created = await post('/workflows', body, { signal });
      if (!query) {
        if (!tbody) clear(listArea);
        addRows([created], { prepend: true });
        updateSummary(false);
      }
      toast(`Created “${created.name}”.`, 'ok');
    } catch (err) {
      if (isAbort(err)) return;
      toast(`Could not duplicate “${w.name}”: ${err.message}`, 'error');
    } finally {
      button.disabled = false;
    }
  }

  async function removeWorkflow(w, row, button) {
    const ok = await confirmDialog(`Delete workflow “${w.name}”?`, { confirm: 'Delete', danger: true });
    if (!ok) { button.focus(); return; }
    button.disabled = true;
    try {
      const etag = w.etag ? (w.etag.startsWith('"') ? w.etag : `"${w.etag}"`) : null;
      await del(`/workflows/${enc(w.id)}`, { signal, headers: etag ? { 'if-match': etag } : undefined });
      const next = row.nextElementSibling || row.previousElementSibling;
      observer.unobserve(row);
      row.remove();
      details.delete(w.id);
      shown--;
      if (!shown && !pageToken) showEmpty();
      updateSummary(false);
      toast(`Deleted “${w.name}”.`, 'ok');
      (next?.querySelector('a') || input).focus();
    } catch (err) {
      if (isAbort(err)) return;
      button.disabled = false;
      toast(err.status === 409
        ? `“${w.name}” changed since this list was loaded; reload and try again (${err.message}).`
        : `Could not delete “${w.name}”: ${err.message}`, 'error');
    }
  }

  await load({ reset: true });

  return () => {
    clearTimeout(debounce);
    timers.forEach(clearTimeout);
    observer.disconnect();
    listAbort?.abort();
  };
}
