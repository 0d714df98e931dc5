// Cluster: who leads, each member's role, lag and health, shard placement,
// live events, and the administrator's actions (each confirmed first).

import { api, sse, session, every } from './api.js';
import { h, clear, table, toast, problemView, confirmAction, when, append } from './dom.js';

export async function render(main, _params, signal) {
  const status = h('div', { class: 'panel', id: 'cluster-status' });
  const members = h('div', { class: 'panel', id: 'cluster-members' });
  const placement = h('div', { class: 'panel', id: 'cluster-placement' });
  const events = h('ol', { class: 'events', id: 'cluster-events', 'aria-live': 'polite', reversed: true });
  const admin = session.can('admin');
  append(main, 
    h('h1', {}, 'Cluster'),
    h('div', { class: 'grid' }, status, placement),
    members,
    admin ? h('section', { class: 'panel', 'aria-labelledby': 'events-h' },
      h('h2', { id: 'events-h' }, 'Live events'), events) : null);

  const refresh = async () => {
    const [s, m, p] = await Promise.all([
      api('/v1/cluster/status', { signal }), api('/v1/cluster/members', { signal }), api('/v1/cluster/placement', { signal })]);
    drawStatus(status, s);
    drawMembers(members, s, m.members, admin, refresh);
    drawPlacement(placement, p, admin, refresh);
  };
  every(2000, signal, refresh, (e) => clear(status, problemView(e)));
  if (admin) follow(events, signal);
}

function drawStatus(el, s) {
  clear(el, h('h2', {}, 'This node'),
    table(['node', 'state', 'leader', 'term', 'applied index', 'last log index'],
      [[String(s.node_id), s.state, s.leader == null ? 'none' : `node ${s.leader}`, String(s.term),
        String(s.applied_index ?? '–'), String(s.last_log_index ?? '–')]]),
    h('p', { class: 'muted' }, `Cluster ${s.cluster_id || '(not joined)'} · ${s.stored_log_entries} log entries stored`));
}

function health(m) {
  if (!m.alive) return h('span', { class: 'bad' }, 'unreachable');
  if (!m.ready) return h('span', { class: 'warn' }, 'catching up');
  return h('span', { class: 'ok' }, 'healthy');
}

function expiry(at) {
  if (!at) return h('span', { class: 'muted' }, 'no TLS');
  const days = (at * 1000 - Date.now()) / 86400000;
  const cls = days < 7 ? 'bad' : days < 21 ? 'warn' : 'ok';
  return h('span', { class: cls, title: when(at * 1000) }, days < 0 ? 'expired' : `in ${Math.floor(days)} days`);
}

/// Lag: how far a member's applied index is behind the leader's, as
/// gossip last heard them (every node publishes its own every 2 s).
function drawMembers(el, s, members, admin, refresh) {
  const leader = members.find((m) => m.is_leader);
  const ahead = leader?.applied_index ?? Math.max(0, ...members.map((m) => m.applied_index ?? 0));
  const rows = members.map((m) => {
    const lag = m.applied_index == null ? '–' : String(Math.max(0, ahead - m.applied_index));
    const actions = admin ? h('div', { class: 'row' },
      !m.is_leader && m.role === 'voter' ? h('button', { class: 'secondary', onclick: () => transfer(m.id, refresh) },
        `Make node ${m.id} leader`) : null,
      h('button', { class: 'danger', onclick: () => remove(m.id, refresh) }, `Remove node ${m.id}`)) : null;
    return [String(m.id), h('span', {}, m.role, m.is_leader ? ' ' : '', m.is_leader ? h('span', { class: 'badge ok' }, 'leader') : null),
      m.api_addr, m.term == null ? '–' : String(m.term), m.applied_index == null ? '–' : String(m.applied_index), lag,
      health(m), expiry(m.certificate_expires_at), m.load == null ? '–' : String(m.load), actions];
  });
  clear(el, h('h2', {}, 'Members'),
    table(['node', 'role', 'API address', 'term', 'applied index', 'lag', 'health', 'certificate expires', 'load',
      admin ? 'actions' : ''], rows));
}

function drawPlacement(el, p, admin, refresh) {
  clear(el, h('h2', {}, 'Shard placement'),
    h('p', {}, `${p.assigned} of ${p.shards} shards assigned, epoch ${p.max_epoch}.`),
    table(['node', 'shards', 'agents'], p.nodes.map((n) => [String(n.node), String(n.shards),
      n.agents.length ? n.agents.map((a, i) => [i ? ', ' : '', h('a', { href: `#/agents/${encodeURIComponent(a)}` }, a)]) : '–'])),
    admin ? h('button', { class: 'secondary', onclick: () => rebalance(refresh) }, 'Rebalance shards') : null);
}

async function transfer(id, refresh) {
  if (!(await confirmAction(`Transfer leadership to node ${id}? Writes pause for a moment while it takes over.`, 'Transfer'))) return;
  try {
    const r = await api('/v1/cluster/transfer-leader', { method: 'POST', body: { node: id } });
    toast(r.detail || `node ${id} leads`);
  } catch (e) { toast(e.message, 'error'); }
  refresh();
}

async function remove(id, refresh) {
  if (!(await confirmAction(`Remove node ${id} from the cluster? Its agents move to other nodes; it must be wiped to rejoin.`, 'Remove'))) return;
  try {
    const r = await api(`/v1/cluster/members/${id}/remove`, { method: 'POST' });
    toast(r.detail || `node ${id} removed`);
  } catch (e) { toast(e.message, 'error'); }
  refresh();
}

async function rebalance(refresh) {
  if (!(await confirmAction('Move shards so that every ready node holds its share?', 'Rebalance'))) return;
  try {
    const r = await api('/v1/cluster/rebalance', { method: 'POST' });
    toast(`${r.moved} shards moved`);
  } catch (e) { toast(e.message, 'error'); }
  refresh();
}

async function follow(list, signal) {
  try {
    for await (const ev of sse('/v1/events', { signal })) {
      let e;
      try { e = JSON.parse(ev.data); } catch { continue; }
      const parts = [e.agent && `agent ${e.agent}`, e.revision && `revision ${e.revision}`, e.owner && `on node ${e.owner}`,
        e.leader && `leader ${e.leader}`, e.term && `term ${e.term}`, e.member && `member ${e.member}`, e.role,
        e.step !== undefined && `step ${e.step + 1}`, e.limit].filter(Boolean);
      list.prepend(h('li', {}, h('time', { datetime: new Date(e.at_ms || Date.now()).toISOString() },
        new Date(e.at_ms || Date.now()).toLocaleTimeString()), ' ', h('strong', {}, ev.event), ' ', parts.join(', ')));
      while (list.children.length > 200) list.lastChild.remove();
    }
  } catch (e) {
    if (!signal.aborted) list.prepend(h('li', {}, problemView(e)));
  }
}
