// Keys (admin): create one (its token shown once), list, revoke.

import { api } from './api.js';
import { h, clear, table, field, toast, problemView, confirmAction, when, append } from './dom.js';

const SCOPES = ['admin', 'deploy', 'invoke', 'read', 'memory:read', 'memory:write'];

export async function render(main, _params, signal) {
  const list = h('div', { id: 'key-list' });
  const load = async () => {
    const { keys } = await api('/v1/keys', { signal });
    clear(list, table(['name', 'id', 'scopes', 'agents', 'state', 'expires', 'created', ''],
      keys.map((k) => [k.name, h('code', {}, k.id), k.scopes.join(', '), (k.agents || []).join(', ') || 'all', k.state,
        k.expires_at_ms ? when(k.expires_at_ms) : 'never', `${when(k.created_at_ms)} by ${k.created_by || '?'}`,
        k.state === 'active' ? h('button', { class: 'danger', onclick: () => revoke(k.name, load) }, `Revoke ${k.name}`) : ''])));
  };
  append(main, h('h1', {}, 'Keys'), create(load), h('h2', {}, 'All keys'), list);
  await load();
}

function create(reload) {
  const name = h('input', { id: 'key-name', required: true, pattern: '[A-Za-z0-9._\\-]{1,64}' });
  const boxes = SCOPES.map((s) => h('input', { type: 'checkbox', id: `scope-${s.replace(':', '-')}`, value: s }));
  const agents = h('input', { id: 'key-agents', placeholder: 'support-*, billing' });
  const expires = h('input', { id: 'key-expires', placeholder: '30d' });
  const out = h('div');
  const form = h('form', { class: 'panel stack', onsubmit: async (e) => {
    e.preventDefault();
    const body = { name: name.value.trim(), scopes: boxes.filter((b) => b.checked).map((b) => b.value) };
    const a = agents.value.split(',').map((x) => x.trim()).filter(Boolean);
    if (a.length) body.agents = a;
    if (expires.value.trim()) body.expires_in = expires.value.trim();
    try {
      const k = await api('/v1/keys', { method: 'POST', body });
      showToken(k);
      form.reset();
      clear(out);
      await reload();
    } catch (err) { clear(out, problemView(err)); }
  } },
  h('h2', {}, 'Create a key'),
  h('div', { class: 'row' }, field('Name', name), field('Agents (optional)', agents), field('Expires in (optional)', expires)),
  h('fieldset', {}, h('legend', {}, 'Scopes'), h('div', { class: 'row' }, boxes.map((b) => h('label', { class: 'inline' }, b, b.value)))),
  h('div', { class: 'row' }, h('button', { type: 'submit', id: 'key-create' }, 'Create key')), out);
  return form;
}

function showToken(k) {
  const token = h('input', { id: 'new-token', readOnly: true, value: k.token, size: 60 });
  const dlg = h('dialog', { 'aria-labelledby': 'token-h' },
    h('h2', { id: 'token-h' }, `Key ${k.name} created`),
    h('p', {}, 'Copy its token now: it is never shown again.'),
    field('Token', token),
    h('div', { class: 'row' },
      h('button', { onclick: async () => { try { await navigator.clipboard.writeText(k.token); toast('copied'); } catch { token.select(); } } }, 'Copy'),
      h('button', { class: 'secondary', onclick: () => dlg.close() }, 'Done')));
  dlg.addEventListener('close', () => dlg.remove());
  document.body.append(dlg);
  dlg.showModal();
  token.select();
}

async function revoke(name, reload) {
  if (!(await confirmAction(`Revoke the key ${name}? Requests with it are refused at once.`, 'Revoke'))) return;
  try {
    await api(`/v1/keys/${encodeURIComponent(name)}`, { method: 'DELETE' });
    toast(`${name} revoked`);
  } catch (e) { toast(e.message, 'error'); }
  await reload();
}
