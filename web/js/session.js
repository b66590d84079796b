// Who is signed in, their organizations and the one the dashboard works in.
import { get, post } from './api.js';

export const session = {
  user: null,          // GET /users/me
  orgs: [],            // GET /orgs (organizations)
  orgId: null,         // the selected organization (kept in localStorage: not a secret)
};

const bus = new EventTarget();
/** 'change' fires when the user or the selected organization changes. */
export const onSession = (fn) => { bus.addEventListener('change', fn); return () => bus.removeEventListener('change', fn); };

export async function loadSession() {
  session.user = await get('/users/me');
  const orgs = await get('/orgs').catch(() => ({ organizations: [] }));
  session.orgs = orgs?.organizations || [];
  const saved = localStorage.getItem('weft.org');
  session.orgId = session.orgs.some((o) => o.id === saved) ? saved : session.orgs[0]?.id || null;
  bus.dispatchEvent(new Event('change'));
  return session;
}

export function selectOrg(orgId) {
  session.orgId = orgId;
  localStorage.setItem('weft.org', orgId);
  bus.dispatchEvent(new Event('change'));
}

export function currentOrg() { return session.orgs.find((o) => o.id === session.orgId) || null; }

/** Ends the session on the server (which clears the cookies). */
export async function signOut() {
  try { await post('/users/logout', {}); } catch { /* already gone */ }
  session.user = null;
  session.orgs = [];
  bus.dispatchEvent(new Event('change'));
}

/** The operator's trace viewer URL template (`{traceId}`), from the page's meta tag. */
export function traceUrl(traceId) {
  const template = document.querySelector('meta[name="weft-trace-url"]')?.content;
  return template && traceId ? template.replace('{traceId}', encodeURIComponent(traceId)) : null;
}
