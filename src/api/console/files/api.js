// The REST API as the console uses it: the key from sessionStorage as a
// bearer header (never a cookie or a URL, so no other site's request
// carries it), problem+json errors as exceptions, SSE read through fetch
// (EventSource cannot send a header).

const KEY = 'caxton.key';

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set key(v) { if (v) sessionStorage.setItem(KEY, v); else sessionStorage.removeItem(KEY); },
  who: null,
  can(scope) {
    const s = this.who?.scopes || [];
    return s.includes('admin') || s.includes(scope);
  },
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function headers(extra = {}) {
  const h = { Accept: 'application/json', ...extra };
  if (session.key) h.Authorization = `Bearer ${session.key}`;
  return h;
}

export async function api(path, { method = 'GET', body, type, signal } = {}) {
  const extra = {};
  let payload = body;
  if (body !== undefined && typeof body !== 'string') { payload = JSON.stringify(body); extra['Content-Type'] = 'application/json'; }
  else if (body !== undefined) extra['Content-Type'] = type || 'application/json';
  const r = await fetch(path, { method, headers: headers(extra), body: payload, signal, cache: 'no-store' });
  if (!r.ok) {
    let problem;
    try { problem = await r.json(); } catch { problem = { title: r.statusText }; }
    if (r.status === 401 && session.key) window.dispatchEvent(new CustomEvent('caxton:signed-out'));
    throw new ApiError(r.status, problem);
  }
  if (r.status === 204) return null;
  const ct = r.headers.get('content-type') || '';
  return ct.includes('json') ? r.json() : r.text();
}

/// The events of a `text/event-stream` answer, as `{event, data, id}`,
/// until the stream ends or `signal` aborts it.
export async function* sse(path, { method = 'GET', body, signal } = {}) {
  const extra = { Accept: 'text/event-stream' };
  if (body !== undefined) extra['Content-Type'] = 'application/json';
  const r = await fetch(path, { method, headers: headers(extra), signal, cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body) });
  if (!r.ok) {
    let problem;
    try { problem = await r.json(); } catch { problem = { title: r.statusText }; }
    throw new ApiError(r.status, problem);
  }
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let ev = { event: 'message', data: [], id: null };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let nl;
      while ((nl = buf.search(/\r?\n/)) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf[nl] === '\r' ? 2 : 1));
        if (line === '') {
          if (ev.data.length) yield { event: ev.event, data: ev.data.join('\n'), id: ev.id };
          ev = { event: 'message', data: [], id: null };
        } else if (!line.startsWith(':')) {
          const i = line.indexOf(':');
          const k = i < 0 ? line : line.slice(0, i);
          const v = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
          if (k === 'event') ev.event = v;
          else if (k === 'data') ev.data.push(v);
          else if (k === 'id') ev.id = v;
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/// Runs `fn` now and every `ms` until `signal` aborts; errors are shown by `onError`.
export function every(ms, signal, fn, onError) {
  let timer;
  const tick = async () => {
    if (signal.aborted) return;
    try { await fn(); } catch (e) { if (!signal.aborted) onError?.(e); }
    if (!signal.aborted) timer = setTimeout(tick, ms);
  };
  signal.addEventListener('abort', () => clearTimeout(timer));
  tick();
}
