// Chat: talk to an agent (or one revision of it, `NAME@N`) on whichever
// node runs it; tokens appear as the answer streams, and each turn shows
// what it used and the messages it sent other agents.

import { api, sse, session } from './api.js';
import { h, clear, field, problemView, append } from './dom.js';

export async function render(main, params, signal) {
  // Suggestions need the read scope; an invoke-only key types the name.
  const page = session.can('read') ? await api('/v1/agents?limit=500', { signal }) : { agents: [] };
  const to = h('input', { id: 'chat-to', list: 'chat-agents', required: true, autocomplete: 'off', value: params[0] || '' });
  const options = h('datalist', { id: 'chat-agents' }, page.agents.map((a) => h('option', { value: a.name })));
  const text = h('textarea', { id: 'chat-input', rows: 3, required: true });
  const log = h('div', { class: 'chat-log', id: 'chat-log', role: 'log', 'aria-live': 'polite', 'aria-label': 'Conversation' });
  const send = h('button', { type: 'submit', id: 'chat-send' }, 'Send');
  let conversation = null;
  let talkingTo = null;
  const form = h('form', { class: 'stack', onsubmit: async (e) => {
    e.preventDefault();
    const content = text.value.trim();
    if (!content || !to.value.trim()) return;
    if (talkingTo !== to.value.trim()) { conversation = null; talkingTo = to.value.trim(); }
    text.value = '';
    send.disabled = true;
    try {
      conversation = await turn(log, talkingTo, content, conversation, signal);
    } finally {
      send.disabled = false;
      text.focus();
    }
  } },
  h('div', { class: 'row' }, field('Agent (NAME or NAME@REVISION)', to), options,
    h('button', { type: 'button', class: 'secondary', onclick: () => { conversation = null; clear(log); } }, 'New conversation')),
  log, field('Message', text), h('div', { class: 'row' }, send));
  text.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) form.requestSubmit(); });
  append(main, h('h1', {}, 'Chat'), form);
}

async function turn(log, to, content, conversation, signal) {
  log.append(h('div', { class: 'bubble user' }, content));
  const answer = h('div', { class: 'bubble agent', 'aria-busy': 'true' });
  const detail = h('div', { class: 'turn-detail' });
  log.append(h('div', { class: 'stack' }, answer, detail));
  const body = { to, content, mode: 'async' };
  if (conversation) body.conversation_id = conversation;
  let sent;
  try {
    sent = await api('/v1/messages', { method: 'POST', body, signal });
  } catch (e) {
    answer.replaceWith(problemView(e));
    return conversation;
  }
  const id = sent.message.id;
  let streamed = '';
  let reply = null;
  try {
    for await (const ev of sse(`/v1/messages/${encodeURIComponent(id)}/stream`, { signal })) {
      if (ev.event === 'token') {
        streamed += ev.data;
        answer.textContent = streamed;
        answer.dataset.tokens = String(Number(answer.dataset.tokens || 0) + 1);
        log.scrollTop = log.scrollHeight;
      } else if (ev.event === 'reply') {
        reply = JSON.parse(ev.data);
        break;
      } else if (ev.event === 'error') {
        answer.textContent = ev.data;
        answer.classList.add('bad');
        break;
      }
    }
  } catch (e) {
    if (!signal.aborted) answer.replaceWith(problemView(e));
    return sent.message.conversation_id;
  }
  answer.removeAttribute('aria-busy');
  if (reply) {
    answer.textContent = reply.content;
    answer.dataset.done = 'true';
    if (reply.kind === 'error') answer.classList.add('bad');
    await describe(detail, sent.message, reply, signal);
  }
  return sent.message.conversation_id;
}

const MEMORY_WRITES = ['memory_store', 'memory_relate'];

/// What the turn did: the revision that answered, time, tokens, tool calls,
/// and the messages it sent other agents on the way.
async function describe(el, request, reply, signal) {
  const u = reply.usage || {};
  const facts = [reply.sender && `${reply.sender}`, reply.revision && `revision ${reply.revision}`,
    reply.served && `${reply.served.took_ms} ms`, u.tokens != null && `${u.tokens} tokens`,
    u.tool_calls ? `${u.tool_calls} tool call${u.tool_calls === 1 ? '' : 's'}` : null].filter(Boolean);
  clear(el, facts.join(' · '));
  if (reply.tool_calls?.length) {
    el.append(h('ol', { class: 'tool-calls', 'aria-label': 'What the turn did' }, reply.tool_calls.map((c) =>
      h('li', { class: c.ok ? '' : 'bad' }, h('strong', {}, MEMORY_WRITES.includes(c.name) ? `memory write (${c.name})` : `tool ${c.name}`),
        c.ok ? '' : ' (failed)', ' ', h('code', {}, c.arguments)))));
  }
  if (!u.tool_calls) return;
  try {
    const c = await api(`/v1/conversations/${encodeURIComponent(request.conversation_id)}`, { signal });
    const inner = c.messages.filter((m) => m.hop > request.hop && m.created_at_ms >= request.created_at_ms
      && m.created_at_ms <= reply.created_at_ms);
    if (inner.length) el.append(h('details', {}, h('summary', {}, `${inner.length} messages to other agents`),
      h('ul', {}, inner.map((m) => h('li', {}, `${m.sender} → ${m.receiver} (${m.kind}): ${m.content}`)))));
  } catch { /* the conversation view is a courtesy; the reply stands */ }
}
