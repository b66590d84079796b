// Hash routes (`#/workflows/wf_1/runs`): the REST API owns the server's
// paths, the dashboard only `/` and its files. Each page module is loaded
// when first visited and exports `render(main, ctx)`, which may return a
// cleanup function; ctx.signal aborts when the page is left.

const routes = [];

/** pattern: '/workflows/:id/runs'; load: () => import('./pages/x.js'); opts.public: no sign-in needed. */
export function route(pattern, load, opts = {}) {
  const names = [];
  const re = new RegExp('^' + pattern.replace(/:([a-zA-Z]+)/g, (_, n) => { names.push(n); return '([^/]+)'; }) + '/?$');
  routes.push({ pattern, re, names, load, public: !!opts.public, title: opts.title });
}

export function parse(hash = location.hash) {
  const raw = hash.replace(/^#/, '') || '/';
  const q = raw.indexOf('?');
  const path = q >= 0 ? raw.slice(0, q) : raw;
  const query = Object.fromEntries(new URLSearchParams(q >= 0 ? raw.slice(q + 1) : ''));
  for (const r of routes) {
    const m = r.re.exec(path);
    if (m) {
      const params = {};
      r.names.forEach((n, i) => { params[n] = decodeURIComponent(m[i + 1]); });
      return { route: r, params, query, path };
    }
  }
  return { route: null, params: {}, query, path };
}

export function navigate(path, { replace = false } = {}) {
  const target = '#' + path;
  if (replace) history.replaceState(null, '', target); else if (location.hash !== target) history.pushState(null, '', target);
  window.dispatchEvent(new Event('weft:navigate'));
}

/** Builds a hash link for an <a href>. */
export const link = (path) => '#' + path;
