// The selected organization's secrets (#/secrets): names and metadata
// (the API never returns a value), add, replace a value, delete. Org
// admins change them; members only see the names.
import { get, post, put, del, isAbort } from '../api.js';
import { session, currentOrg } from '../session.js';
import { h, clear, field, toast, ago, time, showError, fieldError, clearErrors, confirmDialog, dialog, pageHeader } from '../ui.js';
import { ensureCss } from '../css.js';

// The server's checks (SecretAPI.swift, SecretVault).
const NAME_RE = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
const VALUE_MIN = 4;
const VALUE_MAX_BYTES = 64 * 1024;
const NAME_RULE = "letters, digits and '_', starting with a letter, at most 64 characters";

const enc = encodeURIComponent;

/** The browser-side copy of SecretAPI.check; an error message or null. */
function checkValue(value) {
  if (!value) return 'value is required';
  if ([...value].length < VALUE_MIN) return `value must be at least ${VALUE_MIN} characters (it is redacted wherever it appears)`;
  if (new TextEncoder().encode(value).length > VALUE_MAX_BYTES) return `value is larger than ${VALUE_MAX_BYTES} bytes`;
  return null;
}
function checkName(name) {
  if (!name) return 'name is required';
  if (!NAME_RE.test(name)) return `secret name "${name}" must be ${NAME_RULE}`;
  return null;
}

function when(ts) {
  return ts ? h('time', { datetime: ts, title: time(ts) }, ago(ts)) : '—';
}

export async function render(main, ctx) {
  ensureCss('workflows');
  const { signal } = ctx;
  const org = currentOrg();
  main.append(pageHeader('Secrets'));
  if (!org) {
    main.append(h('p', { class: 'empty' }, 'You are not a member of any organization, so there are no secrets to show.'));
    return;
  }
  const orgPath = `/orgs/${enc(org.id)}/secrets`;
  const isAdmin = org.role === 'admin';
  const me = session.user?.id;

  main.append(...[
    h('p', { class: 'muted' }, 'Secrets of ', h('strong', {}, org.name),
      '. Task configs use them as ', h('code', {}, '{{secrets.NAME}}'),
      '; values are write-only: nobody can read one back, here or through the API.'),
    isAdmin ? null : h('p', { class: 'note', role: 'note' },
      `You are a ${org.role || 'member'} of this organization: you see the names, but only its admins can add, replace or delete secrets.`)]
    .filter(Boolean)); // Element.append would print null as text

  // ---- add ----
  const nameField = field({ name: 'name', label: 'Name', hint: 'e.g. STRIPE_KEY', attrs: { autocomplete: 'off', spellcheck: 'false', maxlength: '64', disabled: !isAdmin } });
  const valueField = field({ name: 'value', label: 'Value', type: 'password', attrs: { autocomplete: 'new-password', disabled: !isAdmin } });
  const addButton = h('button', { type: 'submit', class: 'primary', disabled: !isAdmin }, 'Add secret');
  const addForm = h('form', { class: 'inline-form', novalidate: true, 'aria-labelledby': 'add-secret' },
    h('div', { class: 'form-error', role: 'alert' }),
    nameField, valueField, h('div', { class: 'form-actions' }, addButton));
  const listArea = h('div', { 'aria-live': 'polite' });
  main.append(
    h('section', { class: 'card', 'aria-labelledby': 'add-secret' }, h('h2', { id: 'add-secret' }, 'Add a secret'), addForm),
    h('h2', {}, 'Stored secrets'), listArea);

  let secrets = [];
  let names = new Map();  // userId -> name, from the organization's members (every member may list them)
  const who = (id) => (id === me ? 'you' : names.get(id) || id || '—');

  function draw() {
    clear(listArea);
    if (!secrets.length) {
      listArea.append(h('p', { class: 'empty' }, `${org.name} has no secrets yet.`,
        isAdmin ? ' Add one above, then refer to it in a task config.' : ''));
      return;
    }
    const rows = [...secrets].sort((a, b) => a.name.localeCompare(b.name));
    const cols = ['Name', 'Version', 'Updated', 'Updated by', 'Created', 'Actions'];
    listArea.append(h('div', { class: 'table-wrap' }, h('table', {},
      h('caption', { class: 'visually-hidden' }, `Secrets of ${org.name}`),
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col', class: c === 'Version' ? 'num' : undefined }, c)))),
      h('tbody', {}, rows.map((s) => {
        const replace = h('button', { type: 'button', 'aria-label': `Replace value of ${s.name}`, disabled: !isAdmin }, 'Replace value');
        const remove = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${s.name}`, disabled: !isAdmin }, 'Delete');
        replace.addEventListener('click', () => replaceValue(s, replace));
        remove.addEventListener('click', () => removeSecret(s, remove));
        return h('tr', { dataset: { name: s.name } },
          h('td', { 'data-label': 'Name' }, h('code', {}, s.name)),
          h('td', { 'data-label': 'Version', class: 'num' }, String(s.version ?? 1)),
          h('td', { 'data-label': 'Updated' }, when(s.updatedAt)),
          h('td', { 'data-label': 'Updated by', title: s.updatedBy }, who(s.updatedBy)),
          h('td', { 'data-label': 'Created' }, when(s.createdAt)),
          h('td', { 'data-label': 'Actions' }, h('div', { class: 'actions' }, replace, remove)));
      })))));
  }

  async function reload() {
    clear(listArea).append(h('p', { class: 'loading' }, 'Loading…'));
    try {
      const [list, members] = await Promise.all([
        get(orgPath, { signal }),
        get(`/orgs/${enc(org.id)}/members`, { signal }).catch((e) => { if (isAbort(e)) throw e; return null; }),
      ]);
      secrets = list?.secrets || [];
      names = new Map((members?.members || []).map((m) => [m.userId, m.name || m.email]));
      draw();
    } catch (err) {
      if (isAbort(err)) return;
      clear(listArea).append(h('p', { class: 'form-error', role: 'alert' }, err.message));
    }
  }

  addForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(addForm);
    const name = addForm.elements.namedItem('name').value.trim();
    const value = addForm.elements.namedItem('value').value;
    const problem = checkName(name);
    if (problem) { fieldError(addForm, 'name', problem); return; }
    const valueProblem = checkValue(value);
    if (valueProblem) { fieldError(addForm, 'value', valueProblem); return; }
    addButton.disabled = true;
    try {
      const created = await post(orgPath, { name, value }, { signal });
      secrets = secrets.filter((s) => s.name !== created.name).concat(created);
      addForm.reset();
      draw();
      toast(`Secret ${created.name} added.`, 'ok');
      addForm.elements.namedItem('name').focus();
    } catch (err) {
      if (isAbort(err)) return;
      // "organization … has a secret NAME; update it instead" names no field: put it by the name.
      if (err.status === 409) fieldError(addForm, 'name', err.message); else showError(addForm, err);
    } finally {
      addButton.disabled = false;
    }
  });

  async function replaceValue(secret, button) {
    const updated = await dialog(`Replace the value of ${secret.name}`, (close) => {
      const valueInput = field({ name: 'value', label: 'New value', type: 'password', attrs: { autocomplete: 'new-password' } });
      const save = h('button', { type: 'submit', class: 'primary' }, 'Save value');
      const form = h('form', { novalidate: true },
        h('div', { class: 'form-error', role: 'alert' }),
        h('p', { class: 'muted' }, `The old value is discarded; running tasks that already read it keep it. Version ${secret.version ?? 1} becomes ${(secret.version ?? 1) + 1}.`),
        valueInput,
        h('div', { class: 'actions' }, h('button', { type: 'button', onClick: () => close(null) }, 'Cancel'), save));
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        clearErrors(form);
        const value = form.elements.namedItem('value').value;
        const problem = checkValue(value);
        if (problem) { fieldError(form, 'value', problem); return; }
        save.disabled = true;
        try {
          close(await put(`${orgPath}/${enc(secret.name)}`, { value }, { signal }));
        } catch (err) {
          if (isAbort(err)) { close(null); return; }
          showError(form, err);
          save.disabled = false;
        }
      });
      queueMicrotask(() => form.elements.namedItem('value').focus());
      return form;
    });
    button.focus();
    if (!updated) return;
    secrets = secrets.map((s) => (s.name === updated.name ? updated : s));
    draw();
    toast(`Secret ${updated.name} replaced (version ${updated.version}).`, 'ok');
  }

  async function removeSecret(secret, button) {
    const ok = await confirmDialog(`Delete secret ${secret.name}?`, { confirm: 'Delete', danger: true });
    if (!ok) { button.focus(); return; }
    button.disabled = true;
    try {
      await del(`${orgPath}/${enc(secret.name)}`, { signal });
      secrets = secrets.filter((s) => s.name !== secret.name);
      draw();
      toast(`Secret ${secret.name} deleted. Tasks that refer to it now fail until it is added again.`, 'ok');
      addForm.elements.namedItem('name').focus();
    } catch (err) {
      if (isAbort(err)) return;
      button.disabled = false;
      toast(`Could not delete ${secret.name}: ${err.message}`, 'error');
    }
  }

  await reload();
}
