// Charts drawn as SVG from data: a line chart, a neighbourhood graph and a
// sequence diagram. Colours come from the stylesheet, so both themes work.

const NS = 'http://www.w3.org/2000/svg';

export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/// `series`: [{name, points: [[x, y]]}]; x in ms since the epoch.
export function lineChart(series, { title, unit = '', width = 560, height = 200 } = {}) {
  const pad = { l: 52, r: 12, t: 12, b: 24 };
  const all = series.flatMap((x) => x.points);
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const x0 = xs.length ? Math.min(...xs) : Date.now() - 60000, x1 = Math.max(...xs, x0 + 10000);
  const y1 = Math.max(...ys, 0) * 1.15 || 1;
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const Y = (y) => height - pad.b - (y / y1) * (height - pad.t - pad.b);
  const ticks = [0, y1 / 2, y1].map((v) => s('g', {},
    s('line', { class: 'grid-line', x1: pad.l, x2: width - pad.r, y1: Y(v), y2: Y(v) }),
    s('text', { x: pad.l - 6, y: Y(v) + 4, 'text-anchor': 'end' }, `${fmt(v)}${unit}`)));
  const lines = series.map((x, i) => s('polyline', {
    class: `series line-s${(i % 4) + 1}`,
    points: x.points.map(([a, b]) => `${X(a).toFixed(1)},${Y(b).toFixed(1)}`).join(' '),
  }));
  return s('svg', { viewBox: `0 0 ${width} ${height}`, width, role: 'img', 'aria-label': title || 'chart' },
    s('title', {}, title || ''), ticks,
    s('line', { class: 'axis', x1: pad.l, x2: width - pad.r, y1: Y(0), y2: Y(0) }),
    s('text', { x: pad.l, y: height - 6 }, new Date(x0).toLocaleTimeString()),
    s('text', { x: width - pad.r, y: height - 6, 'text-anchor': 'end' }, new Date(x1).toLocaleTimeString()),
    lines);
}

function fmt(v) {
  if (v === 0) return '0';
  if (v >= 100) return v.toFixed(0);
  if (v >= 1) return v.toFixed(1);
  return v.toFixed(3);
}

/// One entity in the middle, its neighbours on a circle, an edge per relation.
export function neighbourhood(center, neighbours, { onSelect, width = 560, height = 360 } = {}) {
  const cx = width / 2, cy = height / 2, r = Math.min(width, height) / 2 - 50;
  const n = Math.max(neighbours.length, 1);
  const placed = neighbours.map((nb, i) => {
    const a = (2 * Math.PI * i) / n - Math.PI / 2;
    return { ...nb, x: cx + r * Math.cos(a), y: cy + r * Math.sin(a) };
  });
  const node = (name, x, y, cls) => {
    const g = s('g', {}, s('circle', { class: `node-dot ${cls}`, cx: x, cy: y, r: 9 }),
      s('text', { x, y: y + 24, 'text-anchor': 'middle' }, name));
    if (!onSelect || cls === 'center') return g;
    return s('a', { href: `#/memory/${encodeURIComponent(name)}`, 'aria-label': `entity ${name}` }, g);
  };
  return s('svg', { viewBox: `0 0 ${width} ${height}`, width, role: 'img', 'aria-label': `neighbourhood of ${center}` },
    s('title', {}, `Entities related to ${center}`),
    placed.map((p) => s('g', {},
      s('line', { class: 'edge', x1: cx, y1: cy, x2: p.x, y2: p.y }),
      s('text', { x: (cx + p.x) / 2, y: (cy + p.y) / 2 - 4, 'text-anchor': 'middle', class: 'muted' }, p.relation || ''))),
    placed.map((p) => node(p.name, p.x, p.y, '')),
    node(center, cx, cy, 'center'));
}

/// Participants as lifelines, each message an arrow; `onSelect(i)` when one is chosen.
export function sequenceDiagram(messages, { onSelect } = {}) {
  const actors = [];
  for (const m of messages) for (const a of [m.from, m.to]) if (a && !actors.includes(a)) actors.push(a);
  const width = Math.max(480, 40 + 190 * actors.length);
  const col = (width - 40) / Math.max(actors.length, 1);
  const X = (a) => 20 + col * actors.indexOf(a) + col / 2;
  const rowH = 34, top = 44;
  const height = top + rowH * (messages.length + 1);
  const heads = actors.map((a) => s('g', {},
    s('rect', { class: 'actor', x: X(a) - col / 2 + 6, y: 6, width: col - 12, height: 26, rx: 5 }),
    s('text', { x: X(a), y: 24, 'text-anchor': 'middle' }, a),
    s('line', { class: 'lifeline', x1: X(a), x2: X(a), y1: 32, y2: height })));
  const arrows = messages.map((m, i) => {
    const y = top + rowH * i + rowH / 2;
    const x1 = X(m.from), x2 = X(m.to);
    const self = x1 === x2;
    const dir = x2 >= x1 ? 1 : -1;
    const path = self ? `M${x1},${y - 8} h24 v16 h-24` : `M${x1},${y} H${x2 - dir * 7}`;
    const head = self ? `${x1},${y + 8} ${x1 + 7},${y + 4} ${x1 + 7},${y + 12}`
      : `${x2},${y} ${x2 - dir * 8},${y - 4} ${x2 - dir * 8},${y + 4}`;
    const label = `${m.kind || 'message'}${m.summary ? ': ' + m.summary : ''}`;
    return s('a', { href: `#msg-${i}`, 'aria-label': `${m.from} to ${m.to}: ${label}`,
      onclick: (e) => { e.preventDefault(); onSelect?.(i); } },
    s('path', { class: 'msg', d: path }), s('polygon', { class: 'msg-head', points: head }),
    s('text', { x: self ? x1 + 30 : (x1 + x2) / 2, y: y - 5, 'text-anchor': self ? 'start' : 'middle' },
      label.length > 48 ? label.slice(0, 47) + '…' : label));
  });
  return s('svg', { viewBox: `0 0 ${width} ${height}`, width, role: 'img', 'aria-label': 'sequence diagram' },
    s('title', {}, 'Messages of this conversation'), heads, arrows);
}
