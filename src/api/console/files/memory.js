// Memory: semantic search, an entity with its observations, and its
// neighbourhood drawn as a graph whose nodes lead to their own entities.

import { api } from './api.js';
import { h, clear, table, field, problemView, when, append } from './dom.js';
import { neighbourhood } from './svg.js';

const SCOPES = ['global', 'workspace', 'agent_only'];

/// The query that names an entity where it lives.
function where(scope, owner) {
  const q = new URLSearchParams({ scope });
  if (scope === 'agent_only') q.set('agent', owner);
  if (scope === 'workspace') q.set('workspace', owner || 'default');
  return q;
}

function link(name, scope, owner) {
  return `#/memory/${encodeURIComponent(name)}/${scope}/${encodeURIComponent(owner || '')}`;
}

export async function render(main, params, signal) {
  if (params[0]) return entity(main, params[0], params[1] || 'global', params[2] || '', signal);
  const q = h('input', { type: 'search', id: 'memory-query', required: true });
  const scope = h('select', { id: 'memory-scope' }, h('option', { value: '' }, 'all I may see'), SCOPES.map((s) => h('option', { value: s }, s)));
  const agent = h('input', { type: 'text', id: 'memory-agent' });
  const results = h('div', { id: 'memory-results', 'aria-live': 'polite' });
  const form = h('form', { class: 'row', role: 'search', onsubmit: async (e) => {
    e.preventDefault();
    const p = new URLSearchParams({ q: q.value, limit: '20' });
    if (scope.value) p.set('scope', scope.value);
    if (agent.value.trim()) p.set('agent', agent.value.trim());
    try {
      const r = await api(`/v1/memory/search?${p}`, { signal });
      clear(results, table(['entity', 'type', 'score', 'best matching observation', 'scope', 'related'],
        r.results.map((x) => [h('a', { href: link(x.name, x.scope, x.owner) }, x.name), x.entity_type, x.score.toFixed(3),
          x.observation, x.owner ? `${x.scope} (${x.owner})` : x.scope,
          x.related.map((rel) => `${rel.direction === 'out' ? '→' : '←'} ${rel.relation_type} ${rel.name}`).join(', ')])));
    } catch (err) { clear(results, problemView(err)); }
  } }, field('Search memory', q), field('Scope', scope), field('Agent (for agent_only)', agent),
  h('button', { type: 'submit', id: 'memory-search' }, 'Search'));
  append(main, h('h1', {}, 'Memory'), form, results);
  q.focus();
}

async function entity(main, name, scope, owner, signal) {
  const q = where(scope, owner);
  const [e, n] = await Promise.all([
    api(`/v1/memory/entities/${encodeURIComponent(name)}?${q}`, { signal }),
    api(`/v1/memory/entities/${encodeURIComponent(name)}/neighbours?${q}`, { signal })]);
  const first = n.neighbours.filter((x) => x.depth === 1);
  append(main, h('p', {}, h('a', { href: '#/memory' }, '← Search')),
    h('h1', {}, e.name, ' ', h('span', { class: 'badge' }, e.entity_type)),
    h('p', { class: 'muted' }, `${e.scope}${e.owner ? ` (${e.owner})` : ''} · updated ${when(e.updated_at_ms)}`),
    h('div', { class: 'grid' },
      h('section', { class: 'panel' }, h('h2', {}, 'Observations'),
        h('ul', { id: 'observations' }, e.observations.map((o) => h('li', {}, o.text, ' ', h('small', { class: 'muted' }, when(o.created_at_ms)))))),
      h('section', { class: 'panel', id: 'neighbourhood' }, h('h2', {}, 'Neighbourhood'),
        first.length ? neighbourhood(e.name, first.map((x) => ({ name: x.name,
          relation: `${x.direction === 'out' ? '' : '← '}${x.relation_type}` })), { onSelect: true })
          : h('p', { class: 'muted' }, 'No relations.'),
        first.length ? h('ul', { class: 'muted' }, first.map((x) => h('li', {},
          x.direction === 'out' ? `${e.name} ${x.relation_type} ` : '', h('a', { href: link(x.name, scope, owner) }, x.name),
          x.direction === 'in' ? ` ${x.relation_type} ${e.name}` : ''))) : null)));
  // The graph's links carry only the name: keep this entity's scope for them.
  main.querySelectorAll('#neighbourhood svg a').forEach((a) => {
    const target = decodeURIComponent(a.getAttribute('href').replace('#/memory/', ''));
    a.setAttribute('href', link(target, scope, owner));
  });
}
