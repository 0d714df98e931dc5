// Agents: the list, one agent in full (revisions and their diff, usage
// against limits, rollback, its rollout as it runs), and the TOML editor
// that deploys or edits one.

import { api, session, every, ApiError } from './api.js';
import { h, clear, table, toast, problemView, confirmAction, when, field, diffView, append } from './dom.js';
import { lineChart } from './svg.js';
import { tomlEditor } from './editor.js';

const TEMPLATE = `name = "my-agent"
provider = "echo"
capabilities = ["example"]
system_prompt = """
You are a helpful agent.
"""
`;

export async function render(main, params, signal) {
  const [name, sub] = params;
  if (name === '+new') return editor(main, null);
  if (name && sub === 'edit') return editor(main, name);
  if (name) return detail(main, name, signal);
  return list(main);
}

async function list(main) {
  const search = h('input', { type: 'search', id: 'agent-search', placeholder: 'name or capability' });
  const capability = h('input', { type: 'text', id: 'agent-capability', placeholder: 'exact capability' });
  const state = h('select', { id: 'agent-state' }, h('option', { value: '' }, 'any'),
    h('option', { value: 'running' }, 'running here'), h('option', { value: 'remote' }, 'on another node'));
  const body = h('div', { id: 'agent-list' });
  const more = h('button', { class: 'secondary', hidden: true }, 'Load more');
  let agents = [];
  let next = null;
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const shown = agents.filter((a) => (!q || a.name.includes(q) || a.capabilities.some((c) => c.toLowerCase().includes(q)))
      && (!state.value || a.state === state.value));
    clear(body, h('p', { class: 'muted' }, `${shown.length} of ${agents.length} loaded agents`),
      table(['name', 'revision', 'version', 'owner node', 'state', 'capabilities', 'updated'],
        shown.map((a) => [h('a', { href: `#/agents/${encodeURIComponent(a.name)}` }, a.name), String(a.revision), a.version,
          `node ${a.owner_node}`, a.state, a.capabilities.join(', '), new Date(a.updated_at).toLocaleString()])));
    more.hidden = !next;
  };
  const load = async (reset) => {
    if (reset) { agents = []; next = null; }
    const q = new URLSearchParams({ limit: '200' });
    if (capability.value.trim()) q.set('capability', capability.value.trim());
    if (next) q.set('after', next);
    try {
      const page = await api(`/v1/agents?${q}`);
      agents = agents.concat(page.agents);
      next = page.next || null;
      draw();
    } catch (e) { clear(body, problemView(e)); }
  };
  search.addEventListener('input', draw);
  state.addEventListener('change', draw);
  capability.addEventListener('change', () => load(true));
  more.addEventListener('click', () => load(false));
  append(main, h('div', { class: 'row' }, h('h1', {}, 'Agents'),
    session.can('deploy') ? h('a', { class: 'button', href: '#/agents/+new', id: 'deploy-agent' }, 'Deploy an agent') : null),
  h('div', { class: 'row', role: 'search' }, field('Search', search), field('Capability', capability), field('State', state)),
  body, more);
  await load(true);
}

async function detail(main, name, signal) {
  const a = await api(`/v1/agents/${encodeURIComponent(name)}`, { signal });
  const deploy = session.can('deploy') && a.source.kind === 'api';
  append(main, 
    h('div', { class: 'row' }, h('h1', {}, a.name),
      h('span', { class: 'badge' }, `revision ${a.revision}`),
      deploy ? h('a', { class: 'button', href: `#/agents/${encodeURIComponent(a.name)}/edit` }, 'Edit') : null,
      deploy ? h('button', { class: 'danger', onclick: () => removeAgent(a.name) }, 'Remove') : null),
    a.source.kind === 'file' ? h('p', { class: 'muted' }, `Managed by the file ${a.source.value}: edit the file, not here.`) : null,
    a.source_errors.length ? h('div', { class: 'problem' }, h('strong', {}, 'Its file is broken (the deployed revision keeps running):'),
      h('ul', {}, a.source_errors.map((e) => h('li', {}, `line ${e.line ?? '?'}, column ${e.column ?? '?'}: ${e.field} — ${e.reason}`)))) : null,
    h('div', { class: 'grid' },
      h('section', { class: 'panel' }, h('h2', {}, 'Summary'),
        table(['', ''], [['version', a.version], ['owner node', `node ${a.owner_node} (${a.state})`],
          ['provider', a.spec.provider || '(default)'], ['capabilities', a.capabilities.join(', ') || '–'],
          ['tools', a.tools.join(', ') || '–'], ['deployed', new Date(a.deployed_at).toLocaleString()]])),
      h('section', { class: 'panel' }, h('h2', {}, 'Usage today against limits'), usage(a))),
    rolloutPanel(a, signal, deploy),
    h('section', { class: 'panel' }, h('h2', {}, 'Definition'), h('pre', { id: 'agent-definition' }, a.toml)),
    await revisions(a, deploy));
}

function usage(a) {
  const l = a.limits || {};
  const u = a.usage || {};
  const row = (what, used, limit) => [what, String(used ?? 0), limit == null ? 'no limit' : String(limit),
    limit ? h('meter', { min: 0, max: limit, value: Math.min(used ?? 0, limit), 'aria-label': `${what} used` }) : ''];
  return table(['', 'used', 'limit', ''], [row('tokens', u.tokens, l.tokens_per_day),
    row('spend (USD)', (u.spend_usd ?? 0).toFixed(4), l.spend_per_day_usd), row('turns', u.turns, null),
    ['concurrency', '', l.concurrency == null ? 'no limit' : String(l.concurrency), '']]);
}

async function revisions(a, deploy) {
  const r = await api(`/v1/agents/${encodeURIComponent(a.name)}/revisions`);
  const opts = (sel) => r.revisions.map((v) => h('option', { value: v.revision, selected: v.revision === sel }, `revision ${v.revision} (${v.version})`));
  const prev = r.revisions.length > 1 ? r.revisions[r.revisions.length - 2].revision : r.serving;
  const from = h('select', { id: 'diff-from' }, opts(prev));
  const to = h('select', { id: 'diff-to' }, opts(r.serving));
  const out = h('div', { id: 'revision-diff' });
  const diff = async () => {
    const [x, y] = await Promise.all([from.value, to.value].map((n) =>
      api(`/v1/agents/${encodeURIComponent(a.name)}/revisions/${n}`)));
    clear(out, diffView(x.toml || '', y.toml || ''));
  };
  from.addEventListener('change', diff);
  to.addEventListener('change', diff);
  const rows = r.revisions.map((v) => [String(v.revision) + (v.revision === r.serving ? ' (serving)' : ''), v.version,
    when(v.deployed_at_ms), v.deployed_by || '–',
    deploy && v.revision !== r.serving ? h('button', { class: 'secondary', onclick: () => rollback(a.name, v.revision) },
      `Roll back to ${v.revision}`) : '']);
  const section = h('section', { class: 'panel', id: 'agent-revisions' }, h('h2', {}, 'Revisions'),
    table(['revision', 'version', 'deployed', 'by', ''], rows),
    h('h3', {}, 'Compare'), h('div', { class: 'row' }, field('From', from), field('To', to)), out);
  diff().catch((e) => clear(out, problemView(e)));
  return section;
}

async function rollback(name, to) {
  if (!(await confirmAction(`Serve revision ${to} of ${name} again, at once?`, 'Roll back'))) return;
  try {
    const r = await api(`/v1/agents/${encodeURIComponent(name)}/rollback`, { method: 'POST', body: { to } });
    toast(`revision ${r.restored} restored as revision ${r.revision}`);
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  } catch (e) { toast(e.message, 'error'); }
}

async function removeAgent(name) {
  if (!(await confirmAction(`Remove agent ${name}? Its conversations end.`, 'Remove'))) return;
  try {
    await api(`/v1/agents/${encodeURIComponent(name)}`, { method: 'DELETE' });
    toast(`${name} removed`);
    location.hash = '#/agents';
  } catch (e) { toast(e.message, 'error'); }
}

const rate = (f) => (f && f.requests ? f.errors / f.requests : 0);

/// The rollout as it runs: state, step and weight, each revision's error
/// rate and p95 latency over time, and the analysis' last decision.
function rolloutPanel(a, signal, deploy) {
  const el = h('section', { class: 'panel', id: 'rollout', 'aria-live': 'polite' });
  const history = { stable: [], candidate: [] };
  let seen = false;
  // An agent's latest rollout is kept once it has one: ask for the agent
  // again only until it does.
  let known = !!a.rollout_state;
  every(1000, signal, async () => {
    // Asked first whether there is a rollout at all: `…/rollout` answers
    // 409 for an agent that never had one.
    if (!known) known = !!(await api(`/v1/agents/${encodeURIComponent(a.name)}`, { signal })).rollout_state;
    if (!known) { el.hidden = true; return; }
    const r = await api(`/v1/agents/${encodeURIComponent(a.name)}/rollout`, { signal });
    el.hidden = false;
    seen = true;
    const at = Date.now();
    if (r.stable_now) history.stable.push([at, rate(r.stable_now), r.stable_now.p95_ms ?? 0]);
    if (r.candidate_now) history.candidate.push([at, rate(r.candidate_now), r.candidate_now.p95_ms ?? 0]);
    const series = (i) => [
      { name: `revision ${r.stable} (stable)`, points: history.stable.map((p) => [p[0], p[i]]) },
      { name: `revision ${r.candidate} (candidate)`, points: history.candidate.map((p) => [p[0], p[i]]) }];
    const active = ['progressing', 'paused'].includes(r.state);
    const act = (action, label, cls = 'secondary') => h('button', { class: cls, onclick: async () => {
      try { await api(`/v1/agents/${encodeURIComponent(a.name)}/rollout/${action}`, { method: 'POST' }); toast(`rollout ${action}`); }
      catch (e) { toast(e.message, 'error'); }
    } }, label);
    const check = r.last_check;
    clear(el, h('h2', {}, `Rollout: ${r.spec.strategy}`),
      h('p', {}, h('strong', { id: 'rollout-state' }, r.state), ` · step ${r.step + 1} of ${r.spec.steps.length || 1}`,
        ` · `, h('span', { id: 'rollout-weight' }, `${r.weight} %`), ` of new conversations on revision ${r.candidate}`,
        r.step_time_left_ms != null ? ` · next step in ${Math.ceil(r.step_time_left_ms / 1000)} s` : ''),
      r.reason ? h('p', {}, 'Reason: ', r.reason) : null,
      check ? h('p', { id: 'rollout-decision' }, 'Last analysis: ',
        h('strong', { class: check.passed ? 'ok' : 'bad' }, check.passed ? 'passed' : 'failed'),
        check.note ? ` — ${check.note}` : '', ` (${check.candidate.requests} candidate, ${check.stable.requests} stable requests)`) : null,
      h('div', { class: 'chart-legend' }, h('span', {}, h('span', { class: 'swatch s1' }), `revision ${r.stable} (stable)`),
        h('span', {}, h('span', { class: 'swatch s2' }), `revision ${r.candidate} (candidate)`)),
      h('div', { class: 'grid' },
        h('figure', {}, lineChart(series(1), { title: 'Error rate' }), h('figcaption', {}, 'Error rate')),
        h('figure', {}, lineChart(series(2), { title: 'p95 latency', unit: ' ms' }), h('figcaption', {}, 'p95 latency (ms)'))),
      deploy && active ? h('div', { class: 'row' }, act('promote', 'Promote'),
        r.state === 'paused' ? act('resume', 'Resume') : act('pause', 'Pause'), act('abort', 'Abort', 'danger')) : null);
  }, (e) => { if (seen) clear(el, problemView(e)); });
  el.hidden = true;
  return el;
}

async function editor(main, name) {
  if (!session.can('deploy')) {
    append(main, h('h1', {}, 'Deploy an agent'), problemView(new ApiError(403, { title: 'Not allowed', detail: 'Deploying needs a key with the deploy scope.', extra: { required_scope: 'deploy' } })));
    return;
  }
  const current = name ? await api(`/v1/agents/${encodeURIComponent(name)}`) : null;
  const strategy = h('select', { id: 'deploy-strategy' }, h('option', { value: '' }, 'as the definition says'),
    ['direct', 'canary', 'blue-green', 'shadow'].map((s) => h('option', { value: s }, s)));
  const verdict = h('p', { id: 'verdict', 'aria-live': 'polite', class: 'muted' }, 'Checking…');
  const submit = h('button', { type: 'submit', id: 'deploy-submit', disabled: true }, name ? 'Deploy new revision' : 'Deploy');
  const result = h('div');
  const ed = tomlEditor(current ? current.toml : TEMPLATE, { onVerdict: (v) => {
    submit.disabled = !v.valid;
    if (v.problem) clear(verdict, problemView(v.problem));
    else clear(verdict, v.valid ? h('span', { class: 'ok' }, `Valid: agent ${v.name}`)
      : h('span', { class: 'bad' }, `${v.errors.length} error${v.errors.length === 1 ? '' : 's'}`));
  } });
  const form = h('form', { class: 'stack', onsubmit: async (e) => {
    e.preventDefault();
    submit.disabled = true;
    const q = strategy.value ? `?strategy=${strategy.value}` : '';
    const path = name ? `/v1/agents/${encodeURIComponent(name)}${q}` : `/v1/agents${q}`;
    try {
      const r = await api(path, { method: name ? 'PUT' : 'POST', body: ed.value, type: 'application/toml' });
      toast(`${r.name}: revision ${r.revision}${r.changed ? '' : ' (unchanged)'}`);
      location.hash = `#/agents/${encodeURIComponent(r.name)}`;
    } catch (err) {
      if (err.problem?.errors) ed.showErrors(err.problem.errors);
      clear(result, problemView(err));
      submit.disabled = false;
    }
  } }, ed.el, field('Rollout strategy', strategy), verdict, h('div', { class: 'row' }, submit), result);
  append(main, h('h1', {}, name ? `Edit ${name}` : 'Deploy an agent'), form);
  ed.check();
}
