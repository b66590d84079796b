"""Accessibility, checked in the browser on every page of the dashboard, at
desktop size (1366x900) and phone size (390x844, touch), in the light and the
dark colour scheme. On each page, with JavaScript run in the page:

1. names: every control, button, link and focusable element the browser
   exposes has a non-empty accessible name (Chromium's own computation of
   the accname algorithm, read from its accessibility tree over CDP: labels,
   aria-label(ledby), content, title, alt), and every <img> has an alt;
2. contrast: every visible element with text of its own (and every filled
   form control, its placeholder too) has a WCAG 2.1 contrast ratio of at
   least 4.5:1 against its effective background (ancestors' background
   colours blended by their alpha; 3:1 for large text: >= 24 px, or >= 18.66
   px bold); disabled controls are exempt (WCAG 1.4.3). SVG text is checked
   against the fill of the shape it is drawn on (a node's <rect>) or else the
   background behind the <svg>;
3. keyboard: Tab from the top of the page reaches the main content's first
   control, every focused element shows a focus indicator (an outline or a
   box-shadow) on a visible box, an outline with 3:1 contrast against what
   is behind it (WCAG 1.4.11), and 20 Tabs move through at least 10
   distinct elements (or all the page has);
4. exactly one <h1>; the skip link is the first Tab stop, and Enter on it
   puts focus in <main> without leaving the page;
5. at phone size, nothing makes the page wider than the screen
   (document.documentElement.scrollWidth <= 390).

Violations are reported with the page, the element and the measured value.
Each (size, scheme) pass visits every page once in one browser context (the
pages are audited once and the tests read the results).

    python3 -m pytest -q Tests/web/test_accessibility.py -x
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from conftest import PHONE, _context, _watch, api, shot, sign_in, wait_until_ended

# Tracing on, so the monitor shows its trace link (to a closed collector).
SERVER_ARGS = ("--trace-viewer-url", "http://traces.example/trace/{traceId}",
               "--otel-endpoint", "http://127.0.0.1:9", "--trace-sampler", "always_on")

PHONE_WIDTH = 390
DESKTOP = {"width": 1366, "height": 900}
TABS = 20          # Tab presses per page
MIN_DISTINCT = 10  # distinct elements those must reach (or all the page has)

# Every route of web/js/app.js (the signed-out ones first).
SIGNED_OUT = [("login", "/login"), ("register", "/register")]
PAGES = [
    ("workflows", "/workflows"), ("overview", "/workflows/{wf}"), ("editor", "/workflows/{wf}/edit"),
    ("new workflow", "/workflows/new"), ("runs", "/workflows/{wf}/runs"), ("run", "/workflows/{wf}/run"),
    ("monitor", "/workflows/{wf}/executions/{execution}"), ("monitor failed", "/workflows/{wf}/executions/{failed}"),
    ("versions", "/workflows/{wf}/versions"), ("version", "/workflows/{wf}/versions/{version}"),
    ("diff", "/workflows/{wf}/versions?a=1&b=2"), ("schedules", "/workflows/{wf}/schedules"),
    ("triggers", "/workflows/{wf}/triggers"), ("notifications", "/workflows/{wf}/notifications"),
    ("collaborators", "/workflows/{wf}/collaborators"), ("stats", "/workflows/{wf}/stats"),
    ("analytics", "/analytics"), ("secrets", "/secrets"), ("organization", "/organization"), ("ops", "/ops"),
]
EDITOR_PAGES = {"editor", "new workflow"}  # still being written by another helper
COMBOS = [("desktop", "light"), ("desktop", "dark"), ("phone", "light"), ("phone", "dark")]

# What a page shows after a click or two (forms opened, a task selected, a
# dialog, errors in a form): each is audited for names, contrast, one h1 and
# width too, from a fresh visit of the page. Steps: ("button", name) clicks a
# button by its accessible name, ("css", selector) clicks an element,
# ("fill", label, text) types into a control; "key" presses a key. A state
# that opens a modal dialog closes it with Escape afterwards.
STATES = {
    "login": [("empty form sent", [("button", "Sign in")])],
    "workflows": [("delete dialog", [("button", "Delete Nightly report")])],
    "overview": [("task selected", [("css", '.dag g.node[data-key="b"]')])],
    "run": [("JSON error", [("fill", "Input (JSON)", '{\n  "n": 1,\n}')])],
    "monitor": [("task selected", [("css", '.dag g.node[data-key="a"]')])],
    "monitor failed": [("failed task selected", [("css", '.dag g.node[data-key="d"]')])],
    "version": [("roll back dialog", [("button", "Roll back to this version")])],
    "schedules": [("add form", [("button", "Add schedule")]), ("backfill form", [("button", "Backfill")])],
    "triggers": [("add form", [("button", "Add trigger")]), ("publish form", [("button", "Publish test event")]),
                 ("how to call it", [("button", "How to call it")])],
    "notifications": [("subscription form", [("button", "Add subscription")]),
                      ("integration form", [("button", "Add integration")]), ("deliveries", [("button", "Deliveries")])],
    "secrets": [("replace dialog", [("button", "Replace value of API_TOKEN")]),
                ("add form errors", [("button", "Add secret")])],
    "stats": [("data tables shown", [("all-buttons", "Show data")])],
    "analytics": [("data tables shown", [("all-buttons", "Show data")])],
}

# Roles whose elements need a name (ARIA: "name required", interactive;
# Chromium's names for date inputs and <summary> too). Any other focusable
# node needs one as well, but for these: a landmark or container focused by
# script (main, a scroll box with tabindex=-1) and the document.
NAMED_ROLES = {
    "button", "link", "textbox", "searchbox", "combobox", "listbox", "checkbox", "radio", "switch", "slider",
    "spinbutton", "menuitem", "menuitemcheckbox", "menuitemradio", "tab", "treeitem", "img", "image", "dialog",
    "Date", "DateTime", "InputTime", "ColorWell", "DisclosureTriangle",
}
UNNAMED_FOCUSABLE_OK = {"RootWebArea", "main", "generic"}


# ----------------------------------------------------------------- data

@pytest.fixture(scope="module")
def data(weft, user):
    """A workflow with three finished runs (one failed), two versions, a
    schedule, a webhook and an event trigger, a subscription, a secret and
    budgets, so every page has something to show."""
    wf = api(user, "POST", "/workflows", {"name": "Nightly report", "description": "Builds the nightly report.", "tasks": [
        {"key": "a", "name": "Start", "action": "log", "config": {"message": "one"}},
        {"key": "b", "name": "Fetch", "action": "log", "config": {"message": "careful", "level": "Warning"}, "dependsOn": ["a"]},
        {"key": "c", "name": "Finish", "action": "noop", "dependsOn": ["b"]},
    ]})
    wid = wf["id"]
    ids = [api(user, "POST", f"/workflows/{wid}/execute", {"input": {"n": i}})["executionId"] for i in range(2)]
    # Version 2 adds a task that fails (nothing listens on port 9): a failed run with an error.
    cur = api(user, "GET", f"/workflows/{wid}")
    cur["tasks"].append({"key": "d", "name": "Upload", "action": "http", "dependsOn": ["c"],
                         "config": {"url": "http://127.0.0.1:9/upload", "method": "POST"}})
    assert api(user, "PUT", f"/workflows/{wid}", cur)["version"] == 2
    failed = api(user, "POST", f"/workflows/{wid}/execute", {"input": {"n": 9}})["executionId"]
    runs = wait_until_ended(user, wid, 3)
    assert {r["executionId"]: r["status"] for r in runs}[failed] == "Failed", runs
    api(user, "POST", f"/workflows/{wid}/schedules", {"cron": "0 * * * *", "timezone": "UTC"})
    api(user, "POST", f"/workflows/{wid}/triggers", {"type": "webhook"})
    api(user, "POST", f"/workflows/{wid}/triggers", {"type": "event", "eventName": "report.requested"})
    api(user, "POST", f"/workflows/{wid}/subscriptions", {"eventType": "completion", "notifyVia": "email",
                                                          "destination": "ops@example.com"})
    org = api(user, "GET", "/orgs")["organizations"][0]["id"]
    api(user, "POST", f"/orgs/{org}/secrets", {"name": "API_TOKEN", "value": "s3cret"})
    # Budgets, so the statistics and analytics pages draw them (and ask no GET that answers 404).
    api(user, "PUT", f"/workflows/{wid}/budget", {"monthlyLimitUsd": 50, "timeZone": "Europe/Berlin"})
    api(user, "PUT", f"/orgs/{org}/budget", {"monthlyLimitUsd": 2000})
    versions = api(user, "GET", f"/workflows/{wid}/versions")["versions"]
    v1 = next(v for v in versions if v["version"] == 1)
    return {"wf": wid, "execution": ids[0], "failed": failed, "version": v1["id"]}


# ----------------------------------------------------------------- in-page checks

# Shared helpers, defined once per document (window.__a11y).
HELPERS = r"""
() => {
  if (window.__a11y) return;
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 1;
  const c2d = canvas.getContext('2d', { willReadFrequently: true });
  /** Any CSS colour -> [r, g, b, a] (0-255, alpha 0-1). */
  function parse(str) {
    str = String(str).trim();
    if (str === 'transparent' || str === 'none' || str === '') return [0, 0, 0, 0];
    let m = /^rgba?\(([^)]+)\)$/.exec(str);
    if (m) {
      const p = m[1].split(/[\s,\/]+/).filter(Boolean).map((x) => x.endsWith('%') ? parseFloat(x) / 100 : parseFloat(x));
      return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
    }
    m = /^color\(srgb ([^)]+)\)$/.exec(str);
    if (m) {
      const p = m[1].split(/[\s\/]+/).filter(Boolean).map((x) => x.endsWith('%') ? parseFloat(x) / 100 : parseFloat(x));
      return [p[0] * 255, p[1] * 255, p[2] * 255, p.length > 3 ? p[3] : 1];
    }
    // oklab(), lab(), named colours, ...: let the canvas convert it.
    c2d.clearRect(0, 0, 1, 1);
    c2d.fillStyle = '#000';
    c2d.fillStyle = str;
    c2d.fillRect(0, 0, 1, 1);
    const d = c2d.getImageData(0, 0, 1, 1).data;
    return [d[0], d[1], d[2], d[3] / 255];
  }
  /** `top` (with its alpha) painted over the opaque `below`. */
  const over = (top, below) => [0, 1, 2].map((i) => top[i] * top[3] + below[i] * (1 - top[3])).concat(1);
  const lum = (c) => {
    const [r, g, b] = c.slice(0, 3).map((v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const hex = (c) => '#' + c.slice(0, 3).map((v) => Math.round(v).toString(16).padStart(2, '0')).join('') + (c[3] < 1 ? `/${c[3].toFixed(2)}` : '');
  function describe(el) {
    if (!el || el.nodeType !== 1) return String(el);
    let s = el.tagName.toLowerCase();
    if (el.id) s += '#' + el.id;
    const cls = el.getAttribute('class');
    if (cls) s += '.' + cls.trim().split(/\s+/).join('.');
    for (const a of ['role', 'name', 'type', 'href', 'aria-label']) if (el.hasAttribute(a)) s += `[${a}="${el.getAttribute(a).slice(0, 40)}"]`;
    const text = (el.textContent || el.value || '').replace(/\s+/g, ' ').trim();
    if (text) s += ` "${text.slice(0, 50)}${text.length > 50 ? '…' : ''}"`;
    return s;
  }
  /** The opaque colour behind `el`: its and its ancestors' backgrounds, blended. */
  function background(el) {
    const layers = [];
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
      const cs = getComputedStyle(e);
      if (cs.backgroundImage && cs.backgroundImage !== 'none') return { unknown: `background-image on ${describe(e)}` };
      const c = parse(cs.backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let color = layers.length && layers[layers.length - 1][3] >= 1 ? layers.pop() : [255, 255, 255, 1];
    while (layers.length) color = over(layers.pop(), color);
    return { color };
  }
  /** Opacity applied to el's rendering by itself and its ancestors. */
  function opacity(el) {
    let o = 1;
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) o *= parseFloat(getComputedStyle(e).opacity);
    return o;
  }
  /** Shown to a sighted user: rendered, not off-screen, not clipped to a pixel. */
  function shown(el) {
    if (el.checkVisibility && !el.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true })) return false;
    const r = el.getBoundingClientRect();
    if (r.width < 2 || r.height < 2) return false;
    if (r.right + scrollX <= 0 || r.bottom + scrollY <= 0) return false;
    for (let e = el.parentElement; e && e !== document.body; e = e.parentElement) {
      const cs = getComputedStyle(e);
      if (cs.overflow !== 'visible' || cs.clip !== 'auto' || cs.clipPath !== 'none') {
        const pr = e.getBoundingClientRect();
        if (pr.width < 2 || pr.height < 2) return false;
      }
    }
    return true;
  }
  const disabled = (el) => !!el.closest(':disabled, [aria-disabled="true"]');
  const large = (cs) => { const px = parseFloat(cs.fontSize); return px >= 24 || (px >= 18.66 && Number(cs.fontWeight) >= 700); };
  const FOCUSABLE = 'a[href], area[href], button, input:not([type=hidden]), select, textarea, summary, iframe, [tabindex], [contenteditable=""], [contenteditable=true]';
  function tabbable() {
    return [...document.querySelectorAll(FOCUSABLE)].filter((el) => el.tabIndex >= 0 && !el.disabled && !el.closest('[inert]') && shownLoose(el));
  }
  // Focusable elements may be clipped (a skip link off-screen until focused): only rendered counts.
  function shownLoose(el) {
    if (el.checkVisibility && !el.checkVisibility({ checkVisibilityCSS: true })) return false;
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  }
  window.__a11y = { parse, over, ratio, hex, describe, background, opacity, shown, disabled, large, tabbable };
}
"""

# Static checks: image alts, contrast (HTML and SVG text), h1 count, page width.
STATIC = r"""
() => {
  const A = window.__a11y;
  const out = { violations: [], skipped: [], checked: 0, svgChecked: 0 };
  const bad = (check, el, value) => out.violations.push({ check, element: A.describe(el), value });

  for (const img of document.querySelectorAll('img')) if (!img.hasAttribute('alt')) bad('name', img, 'img without alt');

  function check(el, fgColor, cs, what) {
    const bg = A.background(el);
    if (bg.unknown) { out.skipped.push(`${A.describe(el)}: ${bg.unknown}`); return; }
    let fg = A.parse(fgColor);
    fg = [fg[0], fg[1], fg[2], fg[3] * A.opacity(el)];
    const shownFg = A.over(fg, bg.color);
    const r = A.ratio(shownFg, bg.color);
    if (!Number.isFinite(r)) { bad('contrast', el, `cannot read the colours ${fgColor} / ${A.hex(bg.color)}`); return; }
    const need = A.large(cs) ? 3 : 4.5;
    out.checked++;
    if (r < need - 0.005) {
      bad('contrast', el, `${what}${r.toFixed(2)}:1 < ${need}:1 (text ${A.hex(fg)} on ${A.hex(bg.color)}, ${cs.fontSize} ${cs.fontWeight})`);
    }
  }

  // HTML text: elements with text nodes of their own.
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode: (n) => (n.data.trim() ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_REJECT),
  });
  const seen = new Set();
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || seen.has(el)) continue;
    seen.add(el);
    if (el.closest('svg, script, style, template, option, noscript, title')) continue;
    if (A.disabled(el) || !A.shown(el)) continue;
    check(el, getComputedStyle(el).color, getComputedStyle(el), '');
  }
  // Form controls: their value, or their placeholder when empty.
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (['hidden', 'checkbox', 'radio', 'range', 'color', 'file', 'image'].includes(el.type)) continue;
    if (A.disabled(el) || !A.shown(el)) continue;
    const cs = getComputedStyle(el);
    if (el.tagName === 'SELECT' || el.value) check(el, cs.color, cs, 'value ');
    else if (el.placeholder) check(el, getComputedStyle(el, '::placeholder').color, cs, 'placeholder ');
  }
  // SVG text: against the fill of the shape it sits on in its group, else what is behind the <svg>.
  const own = (e) => parseFloat(getComputedStyle(e).opacity);
  for (const t of document.querySelectorAll('svg text')) {
    if (!t.textContent.trim() || !A.shown(t) || A.disabled(t)) continue;
    const svg = t.ownerSVGElement;
    const cs = getComputedStyle(t);
    if (cs.fill.startsWith('url(')) { out.skipped.push(`${A.describe(t)}: filled with a pattern`); continue; }
    const shape = [...(t.parentElement?.children || [])].find((c) => c !== t && c.tagName === 'rect'
      && c.compareDocumentPosition(t) & Node.DOCUMENT_POSITION_FOLLOWING);
    let fill = null;
    if (shape) {
      const scs = getComputedStyle(shape);
      if (scs.fill.startsWith('url(')) { out.skipped.push(`${A.describe(t)}: its shape is filled with a pattern`); continue; }
      const f = A.parse(scs.fill);
      fill = [f[0], f[1], f[2], f[3] * parseFloat(scs.fillOpacity) * own(shape)];
    }
    const group = A.opacity(t.parentElement);  // fades the text and its shape alike
    let base = null;
    if (!fill || fill[3] < 1 || group < 1) {
      const b = A.background(svg.parentElement || svg);
      if (b.unknown) { out.skipped.push(`${A.describe(t)}: ${b.unknown}`); continue; }
      base = b.color;
    }
    let under = fill ? (fill[3] >= 1 ? fill : A.over(fill, base)) : base;
    const f = A.parse(cs.fill);
    const fg = [f[0], f[1], f[2], f[3] * parseFloat(cs.fillOpacity) * own(t)];
    let text = A.over(fg, under);
    if (group < 1) { text = A.over([...text.slice(0, 3), group], base); under = A.over([...under.slice(0, 3), group], base); }
    const r = A.ratio(text, under);
    if (!Number.isFinite(r)) { bad('contrast', t, `cannot read the colours ${cs.fill} / ${A.hex(under)}`); continue; }
    const need = A.large(cs) ? 3 : 4.5;
    out.svgChecked++;
    if (r < need - 0.005) bad('contrast', t, `svg text ${r.toFixed(2)}:1 < ${need}:1 (fill ${A.hex(fg)} on ${A.hex(under)}, ${cs.fontSize} ${cs.fontWeight})`);
  }

  const h1s = [...document.querySelectorAll('h1')].filter((h) => !h.closest('[hidden]') && (!h.checkVisibility || h.checkVisibility()));
  if (h1s.length !== 1) out.violations.push({ check: 'h1', element: h1s.map(A.describe).join(', ') || '(none)', value: `${h1s.length} h1 elements` });
  out.scrollWidth = document.documentElement.scrollWidth;
  if (out.scrollWidth > innerWidth) {
    // The widest offenders: elements reaching past the right edge, outermost first.
    const wide = [...document.body.querySelectorAll('*')].filter((e) => {
      const r = e.getBoundingClientRect();
      return r.right + scrollX > innerWidth + 0.5 && A.shown(e);
    });
    const outer = wide.filter((e) => !wide.includes(e.parentElement)).slice(0, 3);
    out.wide = outer.map((e) => `${A.describe(e)} (right edge ${Math.round(e.getBoundingClientRect().right + scrollX)} px)`);
  }
  return out;
}
"""

# Where focus is now, and whether it shows.
FOCUS_FN = r"""
function __a11yFocus() {
  const A = window.__a11y;
  const el = document.activeElement;
  window.__a11yIds ||= new WeakMap();
  if (!el || el === document.body || el === document.documentElement) return { id: 0, body: true };
  if (!window.__a11yIds.has(el)) window.__a11yIds.set(el, (window.__a11ySeq = (window.__a11ySeq || 0) + 1));
  const cs = getComputedStyle(el);
  const outline = cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) > 0 && A.parse(cs.outlineColor)[3] > 0;
  const shadow = cs.boxShadow && cs.boxShadow !== 'none';
  // Focus on the calendar button inside a date/time input (a part of the browser's own control,
  // which it rings itself): the input is the active element but does not match :focus.
  const picker = el.matches('input[type=date], input[type=time], input[type=datetime-local], input[type=month], input[type=week]') && !el.matches(':focus');
  const r = el.getBoundingClientRect();
  const main = document.getElementById('main');
  // An outline is drawn around the element (outline-offset): against what is behind it.
  let ring = null;
  if (outline) {
    const bg = A.background(el.parentElement || el);
    if (!bg.unknown) {
      const c = A.parse(cs.outlineColor);
      ring = { ratio: A.ratio(A.over(c, bg.color), bg.color), color: A.hex(c), bg: A.hex(bg.color) };
    }
  }
  return {
    id: window.__a11yIds.get(el), desc: A.describe(el), inMain: main.contains(el) && el !== main, isMain: el === main,
    indicator: outline ? `outline ${cs.outlineStyle} ${cs.outlineWidth}` : shadow ? `box-shadow ${cs.boxShadow}` : picker ? 'the browser ring on its picker button' : '',
    boxShown: r.width >= 2 && r.height >= 2 && r.right > 0 && r.bottom > 0 && r.left < innerWidth,
    skip: el.classList.contains('skip'), text: (el.textContent || '').trim(), ring,
  };
}
"""
FOCUS = f"() => ({FOCUS_FN})()"

# Records where each focus move lands (read back with TAB_LOG_READ), so a
# run of Tabs costs no round trip per Tab.
TAB_LOG_START = f"""
() => {{
  const describe = {FOCUS_FN};
  window.__a11yLog = [];
  window.__a11yListener ||= () => window.__a11yLog.push(describe());
  document.addEventListener('focusin', window.__a11yListener, true);
}}
"""
TAB_LOG_READ = """
() => { document.removeEventListener('focusin', window.__a11yListener, true); return window.__a11yLog; }
"""

# Puts the sequential focus navigation starting point at the top of the
# document: the next Tab goes to the first tabbable element.
TO_TOP = r"""
() => {
  document.activeElement?.blur?.();
  scrollTo(0, 0);
  const html = document.documentElement;
  html.tabIndex = -1;
  html.focus({ preventScroll: true });
  html.removeAttribute('tabindex');
  const A = window.__a11y;
  const all = A.tabbable();
  const main = document.getElementById('main');
  const first = all.find((e) => main.contains(e) && e !== main);
  return { count: all.length, first: first ? A.describe(first) : null };
}
"""

# Resolves when the DOM has been still for 120 ms (late rows, charts drawn on
# resize), or after 3 s.
SETTLE = r"""
() => new Promise((resolve) => {
  let t = setTimeout(done, 120);
  const mo = new MutationObserver(() => { clearTimeout(t); t = setTimeout(done, 120); });
  const cap = setTimeout(done, 3000);
  mo.observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
  function done() { mo.disconnect(); clearTimeout(cap); clearTimeout(t); requestAnimationFrame(() => resolve()); }
})
"""

TWO_FRAMES = "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 0))))"

DESCRIBE_NODE = "function () { return window.__a11y ? window.__a11y.describe(this) : this.outerHTML.slice(0, 120); }"


@dataclass
class Audit:
    size: str
    scheme: str
    violations: list = field(default_factory=list)   # dicts: page, check, element, value
    skipped: list = field(default_factory=list)
    checked: dict = field(default_factory=dict)      # page -> counts

    def of(self, pages=None, exclude=()):
        return [v for v in self.violations if (pages is None or v["page"] in pages) and v["page"] not in exclude]


def report(vs) -> str:
    return "\n".join(f"  [{v['page']}] {v['check']}: {v['element']} — {v['value']}" for v in vs)


def unnamed(cdp) -> list[str]:
    """Elements the browser exposes with a role that needs a name, without one."""
    cdp.send("DOM.getDocument", {"depth": 0})
    nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
    out = []
    for n in nodes:
        if n.get("ignored"):
            continue
        role = (n.get("role") or {}).get("value", "")
        name = str((n.get("name") or {}).get("value", "")).strip()
        focusable = any(p["name"] == "focusable" and p["value"].get("value") for p in n.get("properties", []))
        needs = role in NAMED_ROLES or (focusable and role not in UNNAMED_FOCUSABLE_OK)
        if not needs or name or "backendDOMNodeId" not in n:
            continue
        try:
            obj = cdp.send("DOM.resolveNode", {"backendNodeId": n["backendDOMNodeId"]})["object"]
            desc = cdp.send("Runtime.callFunctionOn", {"functionDeclaration": DESCRIBE_NODE, "objectId": obj["objectId"],
                                                       "returnByValue": True})["result"]["value"]
        except Exception as exc:  # noqa: BLE001 - a node gone meanwhile
            desc = f"(node {n['backendDOMNodeId']}: {exc})"
        out.append(f"{desc} (role {role})")
    return out


def static_checks(page, cdp, audit: Audit, name: str, phone: bool, screenshot: str | None = None):
    """Checks 1, 2, 4 (one h1) and 5 on what the page shows now."""
    add = lambda check, element, value: audit.violations.append(  # noqa: E731
        {"page": name, "check": check, "element": element, "value": value})
    page.evaluate(HELPERS)
    page.evaluate(SETTLE)

    # 1. names (the browser's accessible-name computation)
    for desc in unnamed(cdp):
        add("name", desc, "no accessible name")
    # 1 (img alt), 2 (contrast), 4 (h1), 5 (width)
    res = page.evaluate(STATIC)
    for v in res["violations"]:
        add(v["check"], v["element"], v["value"])
    audit.skipped += [f"[{name}] {s}" for s in res["skipped"]]
    audit.checked[name] = {"text": res["checked"], "svg text": res["svgChecked"]}
    if phone and res["scrollWidth"] > PHONE_WIDTH:
        add("width", "; ".join(res.get("wide") or ["document"]), f"scrollWidth {res['scrollWidth']} > {PHONE_WIDTH}")
    # Screenshots in the dark scheme (the area tests take the light ones), and of anything found.
    if screenshot or any(v["page"] == name for v in audit.violations):
        shot(page, screenshot or f"a11y-{audit.size}-{audit.scheme}-{name.replace(' ', '-').replace(':', '')}")


def audit_page(page, cdp, audit: Audit, name: str, path: str, phone: bool, screenshot: str | None = None):
    add = lambda check, element, value: audit.violations.append(  # noqa: E731
        {"page": name, "check": check, "element": element, "value": value})
    static_checks(page, cdp, audit, name, phone, screenshot)

    # 3. keyboard: from the top, Tab by Tab
    top = page.evaluate(TO_TOP)
    page.evaluate(TAB_LOG_START)
    for _ in range(TABS):
        page.keyboard.press("Tab")
    seen, reached_main, order = set(), None, []
    for i, f in enumerate(page.evaluate(TAB_LOG_READ)):
        if f.get("body"):
            continue
        order.append(f["desc"])
        seen.add(f["id"])
        if not f["indicator"]:
            add("focus", f["desc"], f"no focus indicator at focus move {i + 1} (outline none, no box-shadow)")
        elif not f["boxShown"]:
            add("focus", f["desc"], f"focused at focus move {i + 1} but not on screen")
        elif f["ring"] and f["ring"]["ratio"] < 3 - 0.005:  # WCAG 1.4.11: 3:1 for a state's indicator
            ring = f["ring"]
            add("focus", f["desc"], f"focus outline {ring['ratio']:.2f}:1 < 3:1 ({ring['color']} on {ring['bg']})")
        if reached_main is None and f["inMain"]:
            reached_main = f
            if top["first"] and f["desc"] != top["first"]:
                add("keyboard", f["desc"], f"first Tab stop in main; expected the first control {top['first']}")
    if top["first"] and reached_main is None:
        add("keyboard", top["first"], f"not reached by {TABS} Tabs from the top (went: {' → '.join(order[:12])})")
    need = min(MIN_DISTINCT, top["count"])
    if len(seen) < need:
        add("keyboard", order[-1] if order else "(nothing)", f"{TABS} Tabs reached {len(seen)} distinct elements of {top['count']} (stuck?)")

    # 4. skip link: the first Tab stop; Enter moves focus into main and stays on the page.
    page.evaluate(TO_TOP)
    page.keyboard.press("Tab")
    f = page.evaluate(FOCUS)
    if not f.get("skip") or f.get("text") != "Skip to content":
        add("skip link", f.get("desc", "(body)"), "first Tab stop is not the “Skip to content” link")
        return
    if not f["boxShown"]:
        add("skip link", f["desc"], "focused but not visible")
    before = page.evaluate("() => [location.hash, document.querySelector('h1')?.textContent]")
    page.keyboard.press("Enter")
    page.evaluate(TWO_FRAMES)
    f = page.evaluate(FOCUS)
    after = page.evaluate("() => [location.hash, document.querySelector('h1')?.textContent]")
    if not (f.get("inMain") or f.get("isMain")):
        add("skip link", f.get("desc", "(body)"), "Enter on the skip link did not put focus in main")
    if after != before:
        add("skip link", "a.skip", f"Enter on the skip link left the page: {before} → {after}")


def visit(page, path: str):
    """An in-app navigation (a hash change), waiting until the page is drawn with its data."""
    # Already there (a state's fresh visit): step aside without an event, so the goto is a change.
    page.evaluate("""(target) => {
        delete document.getElementById('main').dataset.ready;
        if (location.hash === target) history.replaceState(null, '', '#/a11y-elsewhere');
    }""", f"#{path}")
    page.goto(f"/#{path}")
    ready = path.split("?", 1)[0]
    page.wait_for_selector(f'main[data-ready="{ready}"]', timeout=15_000)


def act(page, steps):
    for step in steps:
        kind, *args = step
        if kind == "button":
            page.get_by_role("button", name=args[0], exact=True).first.click()
        elif kind == "all-buttons":
            buttons = page.get_by_role("button", name=args[0], exact=True)
            n = buttons.count()
            assert n > 0, f"no {args[0]!r} button"
            for _ in range(n):  # each click renames its button ("Hide data")
                buttons.first.click()
            assert buttons.count() == 0
        elif kind == "css":
            page.locator(args[0]).first.click()
        elif kind == "fill":
            page.get_by_label(args[0], exact=True).fill(args[1])
        elif kind == "key":
            page.keyboard.press(args[0])


def run_audit(browser, weft, user, data, size: str, scheme: str) -> Audit:
    audit = Audit(size, scheme)
    kw = dict(PHONE) if size == "phone" else {"viewport": DESKTOP}
    ctx = _context(browser, weft, color_scheme=scheme, **kw)
    try:
        page = _watch(ctx.new_page())
        cdp = ctx.new_cdp_session(page)
        cdp.send("Accessibility.enable")
        page.goto("/#/login")
        page.wait_for_selector('main[data-ready="/login"]', timeout=15_000)
        pages = [(n, p, False) for n, p in SIGNED_OUT] + [(n, p.format(**data), True) for n, p in PAGES]
        signed_in = False
        for name, path, needs_session in pages:
            if needs_session and not signed_in:
                sign_in(page, user)
                signed_in = True
            visit(page, path)
            stem = f"a11y-{size}-{scheme}-{name.replace(' ', '-')}"
            audit_page(page, cdp, audit, name, path, size == "phone", screenshot=stem if scheme == "dark" else None)
            for state, steps in STATES.get(name, []):
                visit(page, path)
                act(page, steps)
                static_checks(page, cdp, audit, f"{name}: {state}", size == "phone",
                              screenshot=f"{stem}-{state.replace(' ', '-')}" if scheme == "dark" else None)
                if page.locator("dialog[open]").count():
                    page.keyboard.press("Escape")
                    page.locator("dialog[open]").wait_for(state="detached")
            for e in page.console_errors:
                audit.violations.append({"page": name, "check": "console", "element": "-", "value": e})
            page.console_errors.clear()
    finally:
        ctx.close()
    return audit


@pytest.fixture(scope="module")
def audits(browser, weft, user, data):
    cache = {}

    def get(size, scheme):
        if (size, scheme) not in cache:
            cache[(size, scheme)] = run_audit(browser, weft, user, data, size, scheme)
        return cache[(size, scheme)]
    return get


@pytest.mark.parametrize("size,scheme", COMBOS)
def test_pages(audits, size, scheme):
    """Every finished page passes every check."""
    a = audits(size, scheme)
    assert len(a.checked) == len(SIGNED_OUT) + len(PAGES) + sum(map(len, STATES.values())), sorted(a.checked)
    assert all(c["text"] > 0 for c in a.checked.values()), a.checked
    text = sum(c["text"] for c in a.checked.values())
    svg = sum(c["svg text"] for c in a.checked.values())
    print(f"\n{size}, {scheme}: {len(a.checked)} pages and states, {text} text elements and {svg} SVG texts measured; "
          f"{len(a.skipped)} not measurable" + "".join(f"\n  skipped {x}" for x in a.skipped[:10]))
    found = [v for v in a.of(exclude=EDITOR_PAGES) if v["check"] != "skip link"]
    assert not found, f"{size}, {scheme}: {len(found)} accessibility violations:\n{report(found)}"


@pytest.mark.parametrize("size,scheme", COMBOS)
def test_editor_pages(audits, size, scheme):
    """The editor (#/workflows/new, …/edit) passes every check."""
    found = [v for v in audits(size, scheme).of(pages=EDITOR_PAGES) if v["check"] != "skip link"]
    assert not found, f"{size}, {scheme}: {len(found)} accessibility violations:\n{report(found)}"


@pytest.mark.parametrize("size,scheme", COMBOS)
def test_skip_link(audits, size, scheme):
    """On every page: the first Tab stop is “Skip to content”, and Enter on it
    puts focus in main and stays on the page."""
    found = [v for v in audits(size, scheme).violations if v["check"] == "skip link"]
    assert not found, f"{size}, {scheme}: {len(found)} skip link violations:\n{report(found)}"


FAULTS = r"""
() => {
  const main = document.getElementById('main');
  const el = (tag, props = {}, style = {}, text) => {
    const e = tag === 'svg' || tag === 'rect' || tag === 'text' ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(props)) e.setAttribute(k, v);
    Object.assign(e.style, style);
    if (text) e.textContent = text;
    return e;
  };
  const box = el('div', { id: 'faults' }, { background: '#ffffff', color: '#16191f', padding: '8px' });
  const svg = el('svg', { width: '200', height: '40' });
  svg.append(el('rect', { width: '200', height: '40', fill: '#ffffff' }), el('text', { x: '4', y: '24', fill: '#aaaaaa', id: 'fault-svg' }, {}, 'pale svg'));
  box.append(
    el('a', { href: '#/secrets', id: 'fault-no-ring' }, { outline: 'none', boxShadow: 'none' }, 'no ring'),
    el('a', { href: '#/secrets', id: 'fault-pale-ring' }, { outline: '3px solid #eeeeee' }, 'pale ring'),
    el('button', { type: 'button', id: 'fault-empty' }),
    el('input', { id: 'fault-unlabelled' }),
    el('img', { src: '/icons/icon.svg', width: '16', height: '16', id: 'fault-img' }),
    el('p', { id: 'fault-pale' }, { color: '#999999' }, 'pale text 2.85:1'),
    el('p', { id: 'fault-large-ok' }, { color: '#949494', fontSize: '24px' }, 'large text 3.03:1'),
    el('button', { type: 'button', id: 'fault-disabled', disabled: '' }, { color: '#dddddd' }, 'disabled'),
    el('p', { id: 'fault-half' }, { color: 'rgba(22, 25, 31, 0.3)' }, 'translucent text'),
    svg,
    el('h1', { id: 'fault-h1' }, {}, 'A second heading'),
    el('div', { id: 'fault-wide' }, { width: '2000px', height: '4px' }));
  main.prepend(box);
  // A skip link without app.js's handler: its #main becomes a route ("Not found").
  const skip = document.querySelector('a.skip');
  skip.replaceWith(skip.cloneNode(true));
}
"""


def test_checks_catch_known_faults(browser, weft, user):
    """The checks themselves: a page with planted faults is flagged for each
    of them (and not for the large text or the disabled button WCAG allows)."""
    ctx = _context(browser, weft, viewport=DESKTOP, color_scheme="light")
    try:
        page = _watch(ctx.new_page())
        cdp = ctx.new_cdp_session(page)
        cdp.send("Accessibility.enable")
        sign_in(page, user)
        visit(page, "/secrets")
        page.evaluate(FAULTS)
        a = Audit("desktop", "light")
        audit_page(page, cdp, a, "faults", "/secrets", phone=True, screenshot="a11y-faults")
        assert not page.console_errors, page.console_errors
    finally:
        ctx.close()
    found = report(a.violations)
    for check, needle in [("name", "button#fault-empty"), ("name", "input#fault-unlabelled"), ("name", "img#fault-img"),
                          ("contrast", "p#fault-pale"), ("contrast", "p#fault-half"), ("contrast", "text#fault-svg"),
                          ("focus", "a#fault-no-ring"), ("focus", "a#fault-pale-ring"), ("h1", "h1#fault-h1"), ("width", "div#fault-wide"),
                          ("skip link", "a.skip")]:
        assert any(v["check"] == check and needle in v["element"] for v in a.violations), f"{check} {needle} not flagged:\n{found}"
    for needle in ("fault-large-ok", "fault-disabled"):
        assert not any(needle in v["element"] for v in a.violations), f"{needle} flagged:\n{found}"
    pale = next(v for v in a.violations if "fault-pale" in v["element"])
    assert "2.85:1" in pale["value"], pale
