// An agent's TOML in a text area with line numbers; the node checks it as
// it is typed (`POST /v1/agent-checks`) and each error is shown at its line
// in the gutter and listed with its line and column, a button that puts the
// caret there.

import { api } from './api.js';
import { h, clear } from './dom.js';

export function tomlEditor(initial, { label = 'Agent definition (TOML)', onVerdict } = {}) {
  const gutter = h('pre', { class: 'gutter', 'aria-hidden': 'true' });
  const area = h('textarea', { id: 'agent-toml', spellcheck: false, autocomplete: 'off', wrap: 'off',
    'aria-describedby': 'agent-toml-errors' });
  area.value = initial;
  const errorList = h('ul', { id: 'agent-toml-errors', class: 'errors', 'aria-live': 'polite' });
  let errors = [];
  let timer = null;
  let asked = 0;

  const lineCount = () => area.value.split('\n').length;
  function drawGutter() {
    const bad = new Set(errors.map((e) => e.line).filter(Boolean));
    clear(gutter, Array.from({ length: lineCount() }, (_, i) => {
      const n = i + 1;
      return h('span', bad.has(n) ? { class: 'err', title: 'error on this line' } : {}, `${bad.has(n) ? '● ' : ''}${n}\n`);
    }));
    gutter.scrollTop = area.scrollTop;
  }

  function caretTo(line, column) {
    const lines = area.value.split('\n');
    let at = 0;
    for (let i = 0; i < Math.min(line - 1, lines.length); i++) at += lines[i].length + 1;
    at += Math.max((column || 1) - 1, 0);
    area.focus();
    area.setSelectionRange(at, at);
  }

  function showErrors(list) {
    errors = list;
    drawGutter();
    clear(errorList, list.map((e) => {
      const where = e.line ? `line ${e.line}, column ${e.column || 1}` : 'file';
      const text = `${where}: ${e.field} — ${e.reason}`;
      return h('li', { class: 'toml-error', dataset: { line: e.line || '', column: e.column || '' } },
        e.line ? h('button', { type: 'button', onclick: () => caretTo(e.line, e.column) }, text) : text);
    }));
  }

  async function check() {
    const mine = ++asked;
    try {
      const verdict = await api('/v1/agent-checks', { method: 'POST', body: area.value, type: 'application/toml' });
      if (mine !== asked) return;
      showErrors(verdict.errors);
      onVerdict?.(verdict);
    } catch (e) {
      if (mine === asked) onVerdict?.({ valid: false, errors: [], problem: e });
    }
  }

  area.addEventListener('input', () => {
    drawGutter();
    clearTimeout(timer);
    timer = setTimeout(check, 300);
  });
  area.addEventListener('scroll', () => { gutter.scrollTop = area.scrollTop; });
  drawGutter();
  const el = h('div', { class: 'stack' },
    h('label', { for: 'agent-toml' }, label),
    h('div', { class: 'editor' }, gutter, area),
    errorList);
  return {
    el,
    get value() { return area.value; },
    set value(v) { area.value = v; drawGutter(); check(); },
    check,
    showErrors,
  };
}
