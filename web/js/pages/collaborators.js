// Who may see (viewer) and change (editor) a workflow
// (#/workflows/:id/collaborators). Only the owner adds, re-roles and
// removes; a collaborator may leave. Collaborators must be members of the
// workflow's organization (docs/TENANCY.md).
import { get, post, put, del, all, isAbort } from '../api.js';
import { session } from '../session.js';
import { h, clear, field, toast, ago, time, showError, fieldError, clearErrors, confirmDialog } from '../ui.js';
import { workflowHeader, loadWorkflow } from '../workflowNav.js';
import { ensureCss } from '../css.js';

const ROLES = [['viewer', 'Viewer (sees it and its runs)'], ['editor', 'Editor (also edits and runs it)']];
const enc = encodeURIComponent;

export async function render(main, ctx) {
  ensureCss('workflows');
  const { signal } = ctx;
  const wf = await loadWorkflow(ctx.params.id, signal);
  const me = session.user?.id;
  const isOwner = wf.role ? wf.role === 'owner' : wf.ownerId === me;
  const base = `/workflows/${enc(wf.id)}/collaborators`;
  main.append(workflowHeader(wf, '/collaborators'));

  // The organization's members: emails resolve to user ids, and the
  // email box suggests them. Any member may list them.
  let members = null;
  const loadMembers = () => {
    members ||= get(`/orgs/${enc(wf.orgId)}/members`, { signal }).then((r) => r?.members || [], (err) => {
      members = null;
      throw err;
    });
    return members;
  };

  const explanation = isOwner ? null : h('p', { class: 'note', role: 'note', id: 'owner-only' },
    'Only the workflow’s owner can add collaborators, change their roles or remove them.',
    wf.role ? ` You are ${wf.role === 'editor' ? 'an' : 'a'} ${wf.role}; you can leave the workflow below.` : '');

  // ---- add ----
  const suggestions = h('datalist', { id: 'member-suggestions' });
  const who = field({
    name: 'userId', label: 'Email or user id', hint: 'A member of the workflow’s organization; invite people to the organization first.',
    attrs: { autocomplete: 'off', spellcheck: 'false', list: 'member-suggestions', disabled: !isOwner, 'aria-disabled': isOwner ? undefined : 'true' },
  });
  const role = field({ name: 'role', label: 'Role', type: 'select', options: ROLES, value: 'viewer', attrs: { disabled: !isOwner } });
  const addButton = h('button', { type: 'submit', class: 'primary', disabled: !isOwner, 'aria-describedby': isOwner ? undefined : 'owner-only' }, 'Add collaborator');
  const addForm = h('form', { class: 'inline-form', novalidate: true, 'aria-labelledby': 'add-collab' },
    h('div', { class: 'form-error', role: 'alert' }), who, role, h('div', { class: 'form-actions' }, addButton), suggestions);
  const listArea = h('div');
  const status = h('p', { class: 'visually-hidden', role: 'status', 'aria-live': 'polite' });

  main.append(...[explanation,
    h('section', { class: 'card', 'aria-labelledby': 'add-collab' }, h('h2', { id: 'add-collab' }, 'Add a collaborator'), addForm),
    h('h2', {}, 'People with access'), listArea, status].filter(Boolean));

  let people = [];

  function roleControl(c) {
    if (c.role === 'owner' || !isOwner) return h('span', { class: 'role' }, c.role);
    const id = `role-${c.userId}`;
    const select = h('select', { id, class: 'role-select', 'aria-label': `Role of ${c.name || c.email || c.userId}`, 'aria-describedby': `${id}-err` },
      ROLES.map(([value]) => h('option', { value, selected: value === c.role }, value)));
    const err = h('div', { class: 'field-error', id: `${id}-err`, 'aria-live': 'polite' });
    select.addEventListener('change', async () => {
      const wanted = select.value;
      select.disabled = true;
      err.textContent = '';
      select.removeAttribute('aria-invalid');
      try {
        const updated = await put(`${base}/${enc(c.userId)}`, { role: wanted }, { signal });
        Object.assign(c, updated);
        status.textContent = `${c.name || c.email} is now ${c.role}.`;
        toast(`${c.name || c.email} is now ${c.role}.`, 'ok');
      } catch (e) {
        if (isAbort(e)) return;
        select.value = c.role;
        select.setAttribute('aria-invalid', 'true');
        err.textContent = e.message;
      } finally {
        select.disabled = false;
      }
    });
    return h('div', {}, select, err);
  }

  function draw() {
    clear(listArea);
    if (!people.length) { listArea.append(h('p', { class: 'empty' }, 'Nobody but the owner yet.')); return; }
    const cols = ['Name', 'Email', 'Role', 'Added', 'Actions'];
    listArea.append(h('div', { class: 'table-wrap' }, h('table', {},
      h('caption', { class: 'visually-hidden' }, `People with access to ${wf.name}`),
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, people.map((c) => {
        const label = c.name || c.email || c.userId;
        let action = null;
        if (c.role !== 'owner' && (isOwner || c.userId === me)) {
          const self = c.userId === me;
          action = h('button', { type: 'button', class: 'danger', 'aria-label': self ? 'Leave this workflow' : `Remove ${label}` }, self ? 'Leave' : 'Remove');
          action.addEventListener('click', () => remove(c, action));
        }
        return h('tr', { dataset: { userId: c.userId } },
          h('td', { 'data-label': 'Name' }, label, c.userId === me ? h('span', { class: 'muted' }, ' (you)') : null,
            h('div', { class: 'muted' }, h('code', {}, c.userId))),
          h('td', { 'data-label': 'Email' }, c.email || '—'),
          h('td', { 'data-label': 'Role' }, roleControl(c)),
          h('td', { 'data-label': 'Added' }, c.addedAt ? h('time', { datetime: c.addedAt, title: time(c.addedAt) }, ago(c.addedAt)) : '—'),
          h('td', { 'data-label': 'Actions' }, action || h('span', { class: 'muted' }, '—')));
      })))));
  }

  async function reload() {
    try {
      people = await all(base, 'collaborators', {}, 1000, { signal });
      draw();
      fillSuggestions();
    } catch (err) {
      if (isAbort(err)) return;
      clear(listArea).append(h('p', { class: 'form-error', role: 'alert' }, err.message));
    }
  }

  function fillSuggestions() {
    if (!isOwner) return;
    loadMembers().then((list) => {
      const taken = new Set(people.map((p) => p.userId));
      clear(suggestions).append(...list.filter((m) => !taken.has(m.userId))
        .map((m) => h('option', { value: m.email }, m.name ? `${m.name}` : m.email)));
    }, () => { /* suggestions only; adding by email shows the error */ });
  }

  addForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(addForm);
    const text = addForm.elements.namedItem('userId').value.trim();
    const wanted = addForm.elements.namedItem('role').value;
    if (!text) { fieldError(addForm, 'userId', 'Enter the email or user id of a member of the organization.'); return; }
    addButton.disabled = true;
    try {
      let userId = text;
      if (text.includes('@')) {
        const list = await loadMembers();
        const member = list.find((m) => (m.email || '').toLowerCase() === text.toLowerCase());
        if (!member) {
          fieldError(addForm, 'userId', `Nobody with the email ${text} is a member of this workflow’s organization; invite them to the organization first.`);
          return;
        }
        userId = member.userId;
      }
      const existing = people.find((p) => p.userId === userId);
      if (existing?.role === 'owner') {
        fieldError(addForm, 'userId', `${text} owns this workflow.`);
        return;
      }
      if (existing) {
        // The server answers 409 "…; use PUT to change the role": say it in the page's terms.
        fieldError(addForm, 'userId', `${text} is already ${existing.role === 'editor' ? 'an' : 'a'} ${existing.role}; change the role in the list below.`);
        return;
      }
      const added = await post(base, { userId, role: wanted }, { signal });
      people = people.filter((p) => p.userId !== added.userId).concat(added);
      draw();
      fillSuggestions();
      addForm.reset();
      toast(`${added.name || added.email} can now ${added.role === 'editor' ? 'edit' : 'see'} ${wf.name}.`, 'ok');
      addForm.elements.namedItem('userId').focus();
    } catch (err) {
      if (isAbort(err)) return;
      // "no member USER in organization ORG; …" and "user_id …" are about the person box.
      if (err.status === 404 || /user_id|userId/.test(err.message)) fieldError(addForm, 'userId', err.message);
      else showError(addForm, err);
    } finally {
      addButton.disabled = !isOwner;
    }
  });

  async function remove(c, button) {
    const self = c.userId === me;
    const label = c.name || c.email || c.userId;
    const ok = await confirmDialog(self ? `Leave ${wf.name}? You lose access to it.` : `Remove ${label} from ${wf.name}?`,
      { confirm: self ? 'Leave' : 'Remove', danger: true });
    if (!ok) { button.focus(); return; }
    button.disabled = true;
    try {
      await del(`${base}/${enc(c.userId)}`, { signal });
      if (self) {
        toast(`You left ${wf.name}.`, 'ok');
        ctx.navigate('/workflows');
        return;
      }
      people = people.filter((p) => p.userId !== c.userId);
      draw();
      fillSuggestions();
      toast(`${label} removed.`, 'ok');
      addForm.elements.namedItem('userId').focus();
    } catch (err) {
      if (isAbort(err)) return;
      button.disabled = false;
      toast(`Could not remove ${label}: ${err.message}`, 'error');
    }
  }

  await reload();
}
