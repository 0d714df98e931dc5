// Building the page: elements from data, never from HTML strings, so text
// from the API (agent names, messages, memory) can never become markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/// Appends children, skipping null, undefined and false (so a condition
/// can stand in the list), flattening arrays.
export function append(el, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/// A labelled control: every input has a visible label.
export function field(label, control, hint) {
  return h('label', {}, h('span', {}, label), control, hint ? h('small', { class: 'muted' }, hint) : null);
}

export function table(columns, rows, caption) {
  return h('div', { class: 'scroll' },
    h('table', {},
      caption ? h('caption', { class: 'muted' }, caption) : null,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.length ? rows.map((r) => h('tr', {}, r.map((cell) => h('td', {}, cell))))
        : h('tr', {}, h('td', { colspan: columns.length, class: 'muted' }, 'None.')))));
}

export function toast(message, kind = 'info') {
  const t = h('div', { class: `toast ${kind}` }, message);
  document.getElementById('toasts').append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 9000 : 4000);
}

/// A problem+json answer, as the person should read it.
export function problemView(err) {
  const p = err.problem || {};
  const scope = p.extra?.required_scope ? h('p', {}, 'This needs the ', h('code', {}, p.extra.required_scope), ' scope.') : null;
  return h('div', { class: 'problem', role: 'alert' },
    h('strong', {}, `${err.status || ''} ${p.title || err.message}`.trim()),
    p.detail ? h('p', {}, p.detail) : null, scope);
}

/// Asks before something that cannot be undone; resolves to true or false.
export function confirmAction(question, action = 'Confirm') {
  return new Promise((resolve) => {
    const dlg = h('dialog', { 'aria-labelledby': 'confirm-q' },
      h('p', { id: 'confirm-q' }, question),
      h('div', { class: 'row' },
        h('button', { class: 'danger', value: 'yes', onclick: () => dlg.close('yes') }, action),
        h('button', { class: 'secondary', value: 'no', onclick: () => dlg.close('no') }, 'Cancel')));
    dlg.addEventListener('close', () => { resolve(dlg.returnValue === 'yes'); dlg.remove(); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

export function ago(ms) {
  if (!ms) return '';
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

export function when(ms) {
  return ms ? new Date(ms).toLocaleString() : '';
}

export function json(v) {
  return h('pre', {}, JSON.stringify(v, null, 2));
}

/// Line diff (longest common subsequence): `[kind, line]`, kind ' ', '+' or '-'.
export function diffLines(a, b) {
  const x = a.split('\n'), y = b.split('\n');
  const n = x.length, m = y.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
    lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) { out.push([' ', x[i]]); i++; j++; }
    else if (lcs[i + 1][j] >= lcs[i][j + 1]) out.push(['-', x[i++]]);
    else out.push(['+', y[j++]]);
  }
  while (i < n) out.push(['-', x[i++]]);
  while (j < m) out.push(['+', y[j++]]);
  return out;
}

export function diffView(a, b) {
  return h('pre', { class: 'diff', 'aria-label': 'Differences' },
    diffLines(a, b).map(([k, line]) => h('span', { class: k === '+' ? 'add' : k === '-' ? 'del' : '' }, `${k} ${line}`)));
}
