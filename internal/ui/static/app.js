// fqdngate console. Every string from the API is attacker-controlled (a
// device chooses the names it asks for, an upstream the CNAME chains): the
// DOM is built with createElement and textContent only, never innerHTML.
'use strict';

const TOKEN_KEY = 'fqdngate.token';
const POLL_MS = 1000;
const HISTORY_S = 600; // the chart's window: ten minutes of 1 s samples
const MAX_ROWS = 500; // rows kept on the drops page
const CLIENT_DROPS = 20; // the latest drops on a client's page
const REASONS = ['never-resolved', 'expired', 'other-client', 'port', 'denied-name', 'dot', 'dns'];
const COLORS = {
  queries: '#2563eb', 'never-resolved': '#dc2626', expired: '#d97706', 'other-client': '#7c3aed',
  port: '#db2777', 'denied-name': '#0d9488', dot: '#4b5563', dns: '#65a30d',
};

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  status: null, // the latest /api/v1/status
  started: null, // the daemon's start time, to notice a restart
  up: null, // true once the API answered, false while it does not
  history: [], // {t, q, drops{reason: n}} samples of the counters
  view: null, // {stop()} of the current view
  restartHooks: new Set(),
};

class NeedToken extends Error {}
class Down extends Error {}

// el makes an element; children that are strings become text nodes.
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return e;
}

function $(id) { return document.getElementById(id); }

// put replaces a node's children, leaving out the absent ones.
function put(node, ...kids) {
  node.replaceChildren(...kids.flat().filter(k => k !== null && k !== undefined && k !== false));
}

function banner(msg, kind) {
  const b = $('banner');
  b.textContent = msg;
  b.className = 'banner ' + (kind || 'info');
  b.hidden = !msg;
}

function setUp(up, why) {
  const c = $('conn');
  if (up) {
    if (state.up === false) banner('fqdngate answers again; the page is live.', 'info');
    c.textContent = 'live';
    c.className = 'conn ok';
  } else {
    c.textContent = 'disconnected: retrying';
    c.className = 'conn down';
    banner('fqdngate does not answer (' + why + '). Retrying every second; the page resumes by itself.', 'down');
  }
  state.up = up;
}

// api fetches JSON with the token. A 401 shows the token form.
async function api(path) {
  const headers = { Accept: 'application/json' };
  if (state.token) headers.Authorization = 'Bearer ' + state.token;
  let res;
  try {
    res = await fetch(path, { headers, cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    setUp(false, e.message || 'network error');
    throw new Down();
  }
  if (res.status === 401) {
    let why = 'This API needs a token.';
    try { why = (await res.json()).error || why; } catch (_) { /* not JSON */ }
    askToken(why);
    throw new NeedToken();
  }
  if (res.status === 429) {
    // Someone is guessing tokens; the API throttles failures for everyone.
    banner('fqdngate refuses failed authentications for a moment (429); retrying.', 'down');
    throw new Down();
  }
  if (!res.ok) {
    let why = 'HTTP ' + res.status;
    try { why = (await res.json()).error || why; } catch (_) { /* not JSON */ }
    if (res.status >= 500) setUp(false, why);
    throw new Error(why);
  }
  if (state.up !== true) setUp(true);
  $('login').hidden = true;
  return res.json();
}

function askToken(why) {
  const c = $('conn');
  c.textContent = '401: token required';
  c.className = 'conn down';
  $('login-why').textContent = 'The API answered 401 Unauthorized: ' + why + (state.token ? ' (the stored token was refused)' : '');
  $('login').hidden = false;
  $('view').hidden = true;
}

function tokenNote() { $('token-note').hidden = !state.token; }

// every runs f now and every ms until the view changes; errors are shown
// by api() and the next round tries again.
function every(ms, f, stops) {
  let timer = null;
  let stopped = false;
  const round = async () => {
    try { await f(); } catch (e) {
      if (!(e instanceof NeedToken) && !(e instanceof Down)) console.warn(e);
    }
    if (!stopped) timer = setTimeout(round, ms);
  };
  round();
  stops.push(() => { stopped = true; clearTimeout(timer); });
}

function fmtDur(s) {
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  if (d) return d + 'd ' + h + 'h';
  if (h) return h + 'h ' + m + 'm';
  if (m) return s % 60 ? m + 'm ' + (s % 60) + 's' : m + 'm';
  return s + 's';
}
function fmtTime(t) { return t ? new Date(t).toLocaleTimeString([], { hour12: false }) : ''; }
function clientLink(addr) { return el('a', { href: '#/client/' + encodeURIComponent(addr), text: addr }); }
function chainOf(name, chain) { return [name, ...(chain || [])].filter(Boolean).join(' → '); }
function reasonBadge(r) { return el('span', { class: 'reason r-' + r, text: r }); }
function table(headers, rows, id) {
  return el('table', { id },
    el('thead', {}, el('tr', {}, headers.map(h => el('th', { text: h })))),
    el('tbody', {}, rows));
}
function card(label, id, value) {
  return el('div', { class: 'card' }, el('div', { class: 'label', text: label }), el('div', { class: 'value', id, text: value }));
}

// The status poll runs on every page: it is the connection indicator, the
// restart detector and the chart's sampler.
async function pollStatus() {
  const s = await api('/api/v1/status');
  if (state.started && s.started !== state.started) {
    banner('fqdngate restarted at ' + fmtTime(s.started) + ': counters and events start again.', 'info');
    state.history = [];
    for (const h of state.restartHooks) h();
  }
  state.started = s.started;
  state.status = s;
  state.history.push({ t: Date.parse(s.now), q: s.queries_total, drops: { ...s.drops } });
  while (state.history.length > HISTORY_S + 1) state.history.shift();
  $('updated').textContent = 'updated ' + fmtTime(s.now);
  if (state.view && state.view.onStatus) state.view.onStatus(s);
}

// rates turns the counter samples into per-second rates.
function rates() {
  const out = [];
  const h = state.history;
  for (let i = 1; i < h.length; i++) {
    const dt = (h[i].t - h[i - 1].t) / 1000;
    if (dt <= 0) continue;
    const r = { t: h[i].t, queries: Math.max(0, (h[i].q - h[i - 1].q) / dt) };
    for (const k of REASONS) r[k] = Math.max(0, ((h[i].drops[k] || 0) - (h[i - 1].drops[k] || 0)) / dt);
    out.push(r);
  }
  return out;
}

function drawChart(canvas) {
  const ctx = canvas.getContext('2d');
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w * dpr; canvas.height = h * dpr;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const pts = rates();
  const pad = { l: 48, r: 8, t: 8, b: 20 };
  const series = ['queries', ...REASONS];
  let max = 1;
  for (const p of pts) for (const k of series) max = Math.max(max, p[k]);
  max = niceCeil(max);
  // The window grows with the history, from one minute to HISTORY_S.
  const now = Date.now();
  const first = state.history.length ? state.history[0].t : now;
  const span = Math.min(HISTORY_S * 1000, Math.max(60000, now - first));
  const x = t => pad.l + (w - pad.l - pad.r) * (1 - (now - t) / span);
  const y = v => h - pad.b - (h - pad.t - pad.b) * v / max;
  ctx.strokeStyle = '#d1d5db'; ctx.fillStyle = '#6b7280'; ctx.font = '11px sans-serif'; ctx.lineWidth = 1;
  for (let i = 0; i <= 5; i++) {
    const v = max * i / 5;
    ctx.beginPath(); ctx.moveTo(pad.l, y(v)); ctx.lineTo(w - pad.r, y(v)); ctx.stroke();
    ctx.fillText(v.toFixed(v < 10 ? 1 : 0) + '/s', 4, y(v) + 4);
  }
  for (let i = 0; i <= 5; i++) {
    const ago = span * i / 5;
    ctx.fillText(i ? '-' + fmtDur(ago / 1000) : 'now', x(now - ago) - (i === 0 ? 24 : i === 5 ? 0 : 12), h - 4);
  }
  for (const k of series) {
    if (k !== 'queries' && !pts.some(p => p[k] > 0)) continue;
    ctx.strokeStyle = COLORS[k]; ctx.lineWidth = k === 'queries' ? 2 : 1.5;
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p[k])) : ctx.moveTo(x(p.t), y(p[k]))));
    ctx.stroke();
  }
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function legend() {
  const last = rates().slice(-1)[0] || {};
  return el('div', { class: 'legend', id: 'legend' }, ['queries', ...REASONS].map(k => {
    const sw = el('span', { class: 'swatch' });
    sw.style.background = COLORS[k]; // CSSOM, not an inline style attribute: allowed by the CSP
    return el('span', { class: 'item' }, sw, (k === 'queries' ? 'queries' : 'drops ' + k) + ' ' + (last[k] || 0).toFixed(1) + '/s');
  }));
}

// ---- views ----

function viewOverview(root, stops) {
  const cards = el('div', { class: 'cards' },
    card('Mode', 'mode', '…'), card('Uptime', 'uptime', '…'), card('Clients', 'clients-total', '…'),
    card('Queries', 'queries-total', '…'), card('Drops', 'drops-total', '…'),
    card('Ledger entries', 'ledger-entries', '…'), card('Kernel elements', 'set-elements', '…'));
  const canvas = el('canvas', { id: 'chart', width: 900, height: 240 });
  const legendBox = el('div', {});
  const groups = el('div', {});
  const ups = el('div', {});
  const clients = el('div', {});
  root.append(el('h2', { text: 'Overview' }), cards,
    el('h3', { text: 'Queries and drops per second (up to the last 10 minutes this page has seen)' }), canvas, legendBox,
    el('div', { class: 'cols' }, el('div', {}, el('h3', { text: 'Clients by group' }), groups),
      el('div', {}, el('h3', { text: 'Upstreams' }), ups)),
    el('h3', { text: 'Clients' }), clients);
  let prevUp = {};
  const onStatus = s => {
    $('mode').textContent = s.mode;
    $('uptime').textContent = fmtDur(s.uptime_seconds);
    $('clients-total').textContent = String(s.clients);
    $('queries-total').textContent = String(s.queries_total);
    $('drops-total').textContent = String(Object.values(s.drops).reduce((a, b) => a + b, 0));
    $('ledger-entries').textContent = String(s.ledger_entries);
    $('set-elements').textContent = s.set_elements === undefined ? 'n/a' : String(s.set_elements);
    drawChart(canvas);
    put(legendBox, legend());
    const rows = (s.groups || []).map(g => el('tr', {}, el('td', { text: g.name }), el('td', { text: (g.cidrs || []).join(' ') }),
      el('td', { class: 'num', text: String(g.clients) }), el('td', { class: 'num', text: String(g.rules) })));
    if (s.ungrouped) rows.push(el('tr', {}, el('td', { text: '(no group: refused)' }), el('td', {}), el('td', { class: 'num', text: String(s.ungrouped) }), el('td', {})));
    put(groups, table(['Group', 'Networks', 'Clients', 'Rules'], rows, 'groups'));
    const upRows = s.upstreams.map(u => {
      const p = prevUp[u.addr] || u;
      const dx = u.exchanges - p.exchanges, de = u.errors - p.errors;
      const health = u.down ? 'down' : dx > 0 && de === dx ? 'failing' : de > 0 ? 'errors' : u.exchanges === 0 ? 'unused' : 'healthy';
      return el('tr', {}, el('td', { text: u.addr }), el('td', { class: 'num', text: String(u.exchanges) }),
        el('td', { class: 'num', text: String(u.errors) }), el('td', {}, el('span', { class: 'health h-' + health, text: health })));
    });
    prevUp = Object.fromEntries(s.upstreams.map(u => [u.addr, u]));
    put(ups, table(['Upstream', 'Exchanges', 'Errors', 'Now'], upRows, 'upstreams'));
  };
  if (state.status) onStatus(state.status);
  every(2 * POLL_MS, async () => {
    const r = await api('/api/v1/clients');
    put(clients, table(['Client', 'Group', 'Queries', 'Denied', 'Last query'], r.clients.map(c =>
      el('tr', {}, el('td', {}, clientLink(c.addr)), el('td', { text: c.group || '(none)' }), el('td', { class: 'num', text: String(c.queries) }),
        el('td', { class: 'num', text: String(c.denied) }), el('td', { text: fmtTime(c.last) }))), 'clients'),
    r.truncated ? el('p', { class: 'note', text: 'More clients than shown.' }) : null);
  }, stops);
  return { onStatus };
}

function viewClient(root, stops, addr) {
  const names = el('div', {}), open = el('div', {}), drops = el('div', {});
  root.append(el('h2', {}, 'Client ', el('span', { class: 'mono', id: 'client-addr', text: addr })),
    el('h3', { text: 'Addresses open now' }), open,
    el('h3', { text: 'Names asked' }), names,
    el('h3', {}, 'Recent drops ', el('a', { href: '#/drops?client=' + encodeURIComponent(addr), text: '(all, live)' })), drops);
  const q = encodeURIComponent(addr);
  every(2 * POLL_MS, async () => {
    const [led, qs, ds] = await Promise.all([
      api('/api/v1/ledger?client=' + q + '&limit=1000'),
      api('/api/v1/events?kind=query&client=' + q + '&limit=10000'),
      api('/api/v1/events?kind=drop&client=' + q + '&limit=10000'),
    ]);
    const now = Date.now();
    const live = led.entries.filter(e => e.live);
    put(open, live.length ? table(['Address', 'Name and chain', 'Ports', 'Rules', 'Expires'], live.map(e =>
      el('tr', {}, el('td', { class: 'mono', text: e.addr }), el('td', { class: 'mono', text: chainOf(e.name, e.chain) }),
        el('td', { text: e.ports.join(' ') }), el('td', { text: e.rules.join(', ') }),
        el('td', { text: 'in ' + fmtDur((Date.parse(e.expires) - now) / 1000) + ' (' + fmtTime(e.expires) + ')' }))), 'open')
      : el('p', { class: 'note', text: 'Nothing is open for this client now.' }),
    led.entries.length > live.length ? el('p', { class: 'note', text: (led.entries.length - live.length) + ' expired entries kept for explanations.' }) : null);
    const seen = new Map();
    for (const e of qs.events) {
      const k = e.name + ' ' + e.qtype;
      const s = seen.get(k) || { name: e.name, qtype: e.qtype, n: 0 };
      s.n++; s.decision = e.decision; s.last = e.time; s.chain = e.chain;
      seen.set(k, s);
    }
    const rows = [...seen.values()].sort((a, b) => Date.parse(b.last) - Date.parse(a.last));
    put(names, rows.length ? table(['Name', 'Type', 'Decision', 'Times', 'Last', 'Chain'], rows.map(s =>
      el('tr', {}, el('td', { class: 'mono name', text: s.name }), el('td', { text: s.qtype }),
        el('td', {}, el('span', { class: 'decision d-' + s.decision, text: s.decision })), el('td', { class: 'num', text: String(s.n) }),
        el('td', { text: fmtTime(s.last) }), el('td', { class: 'mono', text: (s.chain || []).join(' → ') }))), 'names')
      : el('p', { class: 'note', text: 'No queries from this client in the recent events.' }));
    const dr = ds.events.slice(-CLIENT_DROPS).reverse();
    put(drops, dr.length ? table(['Time', 'To', 'Reason', 'Explanation'], dr.map(e =>
      el('tr', {}, el('td', { text: fmtTime(e.time) }), el('td', { class: 'mono', text: e.drop.addr + (e.drop.port ? ' ' + e.drop.port : '') }),
        el('td', {}, reasonBadge(e.drop.reason), e.would_drop ? ' (observe: let through)' : ''), el('td', { text: e.drop.message }))), 'client-drops')
      : el('p', { class: 'note', text: 'No drops from this client in the recent events.' }));
  }, stops);
  return {};
}

function viewDrops(root, stops, params) {
  const fClient = el('input', { id: 'f-client', placeholder: 'client IP', value: params.get('client') || '' });
  const fReason = el('select', { id: 'f-reason' }, el('option', { value: '', text: 'any reason' }), REASONS.map(r => el('option', { value: r, text: r })));
  fReason.value = params.get('reason') || '';
  const fName = el('input', { id: 'f-name', placeholder: 'name contains', value: params.get('name') || '' });
  const body = el('tbody', { id: 'drops-body' });
  const note = el('p', { class: 'note', id: 'drops-note', text: 'Waiting for drops…' });
  root.append(el('h2', { text: 'Drops, live' }),
    el('form', { class: 'filters', onsubmit: e => e.preventDefault() }, fClient, fReason, fName),
    note,
    el('table', { id: 'drops' }, el('thead', {}, el('tr', {}, ['Time', 'Client', 'To', 'Reason', 'Name and chain', 'Explanation'].map(h => el('th', { text: h })))), body));
  let since = 0;
  const reset = () => { since = 0; put(body); note.textContent = 'Waiting for drops…'; };
  for (const f of [fClient, fReason, fName]) f.addEventListener('input', reset);
  state.restartHooks.add(reset);
  stops.push(() => state.restartHooks.delete(reset));
  every(POLL_MS, async () => {
    let path = '/api/v1/events?kind=drop&limit=1000&since=' + since;
    const c = fClient.value.trim();
    if (c) path += '&client=' + encodeURIComponent(c);
    if (fReason.value) path += '&outcome=' + encodeURIComponent(fReason.value);
    let r;
    try { r = await api(path); } catch (e) {
      if (e instanceof Error && !(e instanceof Down) && !(e instanceof NeedToken)) note.textContent = 'Filter refused: ' + e.message;
      throw e;
    }
    since = r.next;
    const needle = fName.value.trim().toLowerCase();
    for (const e of r.events) {
      const d = e.drop;
      const chain = chainOf(d.name, d.chain);
      if (needle && !chain.toLowerCase().includes(needle)) continue;
      body.prepend(el('tr', {}, el('td', { text: fmtTime(e.time) }), el('td', {}, clientLink(e.client)),
        el('td', { class: 'mono', text: d.addr + (d.port ? ' ' + d.port : '') }),
        el('td', {}, reasonBadge(d.reason), e.would_drop ? ' (observe)' : ''),
        el('td', { class: 'mono name', text: chain || '—' }), el('td', { text: d.message })));
    }
    while (body.rows.length > MAX_ROWS) body.lastElementChild.remove();
    note.textContent = body.rows.length ? body.rows.length + ' drops shown, newest first' + (r.lost ? '; some were overwritten before they could be shown' : '') + '.' : 'No drops match yet.';
  }, stops);
  return {};
}

// parseQuestion reads "why can't 192.0.2.10 reach 203.0.113.7:443?": the
// first address is the client, the second the destination, with an
// optional :port or tcp/port; a single address is the destination.
function parseQuestion(q) {
  const out = { client: '', addr: '', port: '' };
  const addrs = [];
  for (let tok of q.split(/[\s,?]+/)) {
    if (!tok) continue;
    let m;
    if ((m = /^(tcp|udp)\/(\d{1,5})$/i.exec(tok))) { out.port = m[1].toLowerCase() + '/' + m[2]; continue; }
    if ((m = /^\[([0-9a-f:.]+)\]:(\d{1,5})$/i.exec(tok)) || (m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(tok))) {
      addrs.push(m[1]); if (!out.port) out.port = 'tcp/' + m[2]; continue;
    }
    if (/^\d{1,3}(\.\d{1,3}){3}$/.test(tok) || (/^[0-9a-f:]+$/i.test(tok) && tok.includes(':'))) { addrs.push(tok); continue; }
    if ((m = /^(?:port)?(\d{1,5})$/.exec(tok)) && addrs.length) out.port = 'tcp/' + m[1];
  }
  if (addrs.length >= 2) { out.client = addrs[0]; out.addr = addrs[1]; } else if (addrs.length === 1) out.addr = addrs[0];
  return out;
}

function viewExplain(root, stops, params) {
  const q = params.get('q') || '';
  const answer = el('div', { id: 'explain-answer', class: 'answer' });
  const input = el('input', { id: 'explain-q', type: 'search', value: q, placeholder: "why can't 192.0.2.10 reach 203.0.113.7:443?" });
  root.append(el('h2', { text: 'Explain' }),
    el('form', { id: 'explain-form', onsubmit: e => { e.preventDefault(); location.hash = '#/explain?q=' + encodeURIComponent(input.value); } },
      input, el('button', { type: 'submit', text: 'Explain' })),
    el('p', { class: 'note', text: 'Give the client and the destination (address, optionally :port or tcp/port). Without a client: whoever last got the address.' }),
    answer);
  if (!q) return {};
  const p = parseQuestion(q);
  if (!p.addr) { put(answer, el('p', { class: 'error', text: 'No destination address in the question.' })); return {}; }
  let path = '/api/v1/explain?addr=' + encodeURIComponent(p.addr);
  if (p.client) path += '&client=' + encodeURIComponent(p.client);
  if (p.port) path += '&port=' + encodeURIComponent(p.port);
  api(path).then(x => {
    const rows = [['Reason', reasonBadge(x.reason)], ['Client', x.client ? clientLink(x.client) : '(any)'], ['Destination', (x.addr || '') + (x.port ? ' ' + x.port : '')]];
    if (x.name) rows.push(['Name and chain', el('span', { class: 'mono', id: 'explain-chain', text: chainOf(x.name, x.chain) })]);
    if (x.rules) rows.push(['Rules', x.rules.join(', ')]);
    if (x.ports) rows.push(['Allowed ports', x.ports.join(' ')]);
    if (x.learnt_by) rows.push(['Learnt by', clientLink(x.learnt_by)]);
    if (x.node) rows.push(['Answered by', x.node]);
    if (x.expires) rows.push(['Expires', new Date(x.expires).toLocaleString()]);
    put(answer, el('p', { class: 'sentence', id: 'explain-sentence', text: x.message }),
      el('table', { class: 'kv' }, el('tbody', {}, rows.map(([k, v]) => el('tr', {}, el('th', { text: k }), el('td', {}, v))))));
  }).catch(e => {
    if (!(e instanceof NeedToken) && !(e instanceof Down)) put(answer, el('p', { class: 'error', text: 'Not explained: ' + e.message }));
  });
  return {};
}

function viewPolicy(root, stops) {
  const box = el('div', {});
  root.append(el('h2', { text: 'Effective policy' }), box);
  every(10 * POLL_MS, async () => {
    const p = await api('/api/v1/policy');
    put(box, 
      el('h3', { text: 'Catalog profiles in use' }),
      p.profiles.length ? el('ul', { id: 'profiles' }, p.profiles.map(n => el('li', { class: 'mono', text: n }))) : el('p', { class: 'note', text: 'None: every rule comes from the configuration.' }),
      ...p.groups.map(g => el('section', { class: 'group' },
        el('h3', {}, 'Group ', el('span', { class: 'mono', text: g.name }), ' ', el('span', { class: 'note', text: (g.cidrs || []).join(' ') })),
        g.profiles.length ? el('p', {}, 'Profiles: ', el('span', { class: 'mono', text: g.profiles.join(', ') })) : null,
        g.rules.length ? table(['Rule', 'Source', 'Names', 'Ports'], g.rules.map(r => el('tr', {}, el('td', { class: 'mono', text: r.name }),
          el('td', { text: r.source }), el('td', { class: 'mono', text: r.patterns.join(' ') }), el('td', { text: r.ports.join(' ') }))))
          : el('p', { class: 'note', text: 'No rules: every name is denied for this group.' }))));
  }, stops);
  return {};
}

// ---- router ----

function route() {
  if (state.view) state.view.stop();
  const root = $('view');
  put(root);
  root.hidden = false;
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query] = hash.split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean);
  const stops = [];
  let name = parts[0] || 'overview';
  let v;
  switch (name) {
    case 'client': v = viewClient(root, stops, decodeURIComponent(parts[1] || '')); break;
    case 'drops': v = viewDrops(root, stops, params); break;
    case 'explain': v = viewExplain(root, stops, params); break;
    case 'policy': v = viewPolicy(root, stops); break;
    default: name = 'overview'; v = viewOverview(root, stops);
  }
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === name);
  state.view = { ...v, stop: () => stops.forEach(s => s()) };
}

function start() {
  $('login-form').addEventListener('submit', e => {
    e.preventDefault();
    state.token = $('token-input').value.trim();
    $('token-input').value = '';
    sessionStorage.setItem(TOKEN_KEY, state.token);
    tokenNote();
    $('login').hidden = true;
    route();
  });
  $('forget').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = '';
    tokenNote();
    route();
  });
  $('ask').addEventListener('submit', e => {
    e.preventDefault();
    location.hash = '#/explain?q=' + encodeURIComponent($('ask-q').value);
  });
  window.addEventListener('hashchange', route);
  tokenNote();
  route();
  const stops = [];
  every(POLL_MS, pollStatus, stops);
}

start();
