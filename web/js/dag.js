// The DAG picture shared by the editor, the execution monitor and the
// version diff: a layered layout (longest path from the roots, then
// barycentre ordering to cut crossings) and an SVG rendering.
import { s } from './ui.js';

export const NODE_W = 168;
export const NODE_H = 52;
export const GAP_X = 64;   // between layers (left to right)
export const GAP_Y = 28;   // between nodes of a layer
let graphs = 0;             // for unique marker ids per page

/** tasks: [{key, dependsOn: [...]}] -> Map key -> {x, y}; unknown deps ignored. */
export function layoutDag(tasks) {
  const keys = new Set(tasks.map((t) => t.key));
  const deps = new Map(tasks.map((t) => [t.key, (t.dependsOn || []).filter((d) => keys.has(d))]));
  const layer = new Map();
  const visiting = new Set();
  const depth = (k) => {
    if (layer.has(k)) return layer.get(k);
    if (visiting.has(k)) return 0; // a cycle (the editor prevents them): break it
    visiting.add(k);
    const d = Math.max(-1, ...deps.get(k).map(depth)) + 1;
    visiting.delete(k);
    layer.set(k, d);
    return d;
  };
  tasks.forEach((t) => depth(t.key));
  const layers = [];
  for (const t of tasks) (layers[layer.get(t.key)] ||= []).push(t.key);
  // Barycentre sweeps: order each layer by the mean position of its parents.
  const order = new Map();
  layers.forEach((l) => l.forEach((k, i) => order.set(k, i)));
  const children = new Map(tasks.map((t) => [t.key, []]));
  for (const [k, ds] of deps) ds.forEach((d) => children.get(d).push(k));
  for (let sweep = 0; sweep < 4; sweep++) {
    const down = sweep % 2 === 0;
    const seq = down ? layers.slice(1) : layers.slice(0, -1).reverse();
    for (const l of seq) {
      const bary = (k) => {
        const ns = down ? deps.get(k) : children.get(k);
        return ns.length ? ns.reduce((a, n) => a + order.get(n), 0) / ns.length : order.get(k);
      };
      l.sort((a, b) => bary(a) - bary(b));
      l.forEach((k, i) => order.set(k, i));
    }
  }
  const tallest = Math.max(1, ...layers.map((l) => l.length));
  const positions = new Map();
  layers.forEach((l, li) => {
    const offset = ((tallest - l.length) * (NODE_H + GAP_Y)) / 2;
    l.forEach((k, i) => positions.set(k, { x: 24 + li * (NODE_W + GAP_X), y: 24 + offset + i * (NODE_H + GAP_Y) }));
  });
  return positions;
}

/** The bounding box of positions: {width, height} including margins. */
export function extent(positions) {
  let w = 0, hgt = 0;
  for (const p of positions.values()) { w = Math.max(w, p.x + NODE_W); hgt = Math.max(hgt, p.y + NODE_H); }
  return { width: w + 24, height: hgt + 24 };
}

/** An edge path from the right side of `a` to the left side of `b`. */
export function edgePath(a, b) {
  const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2;
  const dx = Math.max(32, Math.abs(x2 - x1) / 2);
  return `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`;
}

/** Arrowhead marker; call once per <svg>. */
export function defs(id = 'arrow') {
  return s('defs', {}, s('marker', { id, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
    s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead' })));
}

/**
 * Draws a read-only DAG into a fresh <svg>.
 * opts: positions (default layoutDag), nodeClass(task) -> extra classes,
 * label(task) -> second line, onSelect(task), edgeClass(from, to), title.
 * Nodes are focusable buttons (Enter/Space selects).
 */
export function renderDag(tasks, opts = {}) {
  const positions = opts.positions || layoutDag(tasks);
  const { width, height } = extent(positions);
  const svg = s('svg', { class: 'dag', viewBox: `0 0 ${width} ${height}`, width, height, role: 'group', 'aria-label': opts.title || 'workflow graph' });
  const marker = `arrow-${++graphs}`;
  svg.append(defs(marker));
  const edges = s('g', { class: 'edges' });
  const nodes = s('g', { class: 'nodes' });
  for (const t of tasks) {
    for (const d of t.dependsOn || []) {
      const a = positions.get(d), b = positions.get(t.key);
      if (!a || !b) continue;
      edges.append(s('path', { d: edgePath(a, b), class: ['edge', opts.edgeClass?.(d, t.key)], 'marker-end': `url(#${marker})`, dataset: { from: d, to: t.key } }));
    }
  }
  for (const t of tasks) {
    const p = positions.get(t.key);
    const g = s('g', {
      class: ['node', opts.nodeClass?.(t)], transform: `translate(${p.x},${p.y})`, tabindex: opts.onSelect ? 0 : undefined,
      role: opts.onSelect ? 'button' : 'img', 'aria-label': `${t.key}${opts.label ? ', ' + opts.label(t) : ''}`, dataset: { key: t.key },
    },
    s('rect', { width: NODE_W, height: NODE_H, rx: 8 }),
    s('text', { x: 12, y: 21, class: 'node-title' }, clip(t.name || t.key, 20)),
    s('text', { x: 12, y: 39, class: 'node-sub' }, clip(opts.label ? opts.label(t) : t.action || '', 24)));
    if (opts.onSelect) {
      g.addEventListener('click', () => opts.onSelect(t));
      g.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); opts.onSelect(t); } });
    }
    nodes.append(g);
  }
  svg.append(edges, nodes);
  routeAroundNodes(svg, positions);
  return svg;
}

/**
 * An edge that skips a layer is drawn straight through the nodes between
 * (a -> c next to a -> b -> c hides under b, and a removed a -> c looks like
 * a -> b): such edges go over the top of the nodes they would cross instead.
 */
export function routeAroundNodes(svg, positions) {
  const boxes = [...positions.entries()];
  for (const path of svg.querySelectorAll('path.edge')) {
    const { from, to } = path.dataset;
    const a = positions.get(from), b = positions.get(to);
    if (!a || !b || b.x - a.x <= NODE_W + GAP_X) continue;
    const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2;
    const lo = Math.min(y1, y2) - 4, hi = Math.max(y1, y2) + 4;
    const between = boxes.filter(([k, p]) => k !== from && k !== to && p.x + NODE_W > x1 && p.x < x2);
    if (!between.some(([, p]) => p.y < hi && p.y + NODE_H > lo)) continue;
    const lane = Math.max(4, Math.min(...between.map(([, p]) => p.y)) - GAP_Y / 2);
    const g = GAP_X / 2;
    path.setAttribute('d', `M${x1},${y1} C${x1 + g * 0.75},${y1} ${x1 + g * 0.25},${lane} ${x1 + g},${lane}`
      + ` L${x2 - g},${lane} C${x2 - g * 0.25},${lane} ${x2 - g * 0.75},${y2} ${x2},${y2}`);
  }
}


export function clip(text, n) { text = String(text); return text.length > n ? text.slice(0, n - 1) + '…' : text; }

/** True if adding the edge from -> to (to depends on from) makes a cycle. */
export function wouldCycle(tasks, from, to) {
  if (from === to) return true;
  const deps = new Map(tasks.map((t) => [t.key, t.dependsOn || []]));
  // A cycle iff `from` already depends (transitively) on `to`.
  const seen = new Set();
  const stack = [from];
  while (stack.length) {
    const k = stack.pop();
    if (k === to) return true;
    if (seen.has(k)) continue;
    seen.add(k);
    stack.push(...(deps.get(k) || []));
  }
  return false;
}
