// blotter_test.js - drives the web blotter (examples/web/) in the system's
// headless Chromium, against a gateway given by its ws:// URL. Run by
// tests/test_web.c, which plays the gateway; any gateway that speaks
// examples/common/gw_proto.h with price-time matching fits.
//
//   node blotter_test.js WS_URL plain     sessions off (?session=0)
//   node blotter_test.js WS_URL session   sessions on: two pages (sessions
//                                         W1, W2), a closed page and reloads
//   node blotter_test.js WS_URL rules     session R1 against the scripted
//                                         peer of tests/test_web.c
//
// Serves examples/web/ itself over HTTP on 127.0.0.1, port 0. Prints one line
// per step, then "PASS", and exits 0; on failure prints "FAIL: why" and exits
// 1. Never downloads a browser: Chromium is /usr/bin/chromium
// (MW_CHROMIUM overrides), with a fresh profile in a temporary directory.
'use strict';
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');

const ROOT = path.resolve(__dirname, '..', '..');
const PAGE_DIR = path.join(ROOT, 'examples', 'web');
const CHROMIUM = process.env.MW_CHROMIUM || '/usr/bin/chromium';
const STEP_MS = 20000; // one step's deadline
process.env.PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD = '1';

const [wsUrl, mode] = process.argv.slice(2);
if (!wsUrl || !['plain', 'session', 'rules'].includes(mode)) {
  console.error('usage: node blotter_test.js WS_URL plain|session|rules');
  process.exit(2);
}

const T0 = Date.now();
function step(text) { console.log('step: ' + text + ' (' + (Date.now() - T0) + ' ms)'); }
function check(cond, what) { if (!cond) throw new Error(what); }

// ---- a static server for examples/web --------------------------------------

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };

function serve() {
  const srv = http.createServer((req, res) => {
    const name = new URL(req.url, 'http://x').pathname.replace(/^\/+/, '') || 'index.html';
    const file = path.join(PAGE_DIR, path.normalize(name));
    if (!file.startsWith(PAGE_DIR + path.sep) || !fs.existsSync(file) || !TYPES[path.extname(file)]) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)], 'cache-control': 'no-store' });
    res.end(fs.readFileSync(file));
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

// ---- page helpers -------------------------------------------------------------

const pages = new Map(); // page -> its query, for the logs on failure

// On failure: the message log of every open page (what went over the wire).
async function dumpLogs() {
  for (const [page, query] of pages) {
    if (page.isClosed()) continue;
    const lines = await page.evaluate(() => [...document.querySelectorAll('#log div')].map((d) => d.textContent))
      .catch(() => []);
    console.log('--- page ?' + query + ' (last messages, > sent, < received, * events):');
    for (const l of lines.slice(-60)) console.log('  ' + l);
  }
}

async function open(ctx, base, query, want) {
  const page = await ctx.newPage();
  pages.set(page, query);
  page.on('pageerror', (e) => console.log('page error: ' + e.message));
  await page.goto(base + '/index.html?' + query);
  await waitState(page, want);
  return page;
}

async function waitState(page, want) {
  try {
    await page.waitForFunction((w) => document.body.dataset.state === w, want, { timeout: STEP_MS });
  } catch (e) {
    const now = await page.evaluate(() => [document.body.dataset.state, document.getElementById('error').textContent]);
    throw new Error('page never reached "' + want + '": state "' + now[0] + '", error "' + now[1] + '"');
  }
}

// Pages other than the front one are background tabs: Chromium slows their
// timers and rendering down. Every action brings its page to the front.
async function enter(page, symbol, side, price, qty) {
  await page.bringToFront();
  await page.fill('#symbol', symbol);
  await page.selectOption('#side', side === 'buy' ? '0' : '1');
  await page.fill('#price', price);
  await page.fill('#qty', String(qty));
  await page.click('#send');
  const err = await page.textContent('#error');
  check(err === '', 'order entry failed: ' + err);
}

// Waits until order row cl shows the wanted cells (status, leaves, ...).
async function waitOrder(page, cl, want) {
  const sel = '#order-' + cl;
  try {
    await page.waitForFunction(([s, w]) => {
      const tr = document.querySelector(s);
      if (!tr) return false;
      return Object.entries(w).every(([k, v]) => (k === 'status' ? tr.dataset.status : tr.querySelector('td.' + k).textContent) === v);
    }, [sel, want], { timeout: STEP_MS });
  } catch (e) {
    throw new Error('order ' + cl + ' never showed ' + JSON.stringify(want) + ': ' + JSON.stringify(await orderRow(page, cl)));
  }
}

function orderRow(page, cl) {
  return page.evaluate((s) => {
    const tr = document.querySelector(s);
    if (!tr) return null;
    const o = { status: tr.dataset.status };
    for (const td of tr.querySelectorAll('td')) if (td.className !== 'act') o[td.className] = td.textContent;
    return o;
  }, '#order-' + cl);
}

// Everything the blotter shows, for comparing before and after a reload.
function snapshot(page) {
  return page.evaluate(() => {
    const rows = (sel) => [...document.querySelectorAll(sel)].map((tr) =>
      [...tr.querySelectorAll('td')].filter((td) => td.className !== 'act' && td.className !== 'flags')
        .map((td) => td.textContent).join('|'));
    return { orders: rows('#orders tbody tr'), fills: rows('#fills tbody tr'),
             dups: document.getElementById('dups').textContent, gaps: document.getElementById('gaps').textContent };
  });
}

async function fills(page, cl) {
  return page.evaluate((c) => [...document.querySelectorAll('#fills tr.fill')]
    .filter((tr) => tr.dataset.clOrdId === c)
    .map((tr) => ({ match: tr.dataset.matchId, qty: tr.querySelector('td.qty').textContent,
                    price: tr.querySelector('td.price').textContent, flags: tr.querySelector('td.flags').textContent })),
  String(cl));
}

async function cancel(page, cl) {
  await page.bringToFront();
  await page.click('#order-' + cl + ' button.cancel');
}

// ---- the scenarios --------------------------------------------------------------

async function exactNumbers(page) {
  const r = await page.evaluate(() => {
    const b = window.mwBlotter;
    const m = b.parseFlat('{"type":"fill","a":18446744073709551615,"b":9007199254740993,"c":9007199254740991,"s":"x\\u00e9\\"y"}');
    return [typeof m.a, String(m.a), String(m.b), typeof m.c, String(m.c), m.s, b.fmtTicks(9007199254740991n),
            b.parseTicks('90071992547409.91'), b.fmtTicks(-5), b.fmtTicks(18950)];
  });
  check(JSON.stringify(r) === JSON.stringify(['bigint', '18446744073709551615', '9007199254740993', 'number',
    '9007199254740991', 'x\u00e9"y', '90071992547409.91', 9007199254740991, '-0.05', '189.50']),
  'exact integers: ' + JSON.stringify(r, (k, v) => (typeof v === 'bigint' ? String(v) : v)));
}

async function plain(ctx, base) {
  const q = 'ws=' + encodeURIComponent(wsUrl) + '&session=0';
  const page = await open(ctx, base, q, 'connected');
  step('page connected (sessions off)');
  await exactNumbers(page);
  step('integers above 2^53 parse exactly');

  await enter(page, 'AAPL', 'buy', '10.00', 100);
  await waitOrder(page, 1, { status: 'accepted', leaves: '100', filled: '0', price: '10.00' });
  check((await orderRow(page, 1)).oid !== '', 'order 1 has no order_id');
  step('buy 100 @ 10.00 acked');

  await enter(page, 'AAPL', 'sell', '9.50', 40);
  await waitOrder(page, 2, { status: 'filled', leaves: '0', filled: '40' });
  await waitOrder(page, 1, { status: 'partial', leaves: '60', filled: '40' });
  const f1 = await fills(page, 1), f2 = await fills(page, 2);
  check(f1.length === 1 && f2.length === 1 && f1[0].match === f2[0].match && f1[0].price === '10.00',
    'fills: ' + JSON.stringify([f1, f2]));
  step('sell 40 @ 9.50 filled at 10.00 against it, both sides');

  await enter(page, 'MSFT', 'buy', '90071992547409.91', 1);
  await waitOrder(page, 3, { status: 'accepted', price: '90071992547409.91', leaves: '1' });
  step('a price of 2^53-1 ticks is shown exactly');

  await enter(page, 'AAPL', 'buy', '0', 5);
  await waitOrder(page, 4, { status: 'rejected' });
  check((await orderRow(page, 4)).reason !== '', 'a reject without a reason');
  step('price 0 rejected with a reason');

  await cancel(page, 1);
  await waitOrder(page, 1, { status: 'cancelled', leaves: '0', filled: '40' });
  step('order 1 cancelled');
  if (process.env.MW_WEB_SCREENSHOT) await page.screenshot({ path: process.env.MW_WEB_SCREENSHOT, fullPage: true });
  await page.close();
}

async function session(ctx, base) {
  const q = (s) => 'ws=' + encodeURIComponent(wsUrl) + '&session=' + s + '&hb=1000';
  let a = await open(ctx, base, q('W1'), 'logged on');
  step('W1 logged on');
  await enter(a, 'AAPL', 'buy', '10.00', 100);
  await waitOrder(a, 1, { status: 'accepted', leaves: '100' });
  step('W1: buy 100 @ 10.00 acked');

  const b = await open(ctx, base, q('W2'), 'logged on');
  await enter(b, 'AAPL', 'sell', '10.00', 30);
  await waitOrder(b, 1, { status: 'filled', leaves: '0' });
  await waitOrder(a, 1, { status: 'partial', leaves: '70', filled: '30' });
  step('W2: sell 30 filled against W1');

  // W1 goes away; a fill for it arrives meanwhile (journaled by the gateway).
  await a.close();
  await enter(b, 'AAPL', 'sell', '10.00', 20);
  await waitOrder(b, 2, { status: 'filled', leaves: '0' });
  step('W1 closed; W2: sell 20 filled against W1 while it is away');
  a = await open(ctx, base, q('W1'), 'logged on');
  await waitOrder(a, 1, { status: 'partial', leaves: '50', filled: '50' });
  let fa = await fills(a, 1);
  check(fa.length === 2 && fa[0].match !== fa[1].match && fa.map((f) => f.qty).sort().join() === '20,30',
    'W1 fills after reopening: ' + JSON.stringify(fa));
  step('W1 reopened: the fill it missed arrived once, the blotter kept the rest');

  // Reload right after entering an order: the order is journaled first, so
  // whether or not it left before the page went, it arrives exactly once.
  await enter(a, 'AAPL', 'buy', '11.00', 10); // the best bid now
  await a.reload();
  await waitState(a, 'logged on');
  await waitOrder(a, 2, { status: 'accepted', leaves: '10' });
  step('W1: order entered and page reloaded at once: acked');

  // A fill the gateway wrote but the page never read: W1's connection runs
  // through a relay (playwright's routeWebSocket) that holds what the gateway
  // sends; W2 sells into W1's order 2; W1 reloads with the fill held. The
  // gateway must resend it after the next logon, and the page show it once.
  const relay = { hold: false, held: [], onFill: null };
  await a.routeWebSocket(() => true, (page) => {
    const gw = page.connectToServer();
    page.onMessage((m) => gw.send(m));
    gw.onMessage((m) => {
      if (!relay.hold) return page.send(m);
      relay.held.push(m);
      if (String(m).includes('"type":"fill"') && relay.onFill) relay.onFill();
    });
  });
  await a.reload(); // the relay takes the next connection
  await waitState(a, 'logged on');
  const before = await snapshot(a);
  relay.hold = true;
  const heldFill = new Promise((resolve, reject) => {
    relay.onFill = resolve;
    setTimeout(() => reject(new Error('the relay never saw the fill for W1: ' + JSON.stringify(relay.held))), STEP_MS);
  });
  await enter(b, 'AAPL', 'sell', '11.00', 4);
  await waitOrder(b, 3, { status: 'filled' });
  await heldFill;
  relay.hold = false;
  relay.held = [];
  await a.reload();
  await waitState(a, 'logged on');
  await waitOrder(a, 2, { status: 'partial', leaves: '6', filled: '4' });
  const after = await snapshot(a);
  check(after.orders.length === before.orders.length, 'orders after reload: ' + JSON.stringify([before, after]));
  check(after.fills.length === before.fills.length + 1, 'fills after reload: ' + JSON.stringify([before, after]));
  check(after.dups === '0' && after.gaps === '0', 'dups/gaps: ' + JSON.stringify(after));
  const f2 = await fills(a, 2);
  check(f2.length === 1 && f2[0].flags === 'resent', 'the fill the page never read: ' + JSON.stringify(f2));
  await a.unrouteAll();
  step('W1 reloaded with a fill written but unread: resent by the gateway, shown once');

  await cancel(a, 1);
  await waitOrder(a, 1, { status: 'cancelled', leaves: '0', filled: '50' });
  await cancel(a, 2);
  await waitOrder(a, 2, { status: 'cancelled', leaves: '0', filled: '4' });
  step('W1 cancelled both orders');

  const final = await snapshot(a);
  await a.reload();
  await waitState(a, 'logged on');
  const again = await snapshot(a);
  check(JSON.stringify(final) === JSON.stringify(again), 'blotter changed across a quiet reload: ' +
    JSON.stringify([final, again]));
  step('a quiet reload shows the same blotter');

  for (const [p, n] of [[a, 'W1'], [b, 'W2']]) {
    await p.bringToFront();
    await p.click('#logout');
    await waitState(p, 'disconnected');
    const e = await p.textContent('#error');
    check(e === '', n + ' logout: ' + e);
  }
  step('both pages logged out');
}

// The page against a peer that scripts the gateway's side of the session
// protocol (tests/test_web.c, "rules"): what the page must show at the end.
async function rules(ctx, base) {
  const page = await open(ctx, base, 'ws=' + encodeURIComponent(wsUrl) + '&session=R1&hb=300', 'logged on');
  step('R1 logged on');
  await enter(page, 'AAPL', 'buy', '1.00', 100);
  await waitOrder(page, 1, { status: 'partial', filled: '60', leaves: '40', oid: '501' });
  const f = await fills(page, 1);
  check(f.length === 3 && f.map((x) => x.match).sort().join() === '2,3,4' && f.every((x) => x.flags === 'resent'),
    'fills: ' + JSON.stringify(f));
  check(await page.textContent('#dups') === '1' && await page.textContent('#gaps') === '1', 'dups/gaps');
  step('a duplicate dropped, a gap filled by one resend: each fill once');
  try {
    await page.waitForFunction(() => document.getElementById('error').textContent.includes('peer expects'), null,
      { timeout: STEP_MS });
  } catch (e) {
    throw new Error('no logout for a bad logon ack: state ' + await page.evaluate(() => document.body.dataset.state) +
      ', error "' + await page.textContent('#error') + '"');
  }
  const end = await page.evaluate(() => ['conn', 'next_in', 'next_out', 'resent', 'dups', 'gaps', 'error']
    .map((id) => document.getElementById(id).textContent));
  check(JSON.stringify(end) === JSON.stringify(['disconnected', '5', '2', '2', '1', '1',
    'session protocol error: peer expects 3 but we sent only up to 1']), 'the end: ' + JSON.stringify(end));
  step('heartbeats, test requests, resends on request and after a new logon; then logout code 2 on a bad ack');
}

async function main() {
  const { chromium } = require(path.join(__dirname, 'node_modules', 'playwright-core'));
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'mw_web_'));
  const srv = await serve();
  const base = 'http://127.0.0.1:' + srv.address().port;
  let ctx = null;
  try {
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
             '--disable-component-update', '--no-first-run'],
      timeout: 60000,
    });
    step('chromium started');
    try {
      await ({ plain, session, rules })[mode](ctx, base);
      if (process.env.MW_WEB_DUMP) await dumpLogs(); // the wire, also on success
    } catch (e) {
      await dumpLogs();
      throw e;
    }
    console.log('PASS');
  } finally {
    if (ctx) await ctx.close().catch(() => {});
    srv.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => {
  console.log('FAIL: ' + (e && e.message ? e.message : String(e)));
  process.exit(1);
});
