// Conversations: the list, and one conversation as a sequence diagram that
// grows as its messages are committed (contract-net, auctions, requests).

import { api, sse, every } from './api.js';
import { h, clear, table, field, problemView, ago, json, append } from './dom.js';
import { sequenceDiagram } from './svg.js';

const PROTOCOLS = ['request_reply', 'contract_net', 'subscribe', 'auction', 'negotiation'];
const STATES = ['initiated', 'in_progress', 'completed', 'failed', 'expired'];

export async function render(main, params, signal) {
  if (params[0]) return detail(main, params[0], signal);
  const protocol = h('select', { id: 'conv-protocol' }, h('option', { value: '' }, 'any'), PROTOCOLS.map((p) => h('option', { value: p }, p)));
  const state = h('select', { id: 'conv-state' }, h('option', { value: '' }, 'any'), STATES.map((p) => h('option', { value: p }, p)));
  const participant = h('input', { id: 'conv-participant', type: 'text' });
  const body = h('div', { id: 'conversation-list' });
  const load = async () => {
    const q = new URLSearchParams({ limit: '100' });
    if (protocol.value) q.set('protocol', protocol.value);
    if (state.value) q.set('state', state.value);
    if (participant.value.trim()) q.set('participant', participant.value.trim());
    const list = await api(`/v1/conversations?${q}`, { signal });
    clear(body, table(['conversation', 'protocol', 'state', 'participants', 'updated'],
      list.map((c) => [h('a', { href: `#/conversations/${encodeURIComponent(c.id)}` }, c.id), c.protocol, c.state,
        c.participants.join(', '), ago(c.updated_at_ms)])));
  };
  for (const c of [protocol, state]) c.addEventListener('change', load);
  participant.addEventListener('change', load);
  append(main, h('h1', {}, 'Conversations'),
    h('div', { class: 'row', role: 'search' }, field('Protocol', protocol), field('State', state), field('Participant', participant)),
    body);
  every(2000, signal, load, (e) => clear(body, problemView(e)));
}

function summary(m) {
  const first = (m.content || '').split('\n')[0];
  return first.length > 40 ? first.slice(0, 39) + '…' : first;
}

async function detail(main, id, signal) {
  const c = await api(`/v1/conversations/${encodeURIComponent(id)}`, { signal });
  const head = h('p', { id: 'conversation-state' });
  const diagram = h('div', { class: 'panel scroll', id: 'sequence' });
  const list = h('ol', { id: 'conversation-messages' });
  const messages = [];
  const seen = new Set();
  const select = (i) => { const d = document.getElementById(`msg-${i}`); if (d) { d.open = true; d.querySelector('summary').focus(); } };
  const draw = () => {
    clear(head, `${c.protocol} · started by ${c.initiator} · ${messages.length} messages`);
    clear(diagram, sequenceDiagram(messages.map((m) => ({ from: m.sender, to: m.receiver, kind: m.kind, summary: summary(m) })),
      { onSelect: select }));
  };
  const add = (m) => {
    if (seen.has(m.id + m.status)) return;
    const known = messages.findIndex((x) => x.id === m.id);
    seen.add(m.id + m.status);
    if (known >= 0) { messages[known] = m; list.children[known].replaceWith(item(m, known)); }
    else { messages.push(m); list.append(item(m, messages.length - 1)); }
    draw();
  };
  append(main, h('h1', {}, `Conversation ${id}`), head, diagram, h('h2', {}, 'Messages'), list);
  c.messages.forEach(add);
  draw();
  try {
    for await (const ev of sse(`/v1/conversations/${encodeURIComponent(id)}/stream`, { signal })) {
      if (ev.event === 'message') add(JSON.parse(ev.data));
    }
  } catch (e) {
    if (!signal.aborted) append(main, problemView(e));
  }
}

function item(m, i) {
  return h('li', {}, h('details', { id: `msg-${i}`, class: 'message' },
    h('summary', {}, `${m.sender} → ${m.receiver} · ${m.kind} · ${m.status}: ${summary(m)}`),
    h('pre', {}, m.content), json(m)));
}
