/* lb admin dashboard: plain ES2020, no dependencies, works offline. */
'use strict';
(() => {
  const TOKEN_KEY = 'lb.token';
  const RING = 300; // 5 minutes at one event per second
  const RECONNECT_MS = 2000;
  const STALL_MS = 15000; // no bytes for this long: treat the stream as dead
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const METRICS = [
    { key: 'sessions', label: 'Sessions', fmt: (v) => String(v), min: 1 },
    { key: 'websockets', label: 'WebSockets', fmt: (v) => String(v), min: 1 },
    { key: 'inFlight', label: 'In-flight', fmt: (v) => String(v), min: 1 },
    { key: 'rps', label: 'Req/s', fmt: (v) => (v < 10 ? v.toFixed(1) : String(Math.round(v))), min: 1 },
    { key: 'errorRate', label: 'Errors', fmt: (v) => (v * 100).toFixed(1) + '%', min: 0.05 },
  ];

  const $ = (id) => document.getElementById(id);
  const els = {
    conn: $('conn-state'), updated: $('last-update'), toast: $('toast'), auth: $('auth'),
    form: $('token-form'), token: $('token'), authError: $('auth-error'), pools: $('pools'), empty: $('empty'),
  };

  let token = sessionStorage.getItem(TOKEN_KEY) || '';
  let gen = 0; // stream generation; bumping it cancels older loops
  let controller = null;
  let reconnectTimer = 0;
  const pools = new Map(); // name -> { el, refs }
  const backends = new Map(); // id -> { el, refs, data, hist, drainKey, drainInitial }
  const pending = new Set(); // backend ids with an action in flight

  // ---------- helpers ----------
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    if (attrs) for (const [k, v] of Object.entries(attrs)) {
      if (k === 'class') el.className = v; else if (k === 'text') el.textContent = v; else el.setAttribute(k, v);
    }
    for (const k of kids) if (k) el.append(k);
    return el;
  }
  function setText(el, text) { if (el.textContent !== text) el.textContent = text; }
  function authHeaders(extra) {
    const hd = Object.assign({}, extra);
    if (token) hd.Authorization = 'Bearer ' + token;
    return hd;
  }
  function fmtDuration(s) {
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
    return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
  }
  function num(v) { return typeof v === 'number' && isFinite(v) ? v : 0; }

  class Ring {
    constructor(n) { this.buf = new Float64Array(n); this.n = n; this.start = 0; this.len = 0; }
    push(v) {
      if (this.len < this.n) this.buf[(this.start + this.len++) % this.n] = v;
      else { this.buf[this.start] = v; this.start = (this.start + 1) % this.n; }
    }
    forEach(fn) { for (let i = 0; i < this.len; i++) fn(this.buf[(this.start + i) % this.n], i); }
  }

  // ---------- toast ----------
  let toastTimer = 0;
  function toast(msg, kind) {
    els.toast.textContent = msg;
    els.toast.className = 'toast ' + (kind || 'error');
    els.toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { els.toast.hidden = true; }, kind === 'ok' ? 2500 : 6000);
  }
  els.toast.addEventListener('click', () => { els.toast.hidden = true; });

  // ---------- connection state / auth ----------
  function setConn(state, text) {
    els.conn.dataset.state = state;
    setText(els.conn, text || state);
  }
  function needAuth(rejected) {
    stopStream();
    if (token) sessionStorage.removeItem(TOKEN_KEY);
    token = '';
    setConn('auth', 'token required');
    els.authError.hidden = !rejected;
    els.authError.textContent = rejected ? 'Token rejected. Try again.' : '';
    els.auth.hidden = false;
    els.token.value = '';
    els.token.focus();
  }
  els.form.addEventListener('submit', (e) => {
    e.preventDefault();
    const t = els.token.value.trim();
    if (!t) return;
    token = t;
    sessionStorage.setItem(TOKEN_KEY, t);
    els.auth.hidden = true;
    startStream();
  });

  // ---------- stream ----------
  function stopStream() {
    gen++;
    clearTimeout(reconnectTimer);
    if (controller) controller.abort();
    controller = null;
  }
  function scheduleReconnect(my) {
    if (my !== gen) return;
    setConn('reconnecting');
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(() => { if (my === gen) startStream(); }, RECONNECT_MS);
  }
  function startStream() {
    stopStream();
    const my = gen;
    const ctl = new AbortController();
    controller = ctl;
    if (els.conn.dataset.state !== 'live') setConn(els.conn.dataset.state === 'reconnecting' ? 'reconnecting' : 'connecting');
    const sentToken = !!token;
    readStream(my, ctl, sentToken).catch(() => scheduleReconnect(my));
  }
  async function readStream(my, ctl, sentToken) {
    let stall = 0;
    const arm = () => { clearTimeout(stall); stall = setTimeout(() => ctl.abort(), STALL_MS); };
    arm();
    try {
      const res = await fetch('/api/v1/stream', { headers: authHeaders({ Accept: 'text/event-stream' }), cache: 'no-store', signal: ctl.signal });
      if (my !== gen) return;
      if (res.status === 401) { needAuth(sentToken); return; }
      if (!res.ok || !res.body) {
        toast('Stream failed: ' + (await errorMessage(res)));
        scheduleReconnect(my);
        return;
      }
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      const sep = /\r?\n\r?\n/;
      for (;;) {
        const { value, done } = await reader.read();
        if (my !== gen) { reader.cancel().catch(() => {}); return; }
        if (done) break;
        arm();
        buf += dec.decode(value, { stream: true });
        let m;
        while ((m = sep.exec(buf))) {
          const block = buf.slice(0, m.index);
          buf = buf.slice(m.index + m[0].length);
          handleBlock(block);
        }
      }
      scheduleReconnect(my);
    } finally {
      clearTimeout(stall);
    }
  }
  function handleBlock(block) {
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith('data:')) data.push(line.slice(line.charAt(5) === ' ' ? 6 : 5));
    }
    if (!data.length) return;
    let ev;
    try { ev = JSON.parse(data.join('\n')); } catch { return; }
    if (!ev || !Array.isArray(ev.pools)) return;
    setConn('live');
    const t = ev.time ? new Date(ev.time) : new Date();
    const valid = !isNaN(t.getTime());
    setText(els.updated, valid ? t.toLocaleTimeString() : String(ev.time));
    if (valid) els.updated.setAttribute('datetime', t.toISOString());
    render(ev.pools);
  }
  async function errorMessage(res) {
    try {
      const j = await res.json();
      if (j && j.error && j.error.message) return j.error.message;
    } catch { /* not JSON */ }
    return 'HTTP ' + res.status + (res.statusText ? ' ' + res.statusText : '');
  }

  // ---------- rendering ----------
  function render(list) {
    const seenPools = new Set();
    const seenBackends = new Set();
    let pi = 0;
    for (const p of list) {
      const name = String(p.name);
      seenPools.add(name);
      let pool = pools.get(name);
      if (!pool) { pool = makePool(name); pools.set(name, pool); }
      if (els.pools.children[pi] !== pool.el) els.pools.insertBefore(pool.el, els.pools.children[pi] || null);
      pi++;
      updatePool(pool, p, seenBackends);
    }
    for (const [name, pool] of pools) if (!seenPools.has(name)) { pool.el.remove(); pools.delete(name); }
    for (const [id, b] of backends) if (!seenBackends.has(id)) { b.el.remove(); backends.delete(id); }
    els.empty.hidden = list.length > 0;
    if (!list.length) els.pools.append(els.empty);
  }

  function makePool(name) {
    const refs = {
      name: h('h2', { text: name }),
      affinity: h('span', { 'data-field': 'affinity' }),
      balance: h('span', { 'data-field': 'balance' }),
      count: h('span', { 'data-field': 'count' }),
      warn: h('p', { class: 'warn', role: 'note', 'data-field': 'mixed-versions', hidden: '' }),
      grid: h('div', { class: 'grid' }),
    };
    const meta = h('p', { class: 'pool-meta' }, 'affinity ', refs.affinity, ' · balance ', refs.balance, ' · ', refs.count);
    const el = h('section', { class: 'pool', 'data-pool': name }, h('div', { class: 'pool-head' }, refs.name, meta), refs.warn, refs.grid);
    return { el, refs };
  }

  function updatePool(pool, p, seen) {
    const r = pool.refs;
    setText(r.affinity, String(p.affinity ?? '—'));
    setText(r.balance, String(p.balance ?? '—'));
    const list = Array.isArray(p.backends) ? p.backends : [];
    setText(r.count, list.length + (list.length === 1 ? ' backend' : ' backends'));
    const versions = [...new Set(list.map((b) => b.version).filter((v) => v != null && v !== ''))];
    r.warn.hidden = versions.length < 2;
    if (versions.length > 1) setText(r.warn, '⚠ Mixed versions: ' + versions.sort().join(', '));
    let i = 0;
    for (const data of list) {
      const id = String(data.id);
      if (seen.has(id)) continue;
      seen.add(id);
      let b = backends.get(id);
      if (!b) { b = makeBackend(id); backends.set(id, b); }
      if (r.grid.children[i] !== b.el) r.grid.insertBefore(b.el, r.grid.children[i] || null);
      i++;
      updateBackend(b, data);
    }
    while (r.grid.children.length > i) r.grid.lastElementChild.remove();
  }

  function makeSpark() {
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('viewBox', '0 0 ' + (RING - 1) + ' 20');
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    const line = document.createElementNS(SVG_NS, 'polyline');
    line.setAttribute('vector-effect', 'non-scaling-stroke');
    line.setAttribute('fill', 'none');
    svg.append(line);
    return { svg, line };
  }

  function makeBackend(id) {
    const refs = {
      id: h('h3', { class: 'bid', text: id }),
      status: h('span', { class: 'badge', 'data-field': 'status' }),
      url: h('div', { class: 'url', 'data-field': 'url' }),
      adminState: h('dd', { 'data-field': 'adminState' }),
      health: h('dd', { 'data-field': 'health' }),
      version: h('dd', { 'data-field': 'version' }),
      weight: h('dd', { 'data-field': 'weight' }),
      drain: h('div', { class: 'drain', hidden: '' }),
      fill: h('span', { class: 'fill' }),
      drainText: h('div', { class: 'drain-text', 'data-field': 'drain' }),
      metrics: {},
      buttons: {},
    };
    const meta = h('dl', { class: 'meta' },
      h('div', null, h('dt', { text: 'Admin' }), refs.adminState),
      h('div', null, h('dt', { text: 'Health' }), refs.health),
      h('div', null, h('dt', { text: 'Version' }), refs.version),
      h('div', null, h('dt', { text: 'Weight' }), refs.weight));
    const metrics = h('div', { class: 'metrics' });
    const hist = {};
    for (const m of METRICS) {
      const val = h('span', { class: 'm-val', 'data-field': m.key });
      const sp = makeSpark();
      sp.svg.classList.add('spark-' + m.key);
      metrics.append(h('div', { class: 'metric' }, h('span', { class: 'm-label', text: m.label }), val, sp.svg));
      refs.metrics[m.key] = { val, line: sp.line };
      hist[m.key] = new Ring(RING);
    }
    refs.bar = h('div', { class: 'bar', role: 'progressbar', 'aria-label': 'Drain progress', 'aria-valuemin': '0', 'aria-valuemax': '100' }, refs.fill);
    refs.drain.append(refs.bar, refs.drainText);
    const actions = h('div', { class: 'actions' });
    for (const [a, label] of [['drain', 'Drain'], ['enable', 'Enable'], ['maint', 'Maint']]) {
      const btn = h('button', { type: 'button', 'data-action': a, text: label, 'aria-label': label + ' ' + id });
      refs.buttons[a] = btn;
      actions.append(btn);
    }
    const el = h('article', { class: 'card', 'data-backend': id },
      h('div', { class: 'card-head' }, refs.id, refs.status), refs.url, meta, metrics, refs.drain, actions);
    return { id, el, refs, hist, data: null, drainKey: null, drainInitial: 0 };
  }

  function updateBackend(b, d) {
    const r = b.refs;
    b.data = d;
    const status = String(d.status ?? 'unknown');
    b.el.dataset.status = status;
    r.status.dataset.status = status;
    setText(r.status, status);
    setText(r.url, String(d.url ?? ''));
    r.url.title = String(d.url ?? '');
    setText(r.adminState, String(d.adminState ?? '—'));
    setText(r.health, String(d.health ?? '—'));
    r.health.dataset.health = String(d.health ?? '');
    setText(r.version, d.version == null ? '—' : String(d.version));
    const w = num(d.weight), ew = d.effectiveWeight;
    setText(r.weight, ew != null && ew !== w ? w + ' (eff ' + ew + ')' : String(w));

    for (const m of METRICS) {
      const v = num(d[m.key]);
      b.hist[m.key].push(v);
      setText(r.metrics[m.key].val, m.fmt(v));
      drawSpark(r.metrics[m.key].line, b.hist[m.key], m.min);
    }

    const dr = d.drain;
    if (dr) {
      const remaining = num(dr.remaining);
      const key = String(dr.startedAt ?? '');
      if (b.drainKey !== key) { b.drainKey = key; b.drainInitial = remaining; }
      const progress = b.drainInitial > 0 ? Math.min(1, Math.max(0, 1 - remaining / b.drainInitial)) : 1;
      const pct = Math.round(progress * 100);
      r.fill.style.width = pct + '%';
      r.bar.setAttribute('aria-valuenow', String(pct));
      let eta;
      if (dr.etaSeconds != null) eta = 'ETA ' + fmtDuration(dr.etaSeconds);
      else if (dr.deadline) eta = 'deadline in ' + fmtDuration((Date.parse(dr.deadline) - Date.now()) / 1000);
      else eta = 'ETA unknown';
      setText(r.drainText, remaining + ' left · ' + eta);
      r.drain.hidden = false;
    } else {
      b.drainKey = null;
      b.drainInitial = 0;
      r.drain.hidden = true;
    }
    updateButtons(b);
  }

  function updateButtons(b) {
    const admin = b.data ? b.data.adminState : '';
    const busy = pending.has(b.id);
    const r = b.refs.buttons;
    r.drain.disabled = busy || admin !== 'active';
    r.enable.disabled = busy || admin === 'active';
    r.maint.disabled = busy || admin === 'maint';
  }

  function drawSpark(line, ring, minScale) {
    let max = minScale;
    ring.forEach((v) => { if (v > max) max = v; });
    const off = RING - ring.len;
    const pts = [];
    ring.forEach((v, i) => { pts.push((off + i) + ',' + (19 - (v / max) * 18).toFixed(1)); });
    if (pts.length === 1) pts.unshift((RING - 2) + ',' + pts[0].split(',')[1]);
    line.setAttribute('points', pts.join(' '));
  }

  // ---------- actions ----------
  els.pools.addEventListener('click', (e) => {
    const btn = e.target.closest('button[data-action]');
    if (!btn || btn.disabled) return;
    const card = btn.closest('[data-backend]');
    if (card) act(card.getAttribute('data-backend'), btn.getAttribute('data-action'));
  });

  async function act(id, action) {
    const b = backends.get(id);
    pending.add(id);
    if (b) updateButtons(b);
    try {
      const res = await fetch('/api/v1/backends/' + encodeURIComponent(id) + '/' + action, {
        method: 'POST', headers: authHeaders({ 'Content-Type': 'application/json' }), body: '{}', cache: 'no-store',
      });
      if (res.status === 401) { needAuth(!!token); return; }
      if (!res.ok) { toast(id + ': ' + (await errorMessage(res))); return; }
      toast(id + ': ' + action + ' requested', 'ok');
    } catch (err) {
      toast(id + ': ' + (err && err.message ? err.message : 'request failed'));
    } finally {
      pending.delete(id);
      const cur = backends.get(id);
      if (cur) updateButtons(cur);
    }
  }

  startStream();
})();
