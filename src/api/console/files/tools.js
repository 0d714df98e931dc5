// Tools: each MCP server with its limits and tools, every tool's schema,
// and a form built from that schema to call it.

import { api, session } from './api.js';
import { h, clear, table, field, problemView, json, append } from './dom.js';

export async function render(main, _params, signal) {
  const { servers } = await api('/v1/mcp-servers', { signal });
  append(main, h('h1', {}, 'Tools'));
  if (!servers.length) append(main, h('p', { class: 'muted' }, 'No tool servers are deployed (caxton tool deploy).'));
  for (const s of servers) {
    append(main, h('section', { class: 'panel', 'aria-labelledby': `server-${s.name}` },
      h('h2', { id: `server-${s.name}` }, s.name, ' ', h('span', { class: 'badge' }, s.version || 'remote')),
      s.description ? h('p', {}, s.description) : null,
      s.remote ? h('p', { class: s.remote.available ? 'ok' : 'bad' }, `remote ${s.remote.url}: ${s.remote.available ? 'available' : s.remote.error || 'unavailable'}`) : null,
      h('h3', {}, 'Limits'),
      table(['timeout', 'memory', 'fuel', 'input', 'output'], [[`${s.limits.timeout_ms} ms`, `${s.limits.max_memory_mb} MiB`,
        String(s.limits.fuel), `${s.limits.max_input_kb} KiB`, `${s.limits.max_output_kb} KiB`]]),
      s.tools.map((t) => tool(s, t))));
  }
}

function tool(server, t) {
  const id = `${server.name}-${t.name}`.replace(/[^A-Za-z0-9_-]/g, '-');
  const schema = t.inputSchema || { type: 'object', properties: {} };
  const inputs = [];
  const controls = Object.entries(schema.properties || {}).map(([name, p]) => {
    const required = (schema.required || []).includes(name);
    const control = inputFor(`${id}-${name}`, p, required);
    inputs.push([name, p, control]);
    return field(`${name}${required ? ' (required)' : ''}`, control, p.description);
  });
  const out = h('div', { id: `${id}-result`, class: 'tool-result', 'aria-live': 'polite' });
  const can = session.can('invoke');
  const form = h('form', { class: 'stack', id: `${id}-form`, onsubmit: async (e) => {
    e.preventDefault();
    let args;
    try { args = collect(inputs); } catch (err) { clear(out, h('p', { class: 'bad', role: 'alert' }, err.message)); return; }
    try {
      const r = await api(`/v1/tools/${encodeURIComponent(server.name)}%2F${encodeURIComponent(t.name)}/call`, { method: 'POST', body: { arguments: args } });
      const text = (r.content || []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
      clear(out, r.isError ? h('p', { class: 'bad' }, 'The tool reported an error:') : null, text ? h('pre', {}, text) : null,
        h('details', {}, h('summary', {}, 'Raw result'), json(r)));
    } catch (err) { clear(out, problemView(err)); }
  } }, controls, can ? h('button', { type: 'submit' }, `Call ${t.name}`) : h('p', { class: 'muted' }, 'Calling needs the invoke scope.'), out);
  return h('details', { class: 'tool' }, h('summary', {}, h('strong', {}, t.name), t.description ? ` — ${t.description}` : ''),
    h('div', { class: 'grid' }, h('div', {}, h('h4', {}, 'Call'), form), h('div', {}, h('h4', {}, 'Input schema'), json(schema))));
}

function inputFor(id, p, required) {
  if (Array.isArray(p.enum)) return h('select', { id, required }, required ? null : h('option', { value: '' }, '—'), p.enum.map((v) => h('option', { value: JSON.stringify(v) }, String(v))));
  switch (p.type) {
    case 'boolean': return h('input', { id, type: 'checkbox' });
    case 'integer': return h('input', { id, type: 'number', step: '1', required, min: p.minimum, max: p.maximum });
    case 'number': return h('input', { id, type: 'number', step: 'any', required, min: p.minimum, max: p.maximum });
    case 'string': return p.maxLength > 200 || !p.maxLength ? h('textarea', { id, rows: 2, required }) : h('input', { id, type: 'text', required, maxlength: p.maxLength });
    default: return h('textarea', { id, rows: 3, required, placeholder: 'JSON' });
  }
}

function collect(inputs) {
  const args = {};
  for (const [name, p, c] of inputs) {
    if (Array.isArray(p.enum)) { if (c.value) args[name] = JSON.parse(c.value); continue; }
    if (p.type === 'boolean') { args[name] = c.checked; continue; }
    if (c.value === '') continue;
    if (p.type === 'integer' || p.type === 'number') args[name] = Number(c.value);
    else if (p.type === 'string') args[name] = c.value;
    else {
      try { args[name] = JSON.parse(c.value); } catch { throw new Error(`${name}: not valid JSON`); }
    }
  }
  return args;
}
