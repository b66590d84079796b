// The dashboard's shell: top bar (navigation, organization switcher, user
// menu), the route table, and page switching. Pages live in js/pages/ and
// are loaded on first visit, so the first load stays small.
import { onSignedOut, cookie } from './api.js';
import { route, parse, navigate } from './router.js';
import { session, loadSession, onSession, selectOrg, signOut } from './session.js';
import { h, clear, toast } from './ui.js';

const page = (name) => () => import(`./pages/${name}.js`);

route('/login', page('login'), { public: true, title: 'Sign in' });
route('/register', page('login'), { public: true, title: 'Create account' });
route('/', page('workflows'), { title: 'Workflows' });
route('/workflows', page('workflows'), { title: 'Workflows' });
route('/workflows/new', page('editor'), { title: 'New workflow' });
route('/workflows/:id', page('workflow'), { title: 'Workflow' });
route('/workflows/:id/edit', page('editor'), { title: 'Edit workflow' });
route('/workflows/:id/runs', page('runs'), { title: 'Runs' });
route('/workflows/:id/run', page('run'), { title: 'Run' });
route('/workflows/:id/executions/:executionId', page('monitor'), { title: 'Execution' });
route('/workflows/:id/versions', page('versions'), { title: 'Versions' });
route('/workflows/:id/versions/:versionId', page('versions'), { title: 'Version' });
route('/workflows/:id/schedules', page('schedules'), { title: 'Schedules' });
route('/workflows/:id/triggers', page('triggers'), { title: 'Triggers' });
route('/workflows/:id/notifications', page('notifications'), { title: 'Notifications' });
route('/workflows/:id/collaborators', page('collaborators'), { title: 'Collaborators' });
route('/workflows/:id/stats', page('stats'), { title: 'Statistics' });
route('/analytics', page('analytics'), { title: 'Analytics' });
route('/secrets', page('secrets'), { title: 'Secrets' });
route('/organization', page('organization'), { title: 'Organization' });
route('/ops', page('ops'), { title: 'Operations' });

const main = document.getElementById('main');
// The skip link's `#main` is not a route: move focus there, keep the hash.
document.querySelector('a.skip')?.addEventListener('click', (e) => { e.preventDefault(); main.focus(); main.scrollIntoView(); });
let current = null; // { abort: AbortController, cleanup }

function leave() {
  if (!current) return;
  current.abort.abort();
  try { current.cleanup?.(); } catch (e) { console.warn(e); }
  current = null;
}

async function show() {
  const started = performance.now();
  const match = parse();
  leave();
  const abort = new AbortController();
  current = { abort, cleanup: null };
  if (!match.route) {
    clear(main).append(h('h1', { tabindex: '-1' }, 'Not found'), h('p', {}, 'No page at ', h('code', {}, match.path), '. ', h('a', { href: '#/workflows' }, 'Go to workflows')));
    return;
  }
  if (!match.route.public && !session.user) {
    // Without the readable CSRF cookie there is no session: go straight to
    // the sign-in page (no request that can only answer 401).
    try { if (!cookie('weft_csrf')) throw new Error('signed out'); await loadSession(); } catch {
      navigate(`/login?next=${encodeURIComponent(match.path)}`, { replace: true });
      return;
    }
  }
  if (abort.signal.aborted) return;
  document.title = `${match.route.title || 'Weft'} · Weft`;
  renderTopBar();
  markNav(match.path);
  delete main.dataset.ready;
  clear(main).append(h('p', { class: 'loading', role: 'status' }, 'Loading…'));
  try {
    const module = await match.route.load();
    if (abort.signal.aborted) return;
    clear(main);
    const ctx = { params: match.params, query: match.query, path: match.path, signal: abort.signal, navigate };
    current.cleanup = (await module.render(main, ctx)) || null;
    // Focus the heading so keyboard and screen-reader users start at the page.
    if (!abort.signal.aborted) main.querySelector('h1')?.focus({ preventScroll: true });
    // The page is drawn with its data: the browser tests read these
    // measures (time to interactive per page; the first one counts from
    // the navigation's start).
    if (!abort.signal.aborted) {
      performance.measure(`weft:ready ${match.route.pattern}`, { start: started, end: performance.now() });
      main.dataset.ready = match.path;
    }
  } catch (e) {
    if (e.name === 'AbortError' || abort.signal.aborted) return;
    console.warn(e);
    clear(main).append(h('h1', { tabindex: '-1' }, 'Something went wrong'), h('p', { class: 'form-error', role: 'alert' }, e.message || String(e)));
  }
}

function markNav(path) {
  document.querySelectorAll('#nav a').forEach((a) => {
    const target = a.getAttribute('href').slice(1);
    const active = path === target || (target !== '/' && path.startsWith(target + '/')) || (target === '/workflows' && path === '/');
    if (active) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  });
  // On a phone the bar scrolls sideways: keep the current page's link in view.
  const nav = document.getElementById('nav');
  const a = nav.querySelector('a[aria-current=page]');
  if (a && nav.scrollWidth > nav.clientWidth) {
    const left = a.offsetLeft - nav.offsetLeft, right = left + a.offsetWidth;
    if (left < nav.scrollLeft) nav.scrollLeft = left;
    else if (right > nav.scrollLeft + nav.clientWidth) nav.scrollLeft = right - nav.clientWidth;
  }
}

function renderTopBar() {
  const bar = document.getElementById('session');
  clear(bar);
  if (!session.user) return;
  if (session.orgs.length) {
    const select = h('select', { id: 'org-switcher', 'aria-label': 'Organization', onChange: (e) => { selectOrg(e.target.value); show(); } },
      session.orgs.map((o) => h('option', { value: o.id, selected: o.id === session.orgId }, o.name)));
    bar.append(select);
  }
  bar.append(
    h('span', { class: 'who', title: session.user.email }, session.user.name || session.user.email),
    h('button', { type: 'button', id: 'sign-out', class: 'link', onClick: async () => { await signOut(); navigate('/login'); } }, 'Sign out'));
}

onSignedOut(() => {
  if (parse().route?.public) return;
  session.user = null;
  toast('Your session has ended; sign in again.', 'error');
  navigate(`/login?next=${encodeURIComponent(parse().path)}`, { replace: true });
});
onSession(renderTopBar);
window.addEventListener('hashchange', show);
window.addEventListener('popstate', show);
window.addEventListener('weft:navigate', show);

// Shortcut: `g w` workflows, `g a` analytics, `g o` operations, `/` focuses a page's search box.
let pendingG = false;
document.addEventListener('keydown', (e) => {
  const t = e.target;
  if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement || t?.isContentEditable) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === '/' ) { const q = main.querySelector('input[type=search]'); if (q) { e.preventDefault(); q.focus(); } return; }
  if (pendingG) {
    pendingG = false;
    const to = { w: '/workflows', a: '/analytics', o: '/ops', s: '/secrets' }[e.key];
    if (to) { e.preventDefault(); navigate(to); }
    return;
  }
  if (e.key === 'g') { pendingG = true; setTimeout(() => { pendingG = false; }, 1000); }
});

show();
