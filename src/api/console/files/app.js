// The console's shell: sign-in, navigation, and one page at a time. Each
// page gets an AbortSignal that fires when the person leaves it, which
// stops its streams and polls.

import { api, session, ApiError } from './api.js';
import { h, clear, problemView, append } from './dom.js';
import * as cluster from './cluster.js';
import * as agents from './agents.js';
import * as chat from './chat.js';
import * as conversations from './conversations.js';
import * as memory from './memory.js';
import * as tools from './tools.js';
import * as keys from './keys.js';

const PAGES = [
  { path: 'cluster', title: 'Cluster', scope: 'read', page: cluster },
  { path: 'agents', title: 'Agents', scope: 'read', page: agents },
  { path: 'chat', title: 'Chat', scope: 'invoke', page: chat },
  { path: 'conversations', title: 'Conversations', scope: 'invoke', page: conversations },
  { path: 'memory', title: 'Memory', scope: 'memory:read', page: memory },
  { path: 'tools', title: 'Tools', scope: 'read', page: tools },
  { path: 'keys', title: 'Keys', scope: 'admin', page: keys },
];

const main = document.getElementById('main');
let leave = null;
let routed = false;

function allowed() {
  return PAGES.filter((p) => session.can(p.scope));
}

function renderNav(current) {
  clear(document.getElementById('nav'), allowed().map((p) =>
    h('li', {}, h('a', { href: `#/${p.path}`, 'aria-current': p.path === current ? 'page' : false }, p.title))));
}

function renderWho() {
  const who = document.getElementById('who');
  if (!session.who) return clear(who);
  const w = session.who;
  clear(who,
    h('span', { title: `scopes: ${w.scopes.join(', ')}` }, w.mode === 'dev' ? 'dev mode (no key)' : `key ${w.key}`),
    h('span', { class: 'badge' }, `node ${w.node_id}`),
    w.mode === 'keys' ? h('button', { class: 'secondary', onclick: signOut }, 'Sign out') : null);
}

function signOut() {
  session.key = null;
  session.who = null;
  location.hash = '#/cluster';
  start();
}

function signIn(refusal) {
  renderNav(null);
  renderWho();
  document.title = 'Sign in · Caxton';
  const input = h('input', { type: 'password', id: 'api-key', name: 'api-key', autocomplete: 'off', required: true, spellcheck: false });
  const form = h('form', { class: 'panel stack', onsubmit: async (e) => {
    e.preventDefault();
    session.key = input.value.trim();
    await start();
  } },
  h('h1', {}, 'Sign in'),
  h('p', {}, 'This node needs an API key (', h('code', {}, 'caxton key create'), '). It is kept in this tab only and sent as a bearer header.'),
  h('label', { for: 'api-key' }, 'API key'), input,
  refusal ? problemView(refusal) : null,
  h('button', { type: 'submit' }, 'Sign in'));
  clear(main, h('div', { class: 'signin' }, form));
  input.focus();
}

async function route() {
  leave?.abort();
  leave = new AbortController();
  const [path, ...params] = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const pages = allowed();
  const page = pages.find((p) => p.path === path) || pages[0];
  if (!page) {
    clear(main, h('h1', {}, 'Nothing to show'), h('p', {}, 'This key has no scope the console can use.'));
    return;
  }
  renderNav(page.path);
  clear(document.getElementById('toasts'));
  document.title = `${page.title} · Caxton`;
  clear(main);
  try {
    await page.page.render(main, params.filter(Boolean), leave.signal);
  } catch (e) {
    if (leave.signal.aborted) return;
    if (!(e instanceof ApiError)) console.warn(e);
    append(main, problemView(e));
  }
  // After a change of page (not on the first load), reading goes on at the
  // new content, as it would after following a link to another page.
  if (routed && document.activeElement === document.body) main.focus({ preventScroll: true });
  // The first page is on screen: what benches/console.rs times.
  if (!routed) performance.mark('caxton:first-page');
  routed = true;
}

async function start() {
  // Without a key, ask first whether one is needed: a refused request
  // would be an error in the page for a person who has not yet typed one.
  if (!session.key) {
    try {
      const health = await api('/health');
      if (health.auth === 'keys') return signIn(null);
    } catch (e) {
      clear(main, problemView(e));
      return;
    }
  }
  const tried = session.key;
  session.who = null;
  try {
    session.who = await api('/v1/whoami');
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      const refused = tried ? e : null;
      session.key = null;
      return signIn(refused);
    }
    clear(main, problemView(e));
    return;
  }
  renderWho();
  await route();
}

window.addEventListener('hashchange', () => { if (session.who) route(); });
window.addEventListener('caxton:signed-out', () => {
  if (!session.who) return;
  session.key = null; session.who = null; signIn(new ApiError(401, { title: 'Your key is no longer accepted' })); });
start();
