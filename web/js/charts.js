// A small SVG chart kit. Charts are drawn at their box's width (1 unit =
// 1 CSS px: text stays readable on a phone) and redrawn when it changes.
// Each is a <figure>: an SVG (role="img", aria-label, <title>, <desc>), a
// tooltip following the pointer or arrow keys, and a "Show data" button
// revealing a table (visually hidden until then; screen readers read it).
import { h, s, clear } from './ui.js';

let seq = 0;
const nid = () => `chart-${++seq}`;

/** Round steps 1, 2, 5 × 10^k covering [lo, hi] in about `count` ticks. */
export function niceTicks(lo, hi, count = 4, integer = false) {
  if (!(hi > lo)) hi = lo + 1;
  const raw = Math.max(integer ? 1 : 0, (hi - lo) / Math.max(1, count));
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).filter((x) => !integer || Number.isInteger(x)).find((x) => x >= raw) || raw;
  const out = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  if (out[out.length - 1] < hi) out.push(+(out[out.length - 1] + step).toPrecision(12));
  return out;
}

function dataTable(caption, columns, rows) {
  return h('table', {}, h('caption', {}, caption),
    h('thead', {}, h('tr', {}, columns.map((c, i) => h('th', { scope: 'col', class: i ? 'num' : undefined }, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((v, i) => h(i ? 'td' : 'th', { scope: i ? undefined : 'row', class: i ? 'num' : undefined, 'data-label': columns[i] }, v))))));
}

/** Legend items: [{name, cls}] */
function legend(series) {
  if (series.length < 2) return null;
  return h('ul', { class: 'chart-legend' }, series.map((x) => h('li', {}, h('span', { class: `swatch ${x.cls || ''}`, 'aria-hidden': 'true' }), x.name)));
}

/** opts: {title, summary, desc, columns, rows, series, signal, cls, draw(width, tip) -> <svg>} */
function frame(opts) {
  const id = nid();
  const tip = h('div', { class: 'chart-tip', 'aria-live': 'polite', hidden: true });
  const plot = h('div', { class: 'chart-plot' }, tip);
  const data = h('div', { class: 'chart-data sr-only', id: `${id}-data` }, dataTable(opts.title, opts.columns, opts.rows));
  const toggle = h('button', {
    type: 'button', class: 'link chart-toggle', 'aria-expanded': 'false', 'aria-controls': `${id}-data`,
    onClick: () => {
      const open = data.classList.toggle('sr-only') === false;
      toggle.setAttribute('aria-expanded', String(open));
      toggle.textContent = open ? 'Hide data' : 'Show data';
    },
  }, 'Show data');
  const fig = h('figure', { class: ['chart', opts.cls] },
    h('figcaption', {}, h('span', { class: 'chart-title' }, opts.title), toggle),
    plot, legend(opts.series || []), data);
  let lastW = 0;
  const redraw = () => {
    const w = Math.floor(plot.clientWidth);
    if (!w || Math.abs(w - lastW) < 4) return;
    lastW = w;
    const svg = opts.draw(Math.max(220, w), tip);
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', opts.summary);
    svg.prepend(s('title', { text: opts.title }), s('desc', { text: opts.desc || opts.summary }));
    plot.querySelector('svg')?.remove();
    plot.prepend(svg);
  };
  const ro = new ResizeObserver(redraw);
  ro.observe(plot);
  opts.signal?.addEventListener('abort', () => ro.disconnect());
  return fig;
}

/** Pointer and keys (arrows, Home, End, Escape) move a guide and the tooltip over points xs; text(i): its lines. */
function interactive(svg, tip, { xs, top, bottom, text }) {
  const guide = s('line', { class: 'chart-guide', y1: top, y2: bottom, x1: 0, x2: 0, visibility: 'hidden' });
  svg.append(guide);
  svg.setAttribute('tabindex', '0');
  let at = -1;
  const show = (i) => {
    at = Math.max(0, Math.min(xs.length - 1, i));
    guide.setAttribute('x1', xs[at]); guide.setAttribute('x2', xs[at]); guide.setAttribute('visibility', 'visible');
    const lines = text(at);
    clear(tip).append(h('strong', {}, lines[0]), ...lines.slice(1).map((l) => h('div', {}, l)));
    tip.hidden = false;
    const w = Number(svg.getAttribute('width'));
    tip.style.left = `${Math.min(xs[at] + 10, Math.max(0, w - 180))}px`;
    tip.style.top = `${top}px`;
  };
  const hide = () => { tip.hidden = true; guide.setAttribute('visibility', 'hidden'); };
  const nearest = (x) => xs.reduce((best, v, i) => (Math.abs(v - x) < Math.abs(xs[best] - x) ? i : best), 0);
  svg.addEventListener('pointermove', (e) => {
    const r = svg.getBoundingClientRect();
    show(nearest(((e.clientX - r.left) * Number(svg.getAttribute('width'))) / (r.width || 1)));
  });
  svg.addEventListener('pointerleave', () => { if (document.activeElement !== svg) hide(); });
  svg.addEventListener('focus', () => show(at < 0 ? xs.length - 1 : at));
  svg.addEventListener('blur', hide);
  svg.addEventListener('keydown', (e) => {
    const step = { ArrowLeft: -1, ArrowRight: 1, ArrowDown: -1, ArrowUp: 1 }[e.key];
    if (step) show(at + step);
    else if (e.key === 'Home') show(0);
    else if (e.key === 'End') show(xs.length - 1);
    else if (e.key === 'Escape') hide();
    else return;
    e.preventDefault();
  });
}

/** Axes over an index x scale: returns {x(i), y(v), svg}. */
function axes(w, n, { lo, hi, format, labels, band, integer }) {
  const H = w < 480 ? 190 : 230;
  const m = { l: w < 480 ? 50 : 62, r: 12, t: 10, b: 26 };
  const pw = w - m.l - m.r, ph = H - m.t - m.b;
  const ticks = niceTicks(lo, hi, H < 200 ? 3 : 4, integer);
  const y0 = ticks[0], y1 = ticks[ticks.length - 1];
  const y = (v) => m.t + ph - ((v - y0) / (y1 - y0 || 1)) * ph;
  const x = band ? (i) => m.l + (i + 0.5) * (pw / n) : (i) => m.l + (n < 2 ? pw / 2 : (i * pw) / (n - 1));
  const svg = s('svg', { class: 'chart-svg', width: w, height: H, viewBox: `0 0 ${w} ${H}` });
  const g = s('g', { class: 'axis', 'aria-hidden': 'true' });
  for (const t of ticks) {
    g.append(s('line', { class: 'grid', x1: m.l, x2: w - m.r, y1: y(t), y2: y(t) }),
      s('text', { x: m.l - 6, y: y(t) + 4, 'text-anchor': 'end', text: format(t) }));
  }
  const every = Math.max(1, Math.ceil(n / Math.max(1, Math.floor(pw / (w < 480 ? 78 : 92)))));
  for (let i = 0; i < n; i += every) {
    g.append(s('text', { x: Math.min(w - 34, Math.max(34, x(i))), y: H - 8, 'text-anchor': 'middle', text: labels[i] }));
  }
  g.append(s('line', { class: 'base', x1: m.l, x2: w - m.r, y1: m.t + ph, y2: m.t + ph }));
  svg.append(g);
  return { svg, x, y, top: m.t, bottom: m.t + ph, pw, m };
}

const tipLines = (labels, series, format) => (i) => [labels[i], ...series.map((x) => `${x.name}: ${x.values[i] == null ? '—' : format(x.values[i])}`)];

/**
 * A line chart (area under the first series with `area: true`).
 * opts: {title, summary, desc, labels, series: [{name, values, cls}], format, min, max, area, signal}
 */
export function lineChart(opts) {
  const { labels, series, format } = opts;
  const vals = series.flatMap((x) => x.values).filter((v) => v != null && Number.isFinite(v));
  const lo = opts.min ?? Math.min(0, ...vals), top = Math.max(lo, ...vals);
  const hi = opts.max ?? (top > lo ? top : lo + 1);  // flat data: a unit axis, not ticks that all read the same
  return frame({
    ...opts, cls: 'line-chart',
    columns: ['Period', ...series.map((x) => x.name)],
    rows: labels.map((l, i) => [l, ...series.map((x) => (x.values[i] == null ? '—' : format(x.values[i])))]),
    draw(w, tip) {
      const n = labels.length;
      const a = axes(w, n, { lo, hi, format, labels, integer: opts.integer });
      series.forEach((ser, k) => {
        const pts = ser.values.map((v, i) => (v == null ? null : [a.x(i), a.y(v)]));
        const d = pts.reduce((acc, p, i) => (p ? `${acc}${acc && pts[i - 1] ? 'L' : 'M'}${p[0].toFixed(1)},${p[1].toFixed(1)}` : acc), '');
        if (opts.area && k === 0 && n > 1) {
          a.svg.append(s('path', { class: `area ${ser.cls || ''}`, d: `${d}L${a.x(n - 1)},${a.bottom}L${a.x(0)},${a.bottom}Z` }));
        }
        a.svg.append(s('path', { class: `line ${ser.cls || ''}`, d }));
        if (n <= 60) pts.forEach((p) => p && a.svg.append(s('circle', { class: `dot ${ser.cls || ''}`, cx: p[0], cy: p[1], r: n < 2 ? 4 : 2.5 })));
      });
      interactive(a.svg, tip, { xs: labels.map((_, i) => a.x(i)), top: a.top, bottom: a.bottom, text: tipLines(labels, series, format) });
      return a.svg;
    },
  });
}

/**
 * Vertical bars, stacked when there are several series.
 * opts: {title, summary, desc, labels, series: [{name, values, cls}], format, max, signal}
 */
export function stackedBars(opts) {
  const { labels, series, format } = opts;
  const totals = labels.map((_, i) => series.reduce((t, x) => t + (Number(x.values[i]) || 0), 0));
  const cols = series.length > 1 ? [...series.map((x) => x.name), 'Total'] : series.map((x) => x.name);
  return frame({
    ...opts, cls: 'bar-chart',
    columns: ['Period', ...cols],
    rows: labels.map((l, i) => [l, ...series.map((x) => format(x.values[i] || 0)), ...(series.length > 1 ? [format(totals[i])] : [])]),
    draw(w, tip) {
      const n = labels.length;
      // All zero: a 0..1 axis (not 0..1e-12, whose ticks all read "0").
      const top = Math.max(0, ...totals);
      const a = axes(w, n, { lo: 0, hi: opts.max ?? (top > 0 ? top : 1), format, labels, band: true, integer: opts.integer });
      const bw = Math.max(1, Math.min(48, (a.pw / Math.max(1, n)) * 0.72));
      labels.forEach((_, i) => {
        let acc = 0;
        for (const ser of series) {
          const v = Number(ser.values[i]) || 0;
          if (v <= 0) continue;
          const yTop = a.y(acc + v), yBot = a.y(acc);
          a.svg.append(s('rect', { class: `bar ${ser.cls || ''}`, x: (a.x(i) - bw / 2).toFixed(1), y: yTop.toFixed(1), width: bw.toFixed(1), height: Math.max(0.5, yBot - yTop).toFixed(1) }));
          acc += v;
        }
      });
      interactive(a.svg, tip, {
        xs: labels.map((_, i) => a.x(i)), top: a.top, bottom: a.bottom,
        text: (i) => [...tipLines(labels, series, format)(i), ...(series.length > 1 ? [`Total: ${format(totals[i])}`] : [])],
      });
      return a.svg;
    },
  });
}

/**
 * A horizontal bar list (HTML: the text is the data). items: [{label, value, text, cls}];
 * opts: {label (list name), max}
 */
export function barList(items, opts = {}) {
  const max = opts.max ?? Math.max(1e-12, ...items.map((x) => Number(x.value) || 0));
  return h('ul', { class: 'bar-list', 'aria-label': opts.label },
    items.map((x) => {
      const bar = h('span', { class: `bar ${x.cls || ''}` });
      bar.style.width = `${Math.max(0, Math.min(100, ((Number(x.value) || 0) / max) * 100)).toFixed(1)}%`;
      return h('li', {}, h('span', { class: 'bl-label' }, x.label), h('span', { class: 'bl-track', 'aria-hidden': 'true' }, bar), h('span', { class: 'bl-value' }, x.text ?? String(x.value)));
    }));
}

/**
 * A percentile strip on one axis from 0: a box p50–p95, a whisker to p99,
 * a mark at the maximum and the mean. opts: {title, summary, p50, p95, p99, max, mean, format, signal}
 */
export function boxStrip(opts) {
  const names = [['p50', 'p50'], ['p95', 'p95'], ['p99', 'p99'], ['max', 'max'], ['mean', 'mean']].filter(([k]) => opts[k] != null);
  return frame({
    ...opts, cls: 'box-strip',
    columns: ['Statistic', 'Value'], rows: names.map(([k, l]) => [l, opts.format(opts[k])]),
    draw(w) {
      const H = 64, l = 12, r = 12;
      const hi = Math.max(1e-9, opts.max ?? 0, opts.p99 ?? 0, opts.p95 ?? 0, opts.mean ?? 0);
      const x = (v) => l + ((v || 0) / hi) * (w - l - r);
      const svg = s('svg', { class: 'chart-svg', width: w, height: H, viewBox: `0 0 ${w} ${H}` });
      const ticks = niceTicks(0, hi, w < 480 ? 2 : 4).filter((t) => t <= hi * 1.0001);
      const g = s('g', { class: 'axis', 'aria-hidden': 'true' });
      g.append(s('line', { class: 'base', x1: l, x2: w - r, y1: 34, y2: 34 }));
      ticks.forEach((t, i) => g.append(s('line', { class: 'grid', x1: x(t), x2: x(t), y1: 30, y2: 38 }),
        s('text', { x: x(t), y: 54, 'text-anchor': i === 0 ? 'start' : 'middle', text: opts.format(t) })));
      svg.append(g);
      if (opts.p99 != null) svg.append(s('line', { class: 'whisker', x1: x(opts.p95 ?? opts.p50), x2: x(opts.p99), y1: 20, y2: 20 }));
      if (opts.p50 != null) svg.append(s('rect', { class: 'box', x: x(0), y: 13, width: Math.max(1, x(opts.p50) - x(0)), height: 14 }));
      if (opts.p95 != null) svg.append(s('rect', { class: 'box upper', x: x(opts.p50 ?? 0), y: 13, width: Math.max(1, x(opts.p95) - x(opts.p50 ?? 0)), height: 14 }));
      if (opts.max != null) svg.append(s('path', { class: 'max-mark', d: `M${x(opts.max)},8 v24` }));
      if (opts.mean != null) svg.append(s('path', { class: 'mean-mark', d: `M${x(opts.mean) - 5},4 h10 l-5,7 z` }));
      return svg;
    },
  });
}

/** A small trend line; values: numbers. */
export function sparkline(values, label) {
  const v = values.map(Number).filter(Number.isFinite);
  const lo = Math.min(...v, 0), hi = Math.max(...v, lo + 1e-9);
  const d = v.map((y, i) => `${i ? 'L' : 'M'}${(v.length < 2 ? 50 : (i * 100) / (v.length - 1)).toFixed(1)},${(22 - ((y - lo) / (hi - lo)) * 20).toFixed(1)}`).join('');
  return s('svg', { class: 'sparkline', viewBox: '0 0 100 24', preserveAspectRatio: 'none', role: 'img', 'aria-label': label },
    s('title', { text: label }), s('path', { d: v.length === 1 ? `M0,${d.split(',')[1]}H100` : d }));
}

/**
 * Spend against a limit: spent (solid), forecast (light), its interval
 * (whisker) and the limit (dashed line). opts: {spent, forecast, low, high, limit, format, title, summary, signal}
 */
export function budgetBar(opts) {
  const rows = [['Spent', opts.spent], ['Forecast', opts.forecast], ['Forecast low (95 %)', opts.low], ['Forecast high (95 %)', opts.high], ['Limit', opts.limit]];
  return frame({
    ...opts, cls: 'budget-bar',
    series: [{ name: 'spent', cls: 'lg-spent' }, { name: 'forecast', cls: 'lg-forecast' }, { name: '95 % interval', cls: 'lg-interval' }, { name: 'limit', cls: 'lg-limit' }],
    columns: ['Figure', 'US dollars'], rows: rows.map(([k, v]) => [k, opts.format(v)]),
    draw(w) {
      const H = 70, l = 8, r = 8;
      const hi = Math.max(opts.limit, opts.high, opts.forecast, opts.spent) * 1.08 || 1;
      const x = (v) => l + (Math.max(0, v) / hi) * (w - l - r);
      const svg = s('svg', { class: 'chart-svg', width: w, height: H, viewBox: `0 0 ${w} ${H}` });
      svg.append(s('rect', { class: 'track', x: l, y: 18, width: w - l - r, height: 20, rx: 3 }),
        s('rect', { class: 'forecast', x: x(0), y: 18, width: Math.max(0, x(opts.forecast) - x(0)), height: 20, rx: 3 }),
        s('rect', { class: 'spent', x: x(0), y: 18, width: Math.max(0, x(opts.spent) - x(0)), height: 20, rx: 3 }),
        s('path', { class: 'interval', d: `M${x(opts.low)},22v12M${x(opts.low)},28H${x(opts.high)}M${x(opts.high)},22v12` }),
        s('path', { class: 'limit', d: `M${x(opts.limit)},8V48` }));
      const lx = x(opts.limit);
      svg.append(s('text', { class: 'limit-label', x: lx, y: 62, 'text-anchor': lx > w * 0.8 ? 'end' : lx < w * 0.2 ? 'start' : 'middle', text: `limit ${opts.format(opts.limit)}` }));
      return svg;
    },
  });
}
