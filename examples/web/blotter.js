/* blotter.js - the msgwire web blotter (examples/web/index.html).
 *
 * Talks to an order gateway over ws:// with the text serdes: one JSON object
 * per WebSocket text message, "type" first (README "Wire formats"), with the
 * protocol of examples/common/gw_proto.h (new_order, cancel -> order_ack,
 * fill). On top runs the session protocol (README "Sessions: the wire
 * protocol"), so a reload, a lost connection or a gateway restart loses and
 * duplicates nothing:
 *   - the first message is mw_logon with the numbers kept in localStorage
 *     (next_in: the next server message expected, next_out: the number of the
 *     next order or cancel);
 *   - application messages carry no number: each side counts them from the
 *     peer's next_in, and mw_seq{next, resent} sets the count where it jumps;
 *   - sent messages stay in a journal (localStorage) until the gateway's
 *     logon ack shows it has them, and are resent after each logon or on an
 *     mw_resend_request;
 *   - received numbers below the expected one are dropped (counted), a gap
 *     asks for a resend once;
 *   - heartbeats after heartbeat_ms of silence, a test request after 2x, a
 *     close after 3x.
 * The blotter (orders, fills) is saved in the same localStorage entry as the
 * numbers, in one write per message, so the two always agree.
 *
 * URL parameters: ws (the gateway's URL; default ws://<this host>/),
 * session (the session id; "0" turns sessions off: plain messages, nothing
 * kept), user, password, hb (heartbeat_ms, default 3000), connect ("0": do
 * not connect at load).
 *
 * Numbers: JSON.parse rounds integers above 2^53. The gateway keeps every
 * value below 2^53 (gw_proto.h); this page still parses each integer itself
 * and keeps one that is not exact in a double as a BigInt (shown exactly;
 * a session number that large ends the session with a protocol error).
 */
'use strict';
(function () {
  // ---- exact parsing of one flat JSON object (what the text serdes sends) --

  const NUM = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

  function parseFlat(text) {
    let i = 0;
    const n = text.length;
    const fail = (what) => { throw new Error('bad JSON at offset ' + i + ': ' + what); };
    const ws = () => {
      while (i < n) {
        const c = text.charCodeAt(i);
        if (c !== 32 && c !== 9 && c !== 10 && c !== 13) break;
        i++;
      }
    };
    const str = () => {
      const start = i++;
      while (i < n) {
        const c = text.charCodeAt(i);
        if (c === 34) { i++; return JSON.parse(text.slice(start, i)); } // escapes, exactly
        if (c < 32) fail('control character in a string');
        i += c === 92 ? 2 : 1;
      }
      return fail('unterminated string');
    };
    const value = () => {
      if (text[i] === '"') return str();
      if (text.startsWith('true', i)) { i += 4; return true; }
      if (text.startsWith('false', i)) { i += 5; return false; }
      NUM.lastIndex = i;
      const m = NUM.exec(text);
      if (!m) fail('a string, number or boolean expected');
      i = NUM.lastIndex;
      if (m[1] !== undefined || m[2] !== undefined) return Number(m[0]);
      const v = Number(m[0]);
      return Number.isSafeInteger(v) ? v : BigInt(m[0]);
    };
    const o = Object.create(null);
    ws();
    if (text[i++] !== '{') fail("'{' expected");
    ws();
    if (text[i] === '}') i++;
    else {
      for (;;) {
        ws();
        if (text[i] !== '"') fail('a member name expected');
        const k = str();
        ws();
        if (text[i++] !== ':') fail("':' expected");
        ws();
        if (k in o) fail('duplicate member "' + k + '"');
        o[k] = value();
        ws();
        const c = text[i++];
        if (c === '}') break;
        if (c !== ',') fail("',' or '}' expected");
      }
    }
    ws();
    if (i !== n) fail('bytes after the object');
    return o;
  }

  // A count or id that must be exact: a safe non-negative integer.
  function exact(v, what) {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
      throw new Error(what + ' is not an integer below 2^53: ' + String(v));
    return v;
  }

  // ---- prices: integer ticks, 1 tick = 0.01 --------------------------------

  function fmtTicks(v) {
    let s = String(v); // exact for a number below 2^53 and for a BigInt
    const neg = s[0] === '-';
    if (neg) s = s.slice(1);
    s = s.padStart(3, '0');
    return (neg ? '-' : '') + s.slice(0, -2) + '.' + s.slice(-2);
  }

  function parseTicks(text) {
    const m = /^\s*(-?)([0-9]+)(?:\.([0-9]{1,2}))?\s*$/.exec(text);
    if (!m) throw new Error('price: a number with at most 2 decimals, e.g. 189.50');
    const t = BigInt(m[2]) * 100n + BigInt((m[3] || '0').padEnd(2, '0'));
    if (t > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error('price too large');
    return (m[1] ? -1 : 1) * Number(t);
  }

  // ---- settings -------------------------------------------------------------

  const params = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);
  const defaultUrl = location.host
    ? (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/'
    : 'ws://127.0.0.1:7002/';
  const cfg = {
    url: params.get('ws') || defaultUrl,
    session: params.has('session') ? params.get('session') : 'web1',
    user: params.get('user') || '',
    password: params.get('password') || '',
    hb: Math.max(100, Number(params.get('hb')) || 3000),
    logonTimeout: 5000,
    maxResendRequests: 8,
  };
  const sessionsOn = cfg.session !== '0' && cfg.session !== '';
  const KEY = 'msgwire.blotter.' + cfg.session;
  const SYMBOL_BYTES = 8; // GW_SYMBOL_CAP
  const U32_MAX = 4294967295;

  // ---- persistent state: numbers, journal, blotter (one localStorage entry) -

  function freshState() {
    return {
      v: 1,
      next_in: 1,      // the next number expected from the gateway
      next_out: 1,     // the number of our next new message
      wire_high: 0,    // the highest number written to a socket so far
      journal: [],     // [seq, json] of sent messages the gateway may not have
      next_cl: 1,      // our next cl_ord_id (unique within the session)
      orders: {},      // cl_ord_id -> order
      order_list: [],  // cl_ord_ids in entry order
      fills: [],
      stats: { resent: 0, dups: 0, gaps: 0 },
    };
  }

  let st = freshState();
  if (sessionsOn) {
    try {
      const saved = localStorage.getItem(KEY);
      if (saved) {
        const s = JSON.parse(saved);
        if (s && s.v === 1) st = s;
      }
    } catch (e) {
      showError('saved state unreadable, starting afresh: ' + e.message);
    }
  }

  function save() {
    if (!sessionsOn) return;
    try {
      localStorage.setItem(KEY, JSON.stringify(st));
    } catch (e) {
      showError('cannot save the session (' + e.message + '): a reload would lose it');
    }
  }

  // ---- the connection and the session protocol -------------------------------

  const S = { DOWN: 'disconnected', CONNECTING: 'connecting', LOGON: 'logging on', UP: 'logged on',
              PLAIN: 'connected', LOGOUT: 'logging out' };
  let ws = null;
  let gen = 0;           // ignores events of sockets we gave up
  let state = S.DOWN;
  let auto = true;       // reconnect after a loss
  let backoff = 250;
  let reconnectTimer = 0;
  let lastSend = 0, lastRecv = 0, logonAt = 0;
  let testId = 0, testPending = false;
  let rxNum = 0;         // the number the next application message carries
  let rxResent = false;  // inside a resend (between mw_seq resent=true and resent=false)
  let gapWait = false;   // a resend was requested: drop until an mw_seq with next <= next_in
  let resendReqs = 0, resendWindow = 0;
  let logoutTimer = 0;
  let pendingReset = false; // the next logon asks for reset=true
  let rejects = 0;          // logons refused in a row

  function setState(s) {
    state = s;
    const el = $('conn');
    el.textContent = s;
    el.className = s === S.UP || s === S.PLAIN ? 'up' : 'down';
    document.body.dataset.state = s;
  }

  function rawSend(obj) {
    const text = JSON.stringify(obj);
    ws.send(text);
    lastSend = Date.now();
    logLine('>', text);
    return text;
  }

  function connect() {
    clearTimeout(reconnectTimer);
    if (ws) return;
    auto = true;
    showError('');
    const my = ++gen;
    let sock;
    try {
      sock = new WebSocket(cfg.url);
    } catch (e) {
      showError('cannot connect to ' + cfg.url + ': ' + e.message);
      return;
    }
    ws = sock;
    setState(S.CONNECTING);
    sock.onopen = () => {
      if (my !== gen) return;
      backoff = 250;
      lastRecv = lastSend = Date.now();
      if (!sessionsOn) { setState(S.PLAIN); return; }
      logonAt = Date.now();
      setState(S.LOGON);
      rawSend({ type: 'mw_logon', session: cfg.session, user: cfg.user, password: cfg.password,
                next_in: st.next_in, next_out: st.next_out, heartbeat_ms: cfg.hb,
                reset: !!pendingReset });
    };
    sock.onmessage = (ev) => { if (my === gen) onFrame(ev.data); };
    sock.onclose = (ev) => {
      if (my !== gen) return;
      ws = null;
      gen++;
      setState(S.DOWN);
      logLine('*', 'closed ' + ev.code + (ev.reason ? ' ' + ev.reason : ''));
      scheduleReconnect();
    };
    sock.onerror = () => { if (my === gen) logLine('*', 'WebSocket error'); };
  }

  function scheduleReconnect() {
    if (!auto) return;
    const wait = backoff + Math.floor(Math.random() * backoff / 2);
    backoff = Math.min(backoff * 2, 5000);
    reconnectTimer = setTimeout(connect, wait);
  }

  // Closes this connection; auto: reconnect after it.
  function drop(why, reconnect) {
    auto = reconnect;
    clearTimeout(logoutTimer);
    if (why) logLine('*', why);
    if (!ws) { if (!reconnect) clearTimeout(reconnectTimer); return; }
    const sock = ws;
    ws = null;
    gen++;
    sock.close(1000);
    setState(S.DOWN);
    scheduleReconnect();
  }

  // A session rule was broken (or, sessions off, a message made no sense):
  // tell the peer (code 2) and close for good.
  function protocolError(reason) {
    showError((sessionsOn ? 'session protocol error: ' : 'bad message: ') + reason);
    if (sessionsOn && ws && ws.readyState === WebSocket.OPEN)
      rawSend({ type: 'mw_logout', code: 2, reason: reason.slice(0, 127) });
    drop('', false);
  }

  function onFrame(data) {
    lastRecv = Date.now();
    testPending = false;
    if (typeof data !== 'string') return protocolError('a binary message (the text serdes sends text)');
    logLine('<', data);
    let m;
    try {
      m = parseFlat(data);
    } catch (e) {
      return protocolError(e.message);
    }
    if (typeof m.type !== 'string') return protocolError('a message without "type"');
    try {
      if (m.type.startsWith('mw_')) {
        if (sessionsOn) onControl(m);
        else if (m.type === 'mw_logout') { // a gateway with sessions on
          showError('the gateway wants a session (code ' + m.code + '): ' + m.reason);
          drop('', false);
        }
        return;
      }
      if (!sessionsOn) { apply(m, 0); render(); return; }
      if (state !== S.UP && state !== S.LOGOUT)
        return protocolError('application message "' + m.type + '" before the logon completed');
      onApp(m);
    } catch (e) {
      protocolError(e.message);
    }
  }

  // Rule 5: number n = rxNum; deliver n == next_in, drop n < next_in,
  // a gap asks once for a resend and drops until the mw_seq that fills it.
  function onApp(m) {
    const n = rxNum++;
    const e = st.next_in;
    if (gapWait) return;
    if (n < e) { st.stats.dups++; save(); renderStats(); return; }
    if (n > e) {
      st.stats.gaps++;
      gapWait = true;
      save();
      rawSend({ type: 'mw_resend_request', from: e, to: 0 });
      renderStats();
      return;
    }
    apply(m, rxResent ? 1 : 0);
    st.next_in = n + 1;
    save(); // the blotter and next_in in one write
    render();
  }

  function onControl(m) {
    switch (m.type) {
    case 'mw_logon_ack': return onLogonAck(m);
    case 'mw_logout': return onLogout(m);
    case 'mw_heartbeat': return;
    case 'mw_test_request':
      if (state !== S.UP && state !== S.LOGOUT) break;
      rawSend({ type: 'mw_heartbeat', test_id: exact(m.test_id, 'test_id') });
      return;
    case 'mw_seq':
      if (state !== S.UP && state !== S.LOGOUT) break;
      rxNum = exact(m.next, 'mw_seq.next');
      rxResent = m.resent === true;
      if (gapWait && rxNum <= st.next_in) gapWait = false;
      return;
    case 'mw_resend_request':
      if (state !== S.UP) break;
      return onResendRequest(m);
    default:
      break; // mw_logon (the server's only), unknown mw_ names
    }
    protocolError('unexpected "' + m.type + '" in state ' + state);
  }

  function onLogonAck(m) {
    if (state !== S.LOGON) return protocolError('mw_logon_ack in state ' + state);
    const peerNext = exact(m.next_in, 'next_in'), peerOut = exact(m.next_out, 'next_out');
    if (pendingReset) {
      if (m.reset !== true || peerNext !== 1 || peerOut !== 1)
        return protocolError('the reset was not acknowledged');
      pendingReset = false;
    }
    if (peerNext > st.next_out)
      return protocolError('peer expects ' + peerNext + ' but we sent only up to ' + (st.next_out - 1));
    if (peerOut < st.next_in) // it lost what it sent us: our numbering stays ours
      logLine('*', 'gateway next_out ' + peerOut + ' is below our next_in ' + st.next_in);
    // The gateway has everything below peerNext: forget it. The rest must
    // be there, peerNext .. next_out-1 without a hole.
    st.journal = st.journal.filter((j) => j[0] >= peerNext);
    if (st.journal.length !== st.next_out - peerNext || (st.journal.length && st.journal[0][0] !== peerNext))
      return protocolError('message ' + peerNext + ' is no longer in the journal');
    rejects = 0;
    rxNum = st.next_in;
    rxResent = false;
    gapWait = false;
    resendReqs = 0;
    resendWindow = Date.now();
    setState(S.UP);
    // Rule 4: resend what it has not seen, then send what never went out.
    const resendEnd = Math.min(st.wire_high + 1, st.next_out);
    if (peerNext < resendEnd) sendJournal(peerNext, resendEnd - 1, st.next_out);
    for (const [seq, text] of st.journal) {
      if (seq < Math.max(resendEnd, peerNext)) continue;
      sendJournaled(seq, text);
    }
    save();
    render();
  }

  // mw_seq{from, resent} + journal from..to + mw_seq{live, resent=false}.
  function sendJournal(from, to, live) {
    const want = to - from + 1;
    const msgs = st.journal.filter((j) => j[0] >= from && j[0] <= to);
    if (msgs.length !== want) return protocolError('message ' + from + '..' + to + ' is no longer in the journal');
    rawSend({ type: 'mw_seq', next: from, resent: true });
    for (const [seq, text] of msgs) sendJournaled(seq, text);
    st.stats.resent += want;
    rawSend({ type: 'mw_seq', next: live, resent: false });
  }

  function sendJournaled(seq, text) {
    ws.send(text);
    lastSend = Date.now();
    logLine('>', text);
    if (seq > st.wire_high) st.wire_high = seq;
  }

  function onResendRequest(m) {
    const now = Date.now();
    if (now - resendWindow >= cfg.hb) { resendWindow = now; resendReqs = 0; }
    if (++resendReqs > cfg.maxResendRequests) {
      rawSend({ type: 'mw_logout', code: 4, reason: 'too many resend requests' });
      return drop('too many resend requests', true);
    }
    const from = exact(m.from, 'from'), to = exact(m.to, 'to');
    const last = to === 0 ? st.next_out - 1 : Math.min(to, st.next_out - 1);
    if (from > st.next_out) return protocolError('resend from ' + from + ' but we sent only up to ' + (st.next_out - 1));
    if (from > last) { rawSend({ type: 'mw_seq', next: st.next_out, resent: false }); return; }
    sendJournal(from, last, st.next_out);
    save();
    renderStats();
  }

  function onLogout(m) {
    const code = typeof m.code === 'number' ? m.code : -1;
    const reason = typeof m.reason === 'string' ? m.reason : '';
    if (state === S.LOGOUT) return drop('logged out', false);
    if (state === S.UP && code === 0) rawSend({ type: 'mw_logout', code: 0, reason: '' });
    showError('logout from the gateway (code ' + code + ')' + (reason ? ': ' + reason : ''));
    // A protocol error or the application's own logout: stay off. A refused
    // logon is tried again a few times: after a reload the gateway may not
    // yet have seen the old page's connection close ("logged on from another
    // connection").
    drop('', code >= 3 || (code === 1 && ++rejects < 5));
  }

  function logout() {
    if (!ws) { auto = false; clearTimeout(reconnectTimer); return; }
    if (state !== S.UP) return drop('closed', false);
    setState(S.LOGOUT);
    rawSend({ type: 'mw_logout', code: 0, reason: 'user logout' });
    logoutTimer = setTimeout(() => drop('no answer to the logout', false), 2000);
  }

  function resetSession() {
    if (!sessionsOn) return;
    if (!confirm('Start the session again at 1? The blotter is cleared.')) return;
    const cl = st.next_cl; // cl_ord_ids stay unique across a reset of the numbers
    st = freshState();
    st.next_cl = cl;
    save();
    render();
    pendingReset = true;
    drop('reset', true);
    clearTimeout(reconnectTimer);
    connect();
  }

  // Heartbeats (rule 6), the logon timeout, the logout's deadline.
  setInterval(() => {
    if (!ws) return;
    const now = Date.now();
    if (state === S.LOGON && now - logonAt > cfg.logonTimeout) return drop('logon not answered', true);
    if (state !== S.UP && state !== S.LOGOUT) return;
    if (now - lastRecv >= 3 * cfg.hb) return drop('peer silent', true);
    if (now - lastRecv >= 2 * cfg.hb && !testPending) {
      testPending = true;
      rawSend({ type: 'mw_test_request', test_id: ++testId });
    } else if (now - lastSend >= cfg.hb) {
      rawSend({ type: 'mw_heartbeat', test_id: 0 });
    }
  }, Math.min(250, Math.floor(cfg.hb / 4)));

  // An order or cancel: numbered and journaled first (sessions), then sent
  // if logged on, else at the next logon.
  function sendApp(obj) {
    const text = JSON.stringify(obj);
    if (!sessionsOn) {
      if (state !== S.PLAIN) throw new Error('not connected');
      ws.send(text);
      lastSend = Date.now();
      logLine('>', text);
      applySent(obj);
      return;
    }
    const seq = st.next_out++;
    st.journal.push([seq, text]);
    applySent(obj);
    if (state === S.UP) sendJournaled(seq, text);
    save();
  }

  // ---- the blotter -------------------------------------------------------------

  const STATUS = ['accepted', 'rejected', 'cancelled'];

  function applySent(o) {
    if (o.type === 'new_order') {
      const k = String(o.cl_ord_id);
      st.orders[k] = { cl: o.cl_ord_id, order_id: '', symbol: o.symbol, side: o.side, price: o.price, qty: o.qty,
                       filled: 0, leaves: o.qty, status: 'sent', reason: '', cancel: false };
      st.order_list.push(k);
    } else if (o.type === 'cancel') {
      const ord = st.orders[String(o.cl_ord_id)];
      if (ord) ord.cancel = true;
    }
  }

  function orderFor(cl) {
    const k = String(cl);
    if (!st.orders[k]) { // not entered here (a reset, or another page of this session)
      st.orders[k] = { cl: k, order_id: '', symbol: '?', side: -1, price: '', qty: '', filled: 0, leaves: '',
                       status: 'unknown', reason: '', cancel: false };
      st.order_list.push(k);
    }
    return st.orders[k];
  }

  // flags: 1 = resent by the gateway (delivered once all the same)
  function apply(m, flags) {
    if (m.type === 'order_ack') {
      const o = orderFor(m.cl_ord_id);
      const status = STATUS[m.status] || 'status ' + m.status;
      o.order_id = String(m.order_id);
      o.reason = m.reason || '';
      if (status === 'rejected' && o.cancel && o.status !== 'sent') {
        o.cancel = false; // the cancel was refused, the order stands
      } else {
        if (status === 'cancelled') o.cancel = false;
        if (!(status === 'accepted' && (o.status === 'partial' || o.status === 'filled'))) o.status = status;
        o.leaves = String(m.leaves);
      }
    } else if (m.type === 'fill') {
      const o = orderFor(m.cl_ord_id);
      st.fills.push({ match_id: String(m.match_id), cl: String(m.cl_ord_id), order_id: String(m.order_id),
                      price: String(m.price), qty: String(m.qty), leaves: String(m.leaves),
                      engine_seq: String(m.engine_seq), flags });
      if (typeof m.qty === 'number' && typeof o.filled === 'number') o.filled += m.qty;
      o.order_id = String(m.order_id);
      o.leaves = String(m.leaves);
      o.status = String(m.leaves) === '0' ? 'filled' : 'partial';
      if (o.status === 'filled') o.cancel = false;
    } else {
      logLine('*', 'unknown message type "' + m.type + '" ignored');
    }
  }

  // ---- rendering -----------------------------------------------------------------

  const rows = new Map(); // cl_ord_id -> tr
  let fillsShown = 0;
  const cell = (tr, cls, text) => {
    let td = tr.querySelector('td.' + cls);
    if (!td) { td = document.createElement('td'); td.className = cls; tr.appendChild(td); }
    if (td.textContent !== text) td.textContent = text;
    return td;
  };

  function render() {
    const body = $('orders').tBodies[0];
    for (const k of st.order_list) {
      const o = st.orders[k];
      let tr = rows.get(k);
      if (!tr) {
        tr = document.createElement('tr');
        tr.id = 'order-' + k;
        tr.dataset.clOrdId = k;
        body.insertBefore(tr, body.firstChild);
        rows.set(k, tr);
      }
      tr.className = o.status;
      tr.dataset.status = o.status;
      cell(tr, 'cl', String(o.cl));
      cell(tr, 'oid', o.order_id);
      cell(tr, 'sym', o.symbol);
      cell(tr, 'side', o.side === 0 ? 'buy' : o.side === 1 ? 'sell' : '?');
      cell(tr, 'price', o.price === '' ? '' : fmtTicks(o.price));
      cell(tr, 'qty', String(o.qty));
      cell(tr, 'filled', String(o.filled));
      cell(tr, 'leaves', String(o.leaves));
      cell(tr, 'status', o.status + (o.cancel ? ' (cancel sent)' : ''));
      cell(tr, 'reason', o.reason);
      const td = cell(tr, 'act', '');
      const open = (o.status === 'accepted' || o.status === 'partial' || o.status === 'sent') && !o.cancel;
      if (open) {
        const b = document.createElement('button');
        b.className = 'cancel';
        b.textContent = 'cancel';
        b.onclick = () => cancelOrder(o.cl);
        td.appendChild(b);
      }
    }
    const fb = $('fills').tBodies[0];
    if (fillsShown > st.fills.length) { fb.textContent = ''; fillsShown = 0; }
    for (; fillsShown < st.fills.length; fillsShown++) {
      const f = st.fills[fillsShown];
      const tr = document.createElement('tr');
      tr.className = 'fill';
      tr.dataset.matchId = f.match_id;
      tr.dataset.clOrdId = f.cl;
      cell(tr, 'match', f.match_id);
      cell(tr, 'cl', f.cl);
      cell(tr, 'oid', f.order_id);
      cell(tr, 'price', fmtTicks(f.price));
      cell(tr, 'qty', f.qty);
      cell(tr, 'leaves', f.leaves);
      cell(tr, 'eseq', f.engine_seq);
      cell(tr, 'flags', f.flags & 1 ? 'resent' : '');
      fb.insertBefore(tr, fb.firstChild);
    }
    if (rows.size > st.order_list.length) { // a reset cleared the blotter
      body.textContent = '';
      rows.clear();
      render();
      return;
    }
    renderStats();
  }

  function renderStats() {
    $('next_in').textContent = sessionsOn ? String(st.next_in) : '-';
    $('next_out').textContent = sessionsOn ? String(st.next_out) : '-';
    $('resent').textContent = String(st.stats.resent);
    $('dups').textContent = String(st.stats.dups);
    $('gaps').textContent = String(st.stats.gaps);
  }

  const PLAIN_HB = '{"type":"mw_heartbeat","test_id":0}';

  function logLine(dir, text) {
    if (text === PLAIN_HB) return; // the log shows what matters
    const log = $('log');
    const div = document.createElement('div');
    div.textContent = dir + ' ' + text;
    log.appendChild(div);
    while (log.childNodes.length > 200) log.removeChild(log.firstChild);
    log.scrollTop = log.scrollHeight;
  }

  function showError(text) { $('error').textContent = text; }

  // ---- user actions -----------------------------------------------------------

  function enterOrder(ev) {
    ev.preventDefault();
    try {
      const symbol = $('symbol').value.trim();
      if (!symbol || new TextEncoder().encode(symbol).length > SYMBOL_BYTES)
        throw new Error('symbol: 1 to ' + SYMBOL_BYTES + ' bytes');
      const qty = Number($('qty').value);
      if (!Number.isInteger(qty) || qty < 1 || qty > U32_MAX) throw new Error('qty: a whole number from 1');
      const o = { type: 'new_order', cl_ord_id: st.next_cl, symbol, side: Number($('side').value),
                  price: parseTicks($('price').value), qty };
      if (!Number.isSafeInteger(o.cl_ord_id)) throw new Error('cl_ord_id exhausted');
      sendApp(o);
      st.next_cl++;
      save();
      showError('');
    } catch (e) {
      showError(e.message);
    }
    render();
  }

  function cancelOrder(cl) {
    try {
      sendApp({ type: 'cancel', cl_ord_id: Number(cl) });
      showError('');
    } catch (e) {
      showError(e.message);
    }
    render();
  }

  $('url').value = cfg.url;
  $('session').value = sessionsOn ? cfg.session : '0 (off)';
  $('session').disabled = true;
  $('url').disabled = true;
  $('user').value = cfg.user;
  $('password').value = cfg.password;
  $('entry').addEventListener('submit', enterOrder);
  $('connect').onclick = () => { cfg.user = $('user').value; cfg.password = $('password').value; connect(); };
  $('logout').onclick = logout;
  $('reset').onclick = resetSession;
  $('reset').disabled = !sessionsOn;
  window.addEventListener('pagehide', save);
  setState(S.DOWN);
  render();

  // One page per session: a second tab of the same session would corrupt
  // the numbers. A reload's old page releases the lock as it goes.
  function start() {
    if (params.get('connect') !== '0') connect();
  }
  if (sessionsOn && navigator.locks) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 5000);
    navigator.locks.request(KEY, { signal: ctl.signal }, () => {
      clearTimeout(timer);
      start();
      return new Promise(() => {}); // held while the page lives
    }).catch(() => showError('session ' + cfg.session + ' is open in another tab of this browser'));
  } else {
    start();
  }

  window.mwBlotter = { parseFlat, fmtTicks, parseTicks, state: () => st, status: () => state };
})();
