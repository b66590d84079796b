// The editor's SVG canvas: tasks as nodes, dependencies as edges.
// Rendering is a keyed diff against the model (sync), never a rebuild; a
// drag touches only the moved node's transform and its incident edges,
// once per animation frame (edges are indexed by node). Pointer events with
// pointer capture, so mouse, pen and touch behave the same.
//
// The page passes callbacks: select(sel), edit(uid), move(uid, x, y),
// connect(fromUid, toUid) -> true if the edge was made, status(text),
// zoomed(z).

import { s, clear } from '../ui.js';
import { NODE_W, NODE_H, edgePath, defs, clip } from '../dag.js';
import { typeLabel } from './rules.js';

const MIN_ZOOM = 0.25, MAX_ZOOM = 2;
const MARGIN = 360;       // room to drag into beyond the last node
const STEP = 16;          // arrow-key move
const PORT_Y = NODE_H / 2;

export function createCanvas(model, on) {
  const nodes = new Map();     // uid -> {g, title, sub, warn, x, y, t, st}
  const edges = new Map();     // "from>to" -> {g, hit, vis, from, to}
  const incident = new Map();  // uid -> Set of edge records
  let zoom = 1;
  let world = { w: 0, h: 0 };
  let selection = null;        // {task: uid} | {edge: [from, to]} | null
  let problems = new Map();    // uid -> [messages]
  let connectFrom = null;      // keyboard (or click) connect mode: the source uid
  let drag = null;

  const edgeLayer = s('g', { class: 'edges' });
  const nodeLayer = s('g', { class: 'nodes' });
  const temp = s('path', { class: 'ed-temp-edge', 'marker-end': 'url(#ed-arrow)' });
  temp.style.display = 'none';
  const bg = s('rect', { class: 'ed-bg', x: 0, y: 0 });
  const svg = s('svg', {
    class: 'dag ed-svg', role: 'group',
    'aria-label': 'Workflow graph. Tab to a task; arrow keys move it, C connects it, Delete removes it, Enter edits it. ? lists every shortcut.',
  }, defs('ed-arrow'), bg, edgeLayer, temp, nodeLayer);
  // Two lines: one is clipped on a phone-wide canvas.
  const empty = s('text', { class: 'ed-empty', x: 24, y: 40 },
    s('tspan', { x: 24 }, 'Add a task: drag one from the palette here,'), s('tspan', { x: 24, dy: '1.4em' }, 'or use its buttons.'));
  svg.append(empty);
  const el = document.createElement('div');
  el.className = 'ed-canvas';
  el.setAttribute('role', 'region');
  el.setAttribute('aria-label', 'Workflow canvas');
  el.append(svg);

  // ---- rendering ----

  function nodeLabel(t) {
    const p = problems.get(t.uid);
    return `${t.name || t.key}, ${typeLabel(t.action)} task, key ${t.key}${p ? `, ${p.length} problem${p.length > 1 ? 's' : ''}` : ''}`;
  }

  function makeNode(t) {
    const title = s('text', { x: 12, y: 21, class: 'node-title' });
    const sub = s('text', { x: 12, y: 39, class: 'node-sub' });
    const warn = s('text', { x: NODE_W - 10, y: 21, class: 'ed-warn', 'text-anchor': 'end', 'aria-hidden': 'true' }, '⚠');
    const g = s('g', { class: 'node ed-node', tabindex: 0, role: 'button', 'aria-pressed': 'false', dataset: { uid: t.uid } },
      s('rect', { class: 'ed-box', width: NODE_W, height: NODE_H, rx: 8 }),
      title, sub, warn,
      s('circle', { class: 'ed-port-in', cx: 0, cy: PORT_Y, r: 4 }),
      s('g', { class: 'ed-port', dataset: { uid: t.uid } },
        s('circle', { class: 'ed-port-hit', cx: NODE_W, cy: PORT_Y, r: 14 }),
        s('circle', { class: 'ed-port-dot', cx: NODE_W, cy: PORT_Y, r: 6 }),
        s('title', {}, 'Drag to a task that should run after this one')));
    const rec = { g, title, sub, warn, x: NaN, y: NaN, t: null, st: null, label: null };
    nodes.set(t.uid, rec);
    return rec;
  }

  function placeNode(rec, x, y) {
    rec.x = x; rec.y = y;
    rec.g.setAttribute('transform', `translate(${x},${y})`);
  }

  function edgeD(e) {
    const a = nodes.get(e.from), b = nodes.get(e.to);
    return edgePath({ x: a.x, y: a.y }, { x: b.x, y: b.y });
  }

  function updateEdgesOf(uid) {
    const set = incident.get(uid);
    if (!set) return;
    for (const e of set) { const d = edgeD(e); e.hit.setAttribute('d', d); e.vis.setAttribute('d', d); e.d = d; }
  }

  /** Brings the canvas in line with the model. detail.kind 'move' touches one node. */
  function sync(detail = {}) {
    if (detail.kind === 'move' && detail.uid && nodes.has(detail.uid)) {
      const p = model.pos.get(detail.uid);
      const rec = nodes.get(detail.uid);
      if (p && (p.x !== rec.x || p.y !== rec.y)) { placeNode(rec, p.x, p.y); updateEdgesOf(detail.uid); }
      resize();
      return;
    }
    const seen = new Set();
    let prev = null;
    for (const t of model.tasks) {
      seen.add(t.uid);
      const rec = nodes.get(t.uid) || makeNode(t);
      // Keep DOM order = task order (the Tab order).
      const want = prev ? prev.nextSibling : nodeLayer.firstChild;
      if (rec.g !== want) nodeLayer.insertBefore(rec.g, want);
      prev = rec.g;
      const p = model.pos.get(t.uid) || { x: 24, y: 24 };
      if (p.x !== rec.x || p.y !== rec.y) placeNode(rec, p.x, p.y);
      const title = clip(t.name || t.key || '(no name)', 20);
      const sub = clip(`${typeLabel(t.action)} · ${t.key}`, 23);
      if (title !== rec.t) { rec.title.textContent = title; rec.t = title; }
      if (sub !== rec.st) { rec.sub.textContent = sub; rec.st = sub; }
      rec.g.dataset.key = t.key;
      const label = nodeLabel(t);
      if (label !== rec.label) { rec.g.setAttribute('aria-label', label); rec.label = label; }
    }
    for (const [uid, rec] of nodes) if (!seen.has(uid)) { rec.g.remove(); nodes.delete(uid); }
    // Edges.
    const want = new Set();
    incident.clear();
    const keyOf = new Map(model.tasks.map((t) => [t.uid, t.key]));
    for (const [from, to] of model.edges()) {
      const id = `${from}>${to}`;
      want.add(id);
      let e = edges.get(id);
      if (!e) {
        const hit = s('path', { class: 'ed-edge-hit' });
        const vis = s('path', { class: 'edge', 'marker-end': 'url(#ed-arrow)' });
        e = { g: s('g', { class: 'ed-edge', dataset: { from, to } }, hit, vis), hit, vis, from, to };
        edges.set(id, e);
        edgeLayer.append(e.g);
      }
      e.g.dataset.fromKey = keyOf.get(from);
      e.g.dataset.toKey = keyOf.get(to);
      const d = edgeD(e);
      if (e.d !== d) { e.hit.setAttribute('d', d); e.vis.setAttribute('d', d); e.d = d; }
      for (const u of [from, to]) { if (!incident.has(u)) incident.set(u, new Set()); incident.get(u).add(e); }
    }
    for (const [id, e] of edges) if (!want.has(id)) { e.g.remove(); edges.delete(id); }
    empty.style.display = model.tasks.length ? 'none' : '';
    applySelection();
    applyProblems();
    resize();
  }

  function resize() {
    let w = 0, h = 0;
    for (const r of nodes.values()) { if (r.x + NODE_W > w) w = r.x + NODE_W; if (r.y + NODE_H > h) h = r.y + NODE_H; }
    const vw = (el.clientWidth || 800) / zoom, vh = (el.clientHeight || 500) / zoom;
    const W = Math.ceil(Math.max(w + MARGIN, vw)), H = Math.ceil(Math.max(h + MARGIN, vh));
    if (W === world.w && H === world.h && svg.dataset.zoom === String(zoom)) return;
    world = { w: W, h: H };
    svg.dataset.zoom = String(zoom);
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.setAttribute('width', String(Math.round(W * zoom)));
    svg.setAttribute('height', String(Math.round(H * zoom)));
    bg.setAttribute('width', String(W));
    bg.setAttribute('height', String(H));
  }

  // Only the nodes and edges whose state changes are touched.
  let shownNode = null, shownEdge = null;
  function applySelection() {
    const n = selection?.task ? nodes.get(selection.task) : null;
    if (shownNode !== n) {
      if (shownNode) { shownNode.g.classList.remove('selected'); shownNode.g.setAttribute('aria-pressed', 'false'); }
      if (n) { n.g.classList.add('selected'); n.g.setAttribute('aria-pressed', 'true'); }
      shownNode = n;
    }
    const e = selection?.edge ? edges.get(`${selection.edge[0]}>${selection.edge[1]}`) : null;
    if (shownEdge !== e) {
      shownEdge?.g.classList.remove('selected');
      e?.g.classList.add('selected');
      shownEdge = e;
    }
  }

  function applyProblems() {
    for (const t of model.tasks) {
      const r = nodes.get(t.uid);
      if (!r) continue;
      r.g.classList.toggle('invalid', problems.has(t.uid));
      const label = nodeLabel(t);
      if (label !== r.label) { r.g.setAttribute('aria-label', label); r.label = label; }
    }
  }

  // ---- coordinates, zoom, scrolling ----

  function toWorld(clientX, clientY, rect = svg.getBoundingClientRect()) {
    return { x: (clientX - rect.left) / zoom, y: (clientY - rect.top) / zoom };
  }

  function setZoom(z, anchor) {
    z = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, Math.round(z * 100) / 100));
    if (z === zoom) return;
    const rect = el.getBoundingClientRect();
    const ax = anchor ? anchor.x - rect.left : el.clientWidth / 2;
    const ay = anchor ? anchor.y - rect.top : el.clientHeight / 2;
    const wx = (el.scrollLeft + ax) / zoom, wy = (el.scrollTop + ay) / zoom;
    zoom = z;
    resize();
    el.scrollLeft = wx * zoom - ax;
    el.scrollTop = wy * zoom - ay;
    on.zoomed?.(zoom);
  }

  /** Zooms so every node is in view (not below `min`), and scrolls to them. */
  function fit(min = MIN_ZOOM) {
    if (!nodes.size) { setZoom(1); return; }
    let x0 = Infinity, y0 = Infinity, x1 = 0, y1 = 0;
    for (const r of nodes.values()) { x0 = Math.min(x0, r.x); y0 = Math.min(y0, r.y); x1 = Math.max(x1, r.x + NODE_W); y1 = Math.max(y1, r.y + NODE_H); }
    const z = Math.min((el.clientWidth - 32) / (x1 - x0 + 32), (el.clientHeight - 32) / (y1 - y0 + 32), 1);
    setZoom(Math.max(min, z));
    resize();
    el.scrollLeft = Math.max(0, (x0 - 16) * zoom);
    el.scrollTop = Math.max(0, (y0 - 16) * zoom);
  }

  /** Scrolls so the node is in view. */
  function reveal(uid) {
    const r = nodes.get(uid);
    if (!r) return;
    const left = r.x * zoom, top = r.y * zoom, right = (r.x + NODE_W) * zoom, bottom = (r.y + NODE_H) * zoom;
    if (left < el.scrollLeft) el.scrollLeft = left - 16;
    else if (right > el.scrollLeft + el.clientWidth) el.scrollLeft = right - el.clientWidth + 16;
    if (top < el.scrollTop) el.scrollTop = top - 16;
    else if (bottom > el.scrollTop + el.clientHeight) el.scrollTop = bottom - el.clientHeight + 16;
  }

  /** A free spot for a new node near `near` (world coordinates), or in view. */
  function freeSpot(near) {
    const p = near || { x: el.scrollLeft / zoom + 40, y: el.scrollTop / zoom + 40 };
    let { x, y } = p;
    const taken = [...model.pos.values()];
    const clash = (px, py) => taken.some((r) => Math.abs(r.x - px) < NODE_W + 8 && Math.abs(r.y - py) < NODE_H + 8);
    for (let i = 0; i < 200 && clash(x, y); i++) y += NODE_H + 20;
    return { x: Math.max(0, Math.round(x)), y: Math.max(0, Math.round(y)) };
  }

  el.addEventListener('wheel', (e) => {
    if (!(e.ctrlKey || e.metaKey)) return;
    e.preventDefault();
    setZoom(zoom * Math.exp(-e.deltaY * 0.0025), { x: e.clientX, y: e.clientY });
  }, { passive: false });

  // ---- pointer interaction ----

  let raf = 0;
  function frame() {
    raf = 0;
    if (!drag) return;
    if (drag.type === 'node' && drag.next) {
      const rec = nodes.get(drag.uid);
      placeNode(rec, drag.next.x, drag.next.y);
      updateEdgesOf(drag.uid);
    } else if (drag.type === 'connect' && drag.next) {
      const a = nodes.get(drag.from);
      const x1 = a.x + NODE_W, y1 = a.y + PORT_Y, { x: x2, y: y2 } = drag.next;
      const dx = Math.max(24, Math.abs(x2 - x1) / 2);
      temp.setAttribute('d', `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`);
      const hover = targetAt(drag.cx, drag.cy);
      if (hover !== drag.hover) {
        if (drag.hover) nodes.get(drag.hover)?.g.classList.remove('drop-target');
        drag.hover = hover && hover !== drag.from ? hover : null;
        if (drag.hover) nodes.get(drag.hover).g.classList.add('drop-target');
      }
    }
  }
  const schedule = () => { if (!raf) raf = requestAnimationFrame(frame); };

  function targetAt(cx, cy) {
    const hit = document.elementFromPoint(cx, cy)?.closest?.('.ed-node');
    return hit && svg.contains(hit) ? hit.dataset.uid : null;
  }

  svg.addEventListener('pointerdown', (e) => {
    if (e.button !== 0 || drag) return;
    const port = e.target.closest('.ed-port');
    const node = e.target.closest('.ed-node');
    const rect = svg.getBoundingClientRect();
    const w = toWorld(e.clientX, e.clientY, rect);
    if (port) {
      e.preventDefault();
      drag = { type: 'connect', from: port.dataset.uid, rect, id: e.pointerId, hover: null, next: w, cx: e.clientX, cy: e.clientY };
      temp.style.display = '';
      el.classList.add('wiring');
      schedule();
    } else if (node) {
      const rec = nodes.get(node.dataset.uid);
      drag = { type: 'node', uid: node.dataset.uid, rect, id: e.pointerId, sx: w.x, sy: w.y, ox: rec.x, oy: rec.y, moved: false, next: null };
    } else if (e.target === bg || e.target === svg) {
      if (e.pointerType === 'touch') { drag = { type: 'tap', id: e.pointerId }; return; } // touch pans natively
      e.preventDefault();
      drag = { type: 'pan', id: e.pointerId, sx: e.clientX, sy: e.clientY, sl: el.scrollLeft, st: el.scrollTop, moved: false };
      el.classList.add('panning');
    } else return;
    try { svg.setPointerCapture(e.pointerId); } catch { /* pointer already gone */ }
  });

  svg.addEventListener('pointermove', (e) => {
    if (!drag || e.pointerId !== drag.id) return;
    if (drag.type === 'pan') {
      const dx = e.clientX - drag.sx, dy = e.clientY - drag.sy;
      if (!drag.moved && Math.hypot(dx, dy) < 3) return;
      drag.moved = true;
      el.scrollLeft = drag.sl - dx;
      el.scrollTop = drag.st - dy;
      return;
    }
    if (drag.type === 'tap') return;
    const w = toWorld(e.clientX, e.clientY, drag.rect);
    if (drag.type === 'node') {
      const dx = w.x - drag.sx, dy = w.y - drag.sy;
      if (!drag.moved && Math.hypot(dx, dy) * zoom < 4) return;
      if (!drag.moved) { drag.moved = true; nodes.get(drag.uid).g.classList.add('dragging'); }
      drag.next = { x: Math.max(0, Math.round(drag.ox + dx)), y: Math.max(0, Math.round(drag.oy + dy)) };
    } else if (drag.type === 'connect') {
      drag.next = w;
      drag.cx = e.clientX; drag.cy = e.clientY;
    }
    schedule();
  });

  function endDrag(e, cancelled) {
    if (!drag || e.pointerId !== drag.id) return;
    const d = drag;
    drag = null;
    if (raf) { cancelAnimationFrame(raf); raf = 0; }
    try { svg.releasePointerCapture(e.pointerId); } catch { /* released */ }
    if (d.type === 'node') {
      const rec = nodes.get(d.uid);
      rec?.g.classList.remove('dragging');
      if (d.moved && d.next && !cancelled) {
        placeNode(rec, d.next.x, d.next.y);
        updateEdgesOf(d.uid);
        on.move(d.uid, d.next.x, d.next.y);
      } else if (d.moved) {
        placeNode(rec, d.ox, d.oy);
        updateEdgesOf(d.uid);
      } else if (!cancelled) {
        if (connectFrom) finishConnect(d.uid);
        else { on.select({ task: d.uid }); rec?.g.focus({ preventScroll: true }); }
      }
    } else if (d.type === 'connect') {
      temp.style.display = 'none';
      el.classList.remove('wiring');
      if (d.hover) nodes.get(d.hover)?.g.classList.remove('drop-target');
      const target = cancelled ? null : targetAt(e.clientX, e.clientY);
      if (target && target !== d.from) on.connect(d.from, target);
      else if (target === d.from) on.status('A task cannot depend on itself.');
      else if (!cancelled) on.status('Drop the connection on the task that should run after this one.');
    } else if (d.type === 'pan') {
      el.classList.remove('panning');
      if (!d.moved && !cancelled) on.select(null);
    } else if (d.type === 'tap' && !cancelled) {
      on.select(null);
    }
  }
  svg.addEventListener('pointerup', (e) => endDrag(e, false));
  svg.addEventListener('pointercancel', (e) => endDrag(e, true));
  svg.addEventListener('lostpointercapture', (e) => { if (drag && e.pointerId === drag.id) endDrag(e, false); });

  // Edges: a click selects.
  svg.addEventListener('click', (e) => {
    const edge = e.target.closest?.('.ed-edge');
    if (edge) on.select({ edge: [edge.dataset.from, edge.dataset.to] });
  });

  // ---- keyboard ----

  svg.addEventListener('focusin', (e) => {
    const node = e.target.closest?.('.ed-node');
    if (!node || connectFrom) return;
    if (selection?.task !== node.dataset.uid) on.select({ task: node.dataset.uid });
  });

  svg.addEventListener('keydown', (e) => {
    const node = e.target.closest?.('.ed-node');
    if (!node || e.ctrlKey || e.metaKey || e.altKey) return;
    const uid = node.dataset.uid;
    const rec = nodes.get(uid);
    const arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (arrows[e.key]) {
      e.preventDefault();
      const n = e.shiftKey ? STEP * 4 : STEP;
      const [dx, dy] = arrows[e.key];
      on.move(uid, Math.max(0, rec.x + dx * n), Math.max(0, rec.y + dy * n));
      reveal(uid);
    } else if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      if (connectFrom) finishConnect(uid);
      else on.edit(uid);
    } else if (e.key === 'c' || e.key === 'C') {
      e.preventDefault();
      if (connectFrom === uid) cancelConnect();
      else startConnect(uid);
    } else if (e.key === 'Escape' && connectFrom) {
      e.preventDefault();
      e.stopPropagation();
      cancelConnect();
    }
  });

  function startConnect(uid) {
    cancelConnect(true);
    connectFrom = uid;
    el.classList.add('connecting');
    nodes.get(uid)?.g.classList.add('connect-source');
    const t = model.byUid(uid);
    on.status(`Connecting from "${t?.name || t?.key}": click or tap the task that should run after it, or Tab to it and press Enter (Escape cancels).`);
  }
  function cancelConnect(quiet) {
    if (!connectFrom) return;
    nodes.get(connectFrom)?.g.classList.remove('connect-source');
    connectFrom = null;
    el.classList.remove('connecting');
    if (!quiet) on.status('Connecting cancelled.');
  }
  function finishConnect(target) {
    const from = connectFrom;
    if (target === from) { on.status('A task cannot depend on itself; choose another task, or press Escape.'); return; }
    if (on.connect(from, target)) {
      cancelConnect(true);
      on.select({ task: target });
    }
  }

  return {
    el, svg, sync, resize, fit, reveal, freeSpot, toWorld, startConnect, cancelConnect,
    get zoom() { return zoom; },
    get connecting() { return connectFrom; },
    setZoom,
    zoomBy: (f) => setZoom(zoom * f),
    setSelection(sel) { selection = sel; applySelection(); },
    setProblems(map) { problems = map; applyProblems(); },
    focusNode(uid) { const r = nodes.get(uid); if (r) { r.g.focus({ preventScroll: true }); reveal(uid); } },
    nodeCount: () => nodes.size,
    destroy() { if (raf) cancelAnimationFrame(raf); clear(el); },
  };
}
