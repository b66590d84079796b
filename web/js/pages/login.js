// Sign in (#/login) and create an account (#/register). The session is an
// httpOnly cookie the server sets on login (api.js sends
// `x-weft-session: cookie`), so no token ever reaches this script.
import { post } from '../api.js';
import { loadSession } from '../session.js';
import { h, field, showError, fieldError, clearErrors } from '../ui.js';

// The server's checks (UserAPI.swift, APILimits.swift).
const PASSWORD_MIN = 8;          // Unicode scalars
const PASSWORD_MAX_BYTES = 1024;
const EMAIL_MAX_BYTES = 254;
const NAME_MAX = 200;

const utf8Length = (s) => new TextEncoder().encode(s).length;

function plausibleEmail(email) {
  const parts = email.split('@');
  return parts.length === 2 && parts[0] !== '' && parts[1].includes('.') && !parts[1].startsWith('.')
    && !parts[1].endsWith('.') && utf8Length(email) <= EMAIL_MAX_BYTES && !/\s/.test(email);
}

function formBox(form, message) {
  const box = form.querySelector('.form-error');
  box.textContent = message;
}

/** Where to go after signing in: `?next=` when it is a hash path of ours. */
function nextPath(query) {
  const next = query?.next;
  if (typeof next === 'string' && next.startsWith('/') && !next.startsWith('//')
    && !/^\/(login|register)(\/|\?|$)/.test(next)) return next;
  return '/workflows';
}

export async function render(main, ctx) {
  const registering = ctx.path === '/register';
  const nextQuery = ctx.query?.next ? `?next=${encodeURIComponent(ctx.query.next)}` : '';

  const controls = registering
    ? [
      field({ name: 'name', label: 'Name', attrs: { autocomplete: 'name', maxlength: String(NAME_MAX) }, required: true }),
      field({ name: 'email', label: 'Email', type: 'email', attrs: { autocomplete: 'username', inputmode: 'email', spellcheck: 'false' }, required: true }),
      field({ name: 'password', label: 'Password', type: 'password', hint: `At least ${PASSWORD_MIN} characters.`, attrs: { autocomplete: 'new-password' }, required: true }),
    ]
    : [
      field({ name: 'email', label: 'Email', type: 'email', attrs: { autocomplete: 'username', inputmode: 'email', spellcheck: 'false' }, required: true }),
      field({ name: 'password', label: 'Password', type: 'password', attrs: { autocomplete: 'current-password' }, required: true }),
    ];

  const submit = h('button', { type: 'submit', class: 'primary' }, registering ? 'Create account' : 'Sign in');
  const status = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' });
  const form = h('form', { novalidate: true, 'aria-labelledby': 'auth-title' },
    h('div', { class: 'form-error', role: 'alert' }),
    controls,
    h('div', { class: 'actions' }, submit),
    status);

  const other = registering
    ? h('p', {}, 'Already have an account? ', h('a', { href: `#/login${nextQuery}` }, 'Sign in'))
    : h('p', {}, 'New to Weft? ', h('a', { href: `#/register${nextQuery}` }, 'Create an account'));

  main.append(h('section', { class: 'auth card' },
    h('h1', { id: 'auth-title', tabindex: '-1' }, registering ? 'Create account' : 'Sign in'),
    form, other));

  /** The browser-side copy of the server's checks; false when one failed. */
  function validate(values) {
    if (registering) {
      const name = values.name.trim();
      if (!name) return fieldError(form, 'name', 'name is required'), false;
      if ([...name].length > NAME_MAX) return fieldError(form, 'name', `name is longer than ${NAME_MAX} characters`), false;
    }
    const email = values.email.trim();
    if (!email) return fieldError(form, 'email', 'email is required'), false;
    if (registering && !plausibleEmail(email)) return fieldError(form, 'email', `email "${email}" is not a valid address`), false;
    if (utf8Length(email) > EMAIL_MAX_BYTES) return fieldError(form, 'email', `email must be at most ${EMAIL_MAX_BYTES} bytes`), false;
    if (!values.password) return fieldError(form, 'password', 'password is required'), false;
    if (registering && [...values.password].length < PASSWORD_MIN) {
      return fieldError(form, 'password', `password must be at least ${PASSWORD_MIN} characters`), false;
    }
    if (utf8Length(values.password) > PASSWORD_MAX_BYTES) {
      return fieldError(form, 'password', `password must be at most ${PASSWORD_MAX_BYTES} bytes`), false;
    }
    return true;
  }

  function showServerError(err) {
    if (err.status === 401) {
      // "email or password is wrong": about both fields, so the form's box.
      clearErrors(form);
      formBox(form, err.message);
      form.elements.namedItem('password').focus();
    } else if (err.status === 429) {
      // Too many attempts: the server's message says how long to wait.
      clearErrors(form);
      formBox(form, err.message);
    } else {
      showError(form, err);
    }
  }

  let registered = null; // the email an account was made for (a retry then only signs in)
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const values = Object.fromEntries(new FormData(form).entries());
    if (!validate(values)) return;
    const email = values.email.trim();
    submit.disabled = true;
    try {
      if (registering && registered !== email) {
        status.textContent = 'Creating your account…';
        await post('/users/register', { name: values.name.trim(), email, password: values.password }, {});
        registered = email;
      }
      status.textContent = 'Signing in…';
      await post('/users/login', { email, password: values.password }, {});
      await loadSession();
      if (ctx.signal.aborted) return;
      status.textContent = '';
      ctx.navigate(nextPath(ctx.query));
    } catch (err) {
      if (err.name === 'AbortError') return;
      status.textContent = '';
      showServerError(err);
    } finally {
      submit.disabled = false;
    }
  });
}
