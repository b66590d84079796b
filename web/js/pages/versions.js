// #/workflows/:id/versions            the history: every version, A/B picks to compare
// #/workflows/:id/versions?a=…&b=…    the diff of two versions (DAG, words, JSON), then the history
// #/workflows/:id/versions/:versionId one version: its DAG, its JSON, Roll back
// Version ids are `ver_…` ids or numbers (the API takes both).
import { all, api, get, post, qs } from '../api.js';
import { ensureCss } from '../css.js';
import {
  canonicalJson, dagExplorer, definition, diffDefinitions, lineDiff, loadFailure, sameValue, sideBySideView,
  taskDetails, unifiedView,
} from '../diff.js';
import { session } from '../session.js';
import { ago, clear, clearErrors, confirmDialog, field, h, showError, table, time, toast } from '../ui.js';
import { loadWorkflow, workflowHeader } from '../workflowNav.js';

ensureCss('versions');

const enc = encodeURIComponent;
const LABEL_MAX = 200; // APILimits.labelMaxCharacters (counted in characters, after trimming)

// A notice for the next render of the page (set before navigating after a rollback).
let flash = null;

export async function render(main, ctx) {
  let wf;
  try {
    wf = await loadWorkflow(ctx.params.id, ctx.signal);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    main.append(loadFailure(e));
    return;
  }
  const path = `/workflows/${enc(wf.id)}`;
  const page = { wf, ctx, path, base: `#${path}`, canEdit: wf.role === 'owner' || wf.role === 'editor', authors: null };
  main.append(workflowHeader(wf, '/versions'));
  if (flash) {
    main.append(h('div', { class: 'notice', role: 'status' }, flash.text),
      // (the DOM's append writes null as the text "null")
      flash.warning ? h('div', { class: 'notice warn', role: 'alert' }, `The server warns: ${flash.warning}`) : '');
    flash = null;
  }
  if (ctx.params.versionId) {
    await viewVersion(main, page);
    return;
  }
  if (ctx.query.a && ctx.query.b) await compare(main, page);
  await history(main, page);
}

// ---- shared bits ----

/** user id -> name, from the workflow's collaborators (the owner first). */
function loadAuthors(page) {
  page.authors ||= all(`${page.path}/collaborators`, 'collaborators', {}, 1000, { signal: page.ctx.signal })
    .then((list) => new Map(list.map((c) => [c.userId, c.name || c.email])), (e) => {
      if (e.name === 'AbortError') throw e;
      return new Map(); // names are a nicety: without them the ids are shown
    });
  return page.authors;
}

function author(authors, userId) {
  if (!userId) return '—';
  if (session.user?.id === userId) return `${session.user.name || session.user.email} (you)`;
  return authors.get(userId) || userId;
}

const currentMark = () => h('span', { class: 'badge current-mark' }, 'current');
const when = (ts) => h('time', { datetime: ts, title: time(ts) }, `${time(ts)} (${ago(ts)})`);
const errorBox = (e) => h('p', { class: 'form-error', role: 'alert' }, e.message || String(e));
const graphemes = (text) => (typeof Intl.Segmenter === 'function' ? [...new Intl.Segmenter().segment(text)].length : [...text].length);

function versionLink(page, v) { return `${page.base}/versions/${enc(v.id)}`; }
function compareLink(page, a, b) { return `${page.base}/versions${qs({ a, b })}`; }

// ---- the history ----

async function history(main, page) {
  const { wf, ctx, path } = page;
  const section = h('section', { class: 'card', 'aria-labelledby': 'v-hist' }, h('h2', { id: 'v-hist' }, 'History'));
  main.append(section);
  let versions, authors;
  try {
    [versions, authors] = await Promise.all([
      all(`${path}/versions`, 'versions', { pageSize: 100 }, 1000, { signal: ctx.signal }),
      loadAuthors(page),
    ]);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    section.append(errorBox(e));
    return;
  }
  if (!versions.length) {
    section.append(h('p', { class: 'empty' }, 'No versions yet.'));
    return;
  }
  const find = (q) => versions.find((v) => v.id === q || String(v.version) === q);
  const pickA = find(ctx.query.a) || versions[1] || versions[0];
  const pickB = find(ctx.query.b) || versions[0];
  const radio = (side, v, picked) => h('label', { class: 'pick-label' },
    h('input', { type: 'radio', name: side, value: v.id, checked: v === picked, 'aria-label': `Version ${v.version} as ${side.toUpperCase()}` }));
  const error = h('div', { class: 'form-error', role: 'alert' });
  const form = h('form', { class: 'versions-form', novalidate: true },
    h('div', { class: 'versions-table' }, table([
      { label: 'Version', cell: (v) => h('span', {}, `v${v.version}`, v.version === wf.version ? [' ', currentMark()] : null) },
      { label: 'Label', cell: (v) => v.label || h('span', { class: 'muted' }, '—') },
      { label: 'Author', cell: (v) => author(authors, v.createdBy) },
      { label: 'Created', cell: (v) => when(v.createdAt) },
      { label: 'A', class: 'pick', cell: (v) => radio('a', v, pickA) },
      { label: 'B', class: 'pick', cell: (v) => radio('b', v, pickB) },
      { label: 'View', cell: (v) => h('a', { href: versionLink(page, v), 'aria-label': `View version ${v.version}` }, 'View') },
    ], versions, { caption: `${versions.length} version${versions.length === 1 ? '' : 's'}, newest first` })),
    h('div', { class: 'compare-bar' },
      h('button', { type: 'submit', class: 'primary' }, 'Compare'),
      h('span', { class: 'muted' }, 'Pick version A (from) and version B (to).'),
      error));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const a = form.elements.a.value, b = form.elements.b.value;
    if (!a || !b) { error.textContent = 'Pick a version in column A and one in column B.'; return; }
    if (a === b) { error.textContent = 'Pick two different versions to compare.'; return; }
    error.textContent = '';
    const av = versions.find((v) => v.id === a), bv = versions.find((v) => v.id === b);
    ctx.navigate(`${path}/versions${qs({ a: av?.id || a, b: bv?.id || b })}`);
  });
  section.append(form);
  if (page.canEdit) section.append(labelForm(page, versions.find((v) => v.version === wf.version)));
}

function labelForm(page, current) {
  const { wf, path, ctx } = page;
  const form = h('form', { class: 'label-form', novalidate: true },
    field({ name: 'label', label: `Label the current version (v${wf.version})`, value: current?.label || '', attrs: { maxlength: String(LABEL_MAX), autocomplete: 'off' }, hint: 'e.g. "release 1"; empty removes the label' }),
    h('button', { type: 'submit' }, 'Save label'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const label = form.elements.label.value.trim();
    if (graphemes(label) > LABEL_MAX) {
      showError(form, new Error(`label is longer than ${LABEL_MAX} characters`));
      return;
    }
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const v = await post(`${path}/versions`, { label });
      toast(v.label ? `Version ${v.version} labelled “${v.label}”.` : `Version ${v.version} has no label now.`, 'ok');
      ctx.navigate(ctx.path + qs(ctx.query));
    } catch (err) {
      button.disabled = false;
      showError(form, err);
    }
  });
  return form;
}

// ---- one version ----

async function viewVersion(main, page) {
  const { wf, ctx, path } = page;
  let v, authors;
  try {
    [v, authors] = await Promise.all([
      get(`${path}/versions/${enc(ctx.params.versionId)}`, { signal: ctx.signal }),
      loadAuthors(page),
    ]);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    main.append(h('section', { class: 'card' }, h('h2', {}, `Version ${ctx.params.versionId}`), errorBox(e),
      h('p', {}, h('a', { href: `${page.base}/versions` }, 'All versions'))));
    return;
  }
  const isCurrent = v.version === wf.version;
  const error = h('div', { class: 'form-error', role: 'alert' });
  const rollbackButton = page.canEdit && !isCurrent
    ? h('button', { type: 'button', class: 'danger', onClick: () => rollback(page, v, rollbackButton, error) }, 'Roll back to this version')
    : null;
  main.append(h('section', { class: 'card', 'aria-labelledby': 'v-view' },
    h('div', { class: 'page-header' },
      h('h2', { id: 'v-view' }, `Version ${v.version}`, isCurrent ? [' ', currentMark()] : null),
      h('div', { class: 'actions' },
        h('a', { class: 'button', href: `${page.base}/versions` }, 'All versions'),
        isCurrent ? null : h('a', { class: 'button', href: compareLink(page, v.id, String(wf.version)) }, 'Compare with current'),
        rollbackButton)),
    error,
    h('p', { class: 'meta' },
      h('span', {}, 'Label: ', v.label ? h('strong', {}, v.label) : h('span', { class: 'muted' }, 'none')),
      h('span', {}, `Author: ${author(authors, v.createdBy)}`),
      h('span', {}, 'Created: ', when(v.createdAt))),
    v.description ? h('p', { class: 'ov-desc' }, v.description) : null,
    h('h3', {}, `Tasks (${(v.tasks || []).length})`),
    dagExplorer(v.tasks || [], { title: `Version ${v.version}: tasks and their dependencies`, empty: 'This version has no tasks.' }),
    h('h3', { id: 'v-json' }, 'Definition (JSON)'),
    h('pre', { class: 'def-json', tabindex: '0', 'aria-labelledby': 'v-json' }, canonicalJson(definition(v)))));
}

async function rollback(page, v, button, error) {
  const { wf, path, ctx } = page;
  const ok = await confirmDialog(
    `Roll back to version ${v.version}? Its definition becomes the new current version (v${wf.version + 1}); the history stays.`,
    { confirm: 'Roll back', danger: true });
  if (!ok) { button.focus(); return; }
  button.disabled = true;
  error.textContent = '';
  try {
    const res = await api('PUT', `${path}/versions/${enc(v.id)}/rollback`, {}, { raw: true });
    const created = await res.json();
    const same = sameValue(definition(created).tasks, definition(v).tasks);
    flash = {
      text: `Rolled back: version ${created.version} is now current, a copy of version ${v.version}`
        + `${created.label ? ` (labelled “${created.label}”)` : ''}.`
        + (same ? '' : ' Its tasks differ from the version you picked: compare them below.'),
      warning: res.headers.get('warning'),
    };
    ctx.navigate(`${path}/versions/${enc(created.id)}`);
  } catch (e) {
    button.disabled = false;
    error.textContent = e.message || String(e);
    button.focus();
  }
}

// ---- the diff of two versions ----

const STATE_TEXT = { added: '+ added', removed: '− removed', changed: '~ changed' };

function legend() {
  return h('p', { class: 'legend' },
    h('span', { class: 'mark added' }, '+ added'),
    h('span', { class: 'mark removed' }, '− removed (dashed)'),
    h('span', { class: 'mark changed' }, '~ changed'));
}

async function compare(main, page) {
  const { ctx, path } = page;
  const section = h('section', { class: 'card', 'aria-labelledby': 'v-diff' });
  main.append(section);
  let a, b;
  try {
    [a, b] = await Promise.all([ctx.query.a, ctx.query.b].map((id) => get(`${path}/versions/${enc(id)}`, { signal: ctx.signal })));
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    section.append(h('h2', { id: 'v-diff' }, 'Compare versions'), errorBox(e));
    return;
  }
  const nameA = `Version ${a.version}`, nameB = `Version ${b.version}`;
  const d = diffDefinitions(a, b);
  const describe = (v, side) => h('span', {}, `${side}: `, h('a', { href: versionLink(page, v) }, `version ${v.version}`),
    v.label ? ` “${v.label}”` : '', ` · ${time(v.createdAt)}`);
  const changeMark = (kind) => h('span', { class: `mark ${kind}` }, STATE_TEXT[kind]);

  const lines = (v) => canonicalJson(definition(v)).split('\n');
  const ops = lineDiff(lines(a), lines(b));
  const views = { side: 'Side by side', unified: 'Unified' };
  let mode = localStorage.getItem('weft.diffView') === 'unified' ? 'unified' : 'side';
  const jsonBox = h('div', {});
  const toggles = Object.entries(views).map(([key, label]) => h('button', {
    type: 'button', 'aria-pressed': String(key === mode), dataset: { view: key },
    onClick: () => { mode = key; localStorage.setItem('weft.diffView', key); drawJson(); },
  }, label));
  const drawJson = () => {
    toggles.forEach((t) => t.setAttribute('aria-pressed', String(t.dataset.view === mode)));
    clear(jsonBox).append(mode === 'unified' ? unifiedView(ops, nameA, nameB) : sideBySideView(ops, nameA, nameB));
  };
  drawJson();
  const added = ops.filter((o) => o.op === '+').length, removed = ops.filter((o) => o.op === '-').length;

  const taskPanel = (t) => {
    const mine = d.changes.filter((c) => c.task === t.key || c.edge?.endsWith(`>${t.key}`));
    const inA = (lead) => [h('h4', {}, `${lead} ${nameA.toLowerCase()}`), taskDetails(t.a)];
    const inB = (lead) => [h('h4', {}, `${lead} ${nameB.toLowerCase()}`), taskDetails(t.b)];
    return h('div', {},
      mine.length ? h('ul', { class: 'change-list' }, mine.map((c) => h('li', {}, changeMark(c.kind), h('span', {}, c.text)))) : null,
      t.state === 'same'
        ? [h('p', { class: 'muted' }, mine.length ? 'Its settings are the same in both versions; its dependencies changed.' : 'The same in both versions.'), inB('In')]
        : null,
      t.state === 'changed' ? [inA('In'), inB('In')] : null,
      t.state === 'added' ? [h('p', { class: 'muted' }, `Not in ${nameA.toLowerCase()}.`), inB('In')] : null,
      t.state === 'removed' ? [inA('In'), h('p', { class: 'muted' }, `Not in ${nameB.toLowerCase()}.`)] : null);
  };

  section.append(
    h('div', { class: 'page-header' },
      h('h2', { id: 'v-diff' }, `Compare version ${a.version} with version ${b.version}`),
      h('div', { class: 'actions' },
        h('a', { class: 'button', href: compareLink(page, b.id, a.id) }, 'Swap A and B'),
        h('a', { class: 'button', href: `${page.base}/versions` }, 'Close comparison'))),
    h('p', { class: 'meta' }, describe(a, 'A'), describe(b, 'B')),
    h('p', { role: 'status' }, d.count
      ? `${d.count} difference${d.count === 1 ? '' : 's'} in the definition.`
      : 'The two definitions are the same.'),
    h('h3', {}, 'Graph'),
    legend(),
    dagExplorer(d.tasks, {
      title: `Tasks of versions ${a.version} and ${b.version}, marked added, removed or changed`,
      nodeClass: (t) => (t.state === 'same' ? null : t.state),
      edgeClass: (from, to) => { const e = d.edges.get(`${from}>${to}`); return e === 'same' ? null : e; },
      label: (t) => (t.state === 'same' ? t.action || '' : `${STATE_TEXT[t.state]} · ${t.action || ''}`),
      details: taskPanel,
      empty: 'Neither version has tasks.',
    }),
    h('h3', {}, 'Changes'),
    d.count
      ? h('ul', { class: 'change-list', 'aria-label': 'Changes from A to B' }, d.changes.map((c) => h('li', {}, changeMark(c.kind), h('span', {}, c.text))))
      : h('p', { class: 'empty' }, 'No changes.'),
    h('h3', {}, 'Definition (JSON)'),
    h('div', { class: 'diff-toolbar', role: 'group', 'aria-label': 'Diff layout' },
      toggles,
      h('span', { class: 'muted' }, `${removed} line${removed === 1 ? '' : 's'} removed (−), ${added} added (+); sorted keys, output-only fields left out`)),
    jsonBox);
}
