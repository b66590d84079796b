// The header every page about one workflow shares: its name, role, a Run
// button and the tabs between its pages.
import { get } from './api.js';
import { h } from './ui.js';

export const TABS = [
  ['', 'Overview'], ['/edit', 'Editor'], ['/runs', 'Runs'], ['/versions', 'Versions'], ['/schedules', 'Schedules'],
  ['/triggers', 'Triggers'], ['/notifications', 'Notifications'], ['/collaborators', 'Collaborators'], ['/stats', 'Statistics'],
];

/** GET /workflows/{id} */
export const loadWorkflow = (id, signal) => get(`/workflows/${encodeURIComponent(id)}`, { signal });

/**
 * workflow: the Workflow JSON; active: the tab's suffix ('', '/edit', '/runs', ...).
 * extra: nodes placed with the Run button.
 */
export function workflowHeader(workflow, active, ...extra) {
  const base = `#/workflows/${encodeURIComponent(workflow.id)}`;
  const tabs = h('nav', { class: 'tabs', 'aria-label': 'Workflow' },
    TABS.map(([suffix, label]) => h('a', { href: base + suffix, 'aria-current': suffix === active ? 'page' : undefined }, label)));
  // On a phone the tabs scroll sideways: bring the current one into view.
  requestAnimationFrame(() => scrollTabIntoView(tabs));
  return h('div', { class: 'wf-header' },
    h('div', { class: 'page-header' },
      h('div', {},
        h('h1', { tabindex: '-1' }, workflow.name),
        h('div', { class: 'muted' }, `version ${workflow.version ?? 1}`, workflow.role ? ` · you are ${workflow.role}` : '')),
      h('div', { class: 'actions' }, extra,
        // Viewers cannot run it (the server answers 403).
        workflow.role === 'viewer' ? null : h('a', { class: 'button primary', href: `${base}/run` }, 'Run'))),
    tabs);
}

/** Scrolls a sideways-scrolling bar so its aria-current link is visible (no vertical scroll). */
export function scrollTabIntoView(bar) {
  const a = bar?.querySelector('[aria-current="page"]');
  if (!a || bar.scrollWidth <= bar.clientWidth) return;
  const left = a.offsetLeft - bar.offsetLeft, right = left + a.offsetWidth;
  if (left < bar.scrollLeft) bar.scrollLeft = left;
  else if (right > bar.scrollLeft + bar.clientWidth) bar.scrollLeft = right - bar.clientWidth;
}
