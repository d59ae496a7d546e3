#!/usr/bin/python3
"""session_peer.py - an independent msgwire session peer (tests/test_interop_session.c).

Written from the README sections "Wire formats" and "Sessions: the wire
protocol" only, with Python's json, struct and socket modules. It speaks
protocol `test` (tests/util/test_proto.h: ping{u64 seq, u64 sent_ns}, tag 2)
plus the session control messages, over the text serdes (JSON Lines) or the
fixed serdes (u32 big-endian length + little-endian packed layout).

  session_peer.py client SERDES PORT SESSION STATE [options]
      Logs on with next_in/next_out from the state file STATE (a new session
      when it does not exist), resends what the server has not seen, sends
      --count pings and checks the echoes: each application message's number
      (implicit, moved by mw_seq) must be the next one expected, its ping.seq
      must equal that number, and exactly the first --expect-resent of them
      must be flagged resent. --handle M: hand only M echoes to the
      "application", then keep reading (without handling) until every echo
      arrived, and leave without a logout, as a process that died would.
      Saves next_in, next_out and the outbound journal to STATE at the end.
  session_peer.py server SERDES STATE [options]
      Listens on 127.0.0.1:0, prints {"port": N}, serves one msgwire Clt:
      answers its logon (or refuses it), resends what it missed, echoes each
      ping with a sequenced ping of the same seq, prints {"echoed": N} after
      each echo; saves STATE when the connection ends.
  session_peer.py hostile SERDES PORT CASE [options]
      CASE: one of HOSTILE below.
  session_peer.py journal FILE [--decode]
      Reads a journal file (README "The journal file format"): checks the
      header and each record's crc, prints the records and a summary with the
      offset where recovery must cut the file and why.

Every message received is printed on stdout as one JSON line
{"rx": {...}} (application messages with "n": their number and "resent");
the last line is {"summary": {...}}. A broken rule or a failed expectation
prints {"error": "..."} and exits 1. Every wait is bounded by --deadline.
"""
import argparse
import json
import os
import re
import select
import socket
import struct
import sys
import time

# ---- the messages ------------------------------------------------------------

SCHEMA = {
    "mw_logon": (0xFF01, [("session", "chars", 32), ("user", "chars", 32), ("password", "chars", 64),
                          ("next_in", "u64"), ("next_out", "u64"), ("heartbeat_ms", "u32"),
                          ("reset", "bool")]),
    "mw_logon_ack": (0xFF02, [("session", "chars", 32), ("next_in", "u64"), ("next_out", "u64"),
                              ("heartbeat_ms", "u32"), ("reset", "bool")]),
    "mw_logout": (0xFF03, [("code", "u16"), ("reason", "chars", 128)]),
    "mw_heartbeat": (0xFF04, [("test_id", "u64")]),
    "mw_test_request": (0xFF05, [("test_id", "u64")]),
    "mw_resend_request": (0xFF06, [("from", "u64"), ("to", "u64")]),
    "mw_seq": (0xFF07, [("next", "u64"), ("resent", "bool")]),
    "ping": (2, [("seq", "u64"), ("sent_ns", "u64")]),
}
BY_TAG = {tag: name for name, (tag, _) in SCHEMA.items()}
PACK = {"u16": "H", "u32": "I", "u64": "Q", "bool": "B"}
FIXED_SIZE = {"mw_logon": 151, "mw_logon_ack": 55, "mw_logout": 132, "mw_heartbeat": 10,
              "mw_test_request": 10, "mw_resend_request": 18, "mw_seq": 11, "ping": 18}

LOGOUT_NORMAL, LOGOUT_REJECTED, LOGOUT_PROTOCOL, LOGOUT_SILENT, LOGOUT_RESEND_FLOOD = 0, 1, 2, 3, 4
SESSION_ID = re.compile(r"^[A-Za-z0-9_.-]{1,31}$")


class Broken(Exception):
    """A rule of the protocol or an expectation of the test was broken."""


def msg(name, **vals):
    m = {"type": name}
    for fname, kind, *n in SCHEMA[name][1]:
        m[fname] = vals.get(fname, "" if kind == "chars" else False if kind == "bool" else 0)
    return m


def fixed_fmt(name):
    fmt = "<H"
    for _, kind, *n in SCHEMA[name][1]:
        fmt += "%ds" % n[0] if kind == "chars" else PACK[kind]
    return fmt


class TextCodec:
    """JSON Lines: one object per line, "type" first."""

    def encode(self, m):
        return json.dumps(m, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"

    def frames(self, buf):
        out = []
        while True:
            i = buf.find(b"\n")
            if i < 0:
                return out, buf
            out.append(self.decode(bytes(buf[:i])))
            del buf[:i + 1]

    def decode(self, line):
        m = json.loads(line.decode())
        name = m.get("type")
        if name not in SCHEMA:
            raise Broken("unknown message %r" % line[:80])
        want = {f[0] for f in SCHEMA[name][1]} | {"type"}
        if set(m) != want:
            raise Broken("%s: fields %s, want %s" % (name, sorted(m), sorted(want)))
        return m


class FixedCodec:
    """u32 big-endian length, then u16 tag and the fields, little-endian, packed."""

    def encode(self, m):
        name = m["type"]
        vals = []
        for fname, kind, *n in SCHEMA[name][1]:
            v = m[fname]
            if kind == "chars":
                v = v.encode()
                if len(v) > n[0]:
                    raise Broken("%s.%s: %d bytes do not fit in %d" % (name, fname, len(v), n[0]))
            elif kind == "bool":
                v = 1 if v else 0
            vals.append(v)
        payload = struct.pack(fixed_fmt(name), SCHEMA[name][0], *vals)  # "Ns" pads with NUL
        assert len(payload) == FIXED_SIZE[name]
        return struct.pack(">I", len(payload)) + payload

    def frames(self, buf):
        out = []
        while len(buf) >= 4:
            (n,) = struct.unpack(">I", buf[:4])
            if len(buf) < 4 + n:
                break
            out.append(self.decode(bytes(buf[4:4 + n])))
            del buf[:4 + n]
        return out, buf

    def decode(self, p):
        if len(p) < 2:
            raise Broken("a fixed payload of %d bytes" % len(p))
        (tag,) = struct.unpack("<H", p[:2])
        name = BY_TAG.get(tag)
        if name is None:
            raise Broken("unknown tag %#x" % tag)
        if len(p) != FIXED_SIZE[name]:
            raise Broken("%s: %d bytes, want %d" % (name, len(p), FIXED_SIZE[name]))
        vals = struct.unpack(fixed_fmt(name), p)[1:]
        m = {"type": name}
        for (fname, kind, *n), v in zip(SCHEMA[name][1], vals):
            if kind == "chars":
                s, _, pad = v.partition(b"\0")
                if pad.strip(b"\0"):
                    raise Broken("%s.%s: bytes after the NUL" % (name, fname))
                v = s.decode()
            elif kind == "bool":
                if v > 1:
                    raise Broken("%s.%s: bool %d" % (name, fname, v))
                v = bool(v)
            m[fname] = v
        return m


# ---- output ------------------------------------------------------------------

def emit(**kv):
    sys.stdout.write(json.dumps(kv, separators=(",", ":")) + "\n")
    sys.stdout.flush()


# ---- a connection ------------------------------------------------------------

class Link:
    def __init__(self, sock, codec, deadline):
        self.sock, self.codec, self.deadline = sock, codec, deadline
        self.buf = bytearray()
        self.pending = []
        self.eof = False
        self.last_tx = self.last_rx = time.monotonic()
        sock.setblocking(False)

    def send(self, *msgs):
        data = b"".join(self.codec.encode(m) for m in msgs)
        view = memoryview(data)
        while view:
            self.check_deadline()
            _, w, _ = select.select([], [self.sock], [], 0.05)
            if w:
                k = self.sock.send(view)
                view = view[k:]
        self.last_tx = time.monotonic()

    def check_deadline(self):
        if time.monotonic() > self.deadline:
            raise Broken("deadline passed")

    def recv(self, timeout):
        """The next message, or None after timeout seconds (or at EOF: self.eof)."""
        end = min(time.monotonic() + timeout, self.deadline)
        while not self.pending:
            if self.eof:
                return None
            left = end - time.monotonic()
            if left <= 0:
                self.check_deadline()
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                self.eof = True
                if self.buf:
                    raise Broken("the connection ended inside a frame (%d bytes)" % len(self.buf))
                continue
            self.last_rx = time.monotonic()
            self.buf += data
            got, self.buf = self.codec.frames(self.buf)
            self.pending += got
        return self.pending.pop(0)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---- the session -------------------------------------------------------------

class State:
    """What survives a restart: the next numbers and the outbound journal."""

    def __init__(self, path):
        self.path = path
        self.next_in, self.next_out, self.out = 1, 1, {}
        if path and os.path.exists(path):
            with open(path) as f:
                d = json.load(f)
            self.next_in, self.next_out = d["next_in"], d["next_out"]
            self.out = {int(k): v for k, v in d["out"].items()}

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"next_in": self.next_in, "next_out": self.next_out,
                       "out": {str(k): v for k, v in self.out.items()}}, f)
        os.replace(tmp, self.path)

    def reset(self):
        self.next_in, self.next_out, self.out = 1, 1, {}


class Session:
    """One side of a session over one Link: rules 3 to 7 of the README."""

    def __init__(self, link, state, heartbeat_ms):
        self.l, self.st = link, state
        self.hb = heartbeat_ms / 1000.0
        self.rx_num = state.next_in     # the number of the next application message on this link
        self.rx_resent = False
        self.gap_wait = False
        self.logout_sent = False
        self.logout_got = None
        self.test_id = 0
        self.test_sent = False
        self.stats = {"gaps": 0, "dups": 0, "resent": 0, "resend_requests": 0, "delivered": 0}

    def send_app(self, m):
        n = self.st.next_out
        self.st.out[n] = m       # journaled before it goes out
        self.st.next_out = n + 1
        self.l.send(m)
        return n

    def resend(self, frm, to=0):
        """mw_seq{frm, resent} + journal frm..to (0: all) + mw_seq{live, not resent}."""
        last = self.st.next_out - 1 if to == 0 else min(to, self.st.next_out - 1)
        if frm > last:
            return
        for n in range(frm, last + 1):
            if n not in self.st.out:
                self.logout(LOGOUT_PROTOCOL, "cannot resend %d: not in the journal" % n)
                raise Broken("asked to resend %d, not in the journal" % n)
        msgs = [msg("mw_seq", next=frm, resent=True)] + [self.st.out[n] for n in range(frm, last + 1)]
        msgs.append(msg("mw_seq", next=self.st.next_out, resent=False))
        self.stats["resent"] += last + 1 - frm
        self.l.send(*msgs)

    def logout(self, code, reason):
        self.logout_sent = True
        try:
            self.l.send(msg("mw_logout", code=code, reason=reason[:120]))
        except OSError:
            pass

    def protocol_error(self, why):
        self.logout(LOGOUT_PROTOCOL, why)
        raise Broken(why)

    def handle(self, m):
        """A received message: returns (n, resent, m) for an application message to
        hand to the application, else None."""
        t = m["type"]
        if t == "mw_heartbeat":
            if m["test_id"]:
                self.stats["test_answered"] = m["test_id"]
            return None
        if t == "mw_test_request":
            self.l.send(msg("mw_heartbeat", test_id=m["test_id"]))
            return None
        if t == "mw_resend_request":
            self.stats["resend_requests"] += 1
            if m["from"] == 0 or m["from"] > self.st.next_out:
                self.protocol_error("resend from %d asked for, but we sent only up to %d"
                                    % (m["from"], self.st.next_out - 1))
            self.resend(m["from"], m["to"])
            return None
        if t == "mw_seq":
            if m["next"] == 0:
                self.protocol_error("mw_seq with next 0")
            if m["next"] > self.st.next_in:
                self.stats["gaps"] += 1
                if not self.gap_wait:
                    self.l.send(msg("mw_resend_request", **{"from": self.st.next_in, "to": 0}))
                    self.gap_wait = True
            else:
                self.gap_wait = False
            self.rx_num, self.rx_resent = m["next"], m["resent"]
            return None
        if t == "mw_logout":
            self.logout_got = m
            if not self.logout_sent:
                self.logout(LOGOUT_NORMAL, "logout answered")
            return None
        if t.startswith("mw_"):
            self.protocol_error("unexpected %s" % t)
        n = self.rx_num
        self.rx_num += 1
        if self.gap_wait:
            return None
        if n < self.st.next_in:
            self.stats["dups"] += 1
            return None
        if n > self.st.next_in:
            self.stats["gaps"] += 1
            self.l.send(msg("mw_resend_request", **{"from": self.st.next_in, "to": 0}))
            self.gap_wait = True
            return None
        return n, self.rx_resent, m

    def delivered(self, n):
        self.st.next_in = n + 1
        self.stats["delivered"] += 1

    def next(self, timeout):
        """Receives (printing) one message; keeps the heartbeat rules (6)."""
        now = time.monotonic()
        if now - self.l.last_tx >= self.hb:
            self.l.send(msg("mw_heartbeat", test_id=0))
        silent = now - self.l.last_rx
        if silent >= 3 * self.hb:
            self.logout(LOGOUT_SILENT, "peer silent")
            raise Broken("peer silent for %.0f ms" % (silent * 1000))
        if silent >= 2 * self.hb and not self.test_sent:
            self.test_id += 1
            self.test_sent = True
            self.l.send(msg("mw_test_request", test_id=self.test_id))
        m = self.l.recv(min(timeout, self.hb / 4))
        if m is None:
            return None
        self.test_sent = False
        out = self.handle(m)
        if out:
            emit(rx=dict(m, n=out[0], resent=out[1]))
        else:
            emit(rx=m)
        return out


# ---- roles -------------------------------------------------------------------

def codec_of(name):
    return TextCodec() if name == "text" else FixedCodec()


def connect(port, codec, deadline):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Link(s, codec, deadline)


def wait_for(link, types, timeout=None):
    """Reads (printing) until a message of one of types arrives; returns it."""
    end = link.deadline if timeout is None else time.monotonic() + timeout
    while time.monotonic() < end:
        m = link.recv(end - time.monotonic())
        if m is None:
            if link.eof:
                raise Broken("the connection closed while waiting for %s" % "/".join(types))
            continue
        emit(rx=m)
        if m["type"] in types:
            return m
    raise Broken("no %s" % "/".join(types))


def drain(link, timeout):
    """Reads (printing) until EOF; returns the messages."""
    got = []
    end = time.monotonic() + timeout
    while not link.eof and time.monotonic() < end:
        m = link.recv(end - time.monotonic())
        if m is not None:
            emit(rx=m)
            got.append(m)
    if not link.eof:
        raise Broken("the peer did not close the connection")
    return got


def logon_msg(a, st, **over):
    v = dict(session=a.session, user=a.user, password="pw", next_in=st.next_in, next_out=st.next_out,
             heartbeat_ms=a.heartbeat_ms, reset=a.reset)
    v.update(over)
    return msg("mw_logon", **v)


def run_client(a):
    st = State(a.state)
    if a.reset:
        st.reset()
    link = connect(a.port, codec_of(a.serdes), a.deadline_at)
    link.send(logon_msg(a, st))
    ack = wait_for(link, ("mw_logon_ack", "mw_logout"))
    if ack["type"] == "mw_logout":
        raise Broken("logon refused (code %d): %s" % (ack["code"], ack["reason"]))
    if ack["session"] != a.session:
        raise Broken("ack for session %r" % ack["session"])
    if ack["next_in"] > st.next_out:  # rule 2: the server claims what we never sent
        Session(link, st, a.heartbeat_ms).protocol_error(
            "the server expects %d but we sent only up to %d" % (ack["next_in"], st.next_out - 1))
    if a.reset and not ack["reset"]:
        raise Broken("reset asked for, not done")
    sess = Session(link, st, ack["heartbeat_ms"] or a.heartbeat_ms)
    first_in = st.next_in
    sess.resend(ack["next_in"])  # rule 4: what the server has not seen, before anything new
    sent = [sess.send_app(msg("ping", seq=st.next_out, sent_ns=0)) for _ in range(a.count)]
    # ping n carries seq n: the echo of the server's number k must carry seq k (both
    # directions advance together in this test's sessions)
    want = a.count + a.expect_resent + a.expect_pushed
    t0 = time.monotonic()
    handled, seen, resent = 0, 0, 0
    while seen < want:
        if a.handle is not None and handled >= a.handle:
            # this "process" has died: it reads what arrives (so the server surely
            # sent it) but hands nothing more to the session or the application
            m = link.recv(a.deadline_at - time.monotonic())
            if m is None:
                if link.eof:
                    raise Broken("the server closed after %d of %d replies" % (seen, want))
                continue
            emit(unhandled=m)
            seen += not m["type"].startswith("mw_")
            continue
        out = sess.next(a.deadline_at - time.monotonic())
        if sess.logout_got:
            raise Broken("logout from the server: %s" % sess.logout_got["reason"])
        if link.eof:
            raise Broken("the server closed after %d of %d replies" % (seen, want))
        if not out:
            continue
        n, is_resent, m = out
        seen += 1
        if n != first_in + handled:
            raise Broken("reply number %d, want %d" % (n, first_in + handled))
        if m["type"] != "ping" or m["seq"] != n:
            raise Broken("reply %d is %s" % (n, json.dumps(m)))
        if is_resent != (handled < a.expect_resent):
            raise Broken("reply %d resent=%s; want the first %d flagged" % (n, is_resent, a.expect_resent))
        resent += is_resent
        sess.delivered(n)
        handled += 1
    if a.handle is None:
        sess.logout(LOGOUT_NORMAL, "done")
        got = drain(link, 5)
        lo = [m for m in got if m["type"] == "mw_logout"]
        if not lo or lo[0]["code"] != LOGOUT_NORMAL:
            raise Broken("the logout was not answered with mw_logout code 0")
    link.close()
    st.save()
    emit(summary=dict(sess.stats, sent_first=sent[0] if sent else 0, sent_last=sent[-1] if sent else 0,
                      first_in=first_in, handled=handled, resent_seen=resent,
                      ms=int((time.monotonic() - t0) * 1000),
                      next_in=st.next_in, next_out=st.next_out))


def run_server(a):
    st = State(a.state)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    emit(port=ls.getsockname()[1])
    r, _, _ = select.select([ls], [], [], a.deadline_at - time.monotonic())
    if not r:
        raise Broken("no client connected")
    s, _ = ls.accept()
    ls.close()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    link = Link(s, codec_of(a.serdes), a.deadline_at)
    lg = link.recv(a.deadline_at - time.monotonic())
    if lg is None:
        raise Broken("no logon")
    emit(rx=lg)
    sess = Session(link, st, lg.get("heartbeat_ms") or 1000)
    if lg["type"] != "mw_logon":  # rule 8
        sess.protocol_error("the first message must be mw_logon, not %s" % lg["type"])
    why = None
    if not SESSION_ID.match(lg["session"]):
        why = "bad session id %r" % lg["session"]
    elif a.session and lg["session"] != a.session:
        why = "unknown session %s" % lg["session"]
    elif not lg["reset"] and lg["next_in"] > st.next_out:
        why = "you expect %d but we sent only up to %d" % (lg["next_in"], st.next_out - 1)
    elif not lg["reset"] and lg["next_out"] < st.next_in:
        why = "you will send %d but we have received up to %d" % (lg["next_out"], st.next_in - 1)
    elif a.refuse:
        why = a.refuse
    if why:
        sess.logout(LOGOUT_REJECTED, why)
        link.close()
        emit(summary={"rejected": why})
        return
    if lg["reset"]:
        st.reset()
    # --ack-claim K: claim to have received K more than the client sent (it must refuse)
    link.send(msg("mw_logon_ack", session=lg["session"], next_in=st.next_in + a.ack_claim,
                  next_out=st.next_out, heartbeat_ms=lg["heartbeat_ms"], reset=lg["reset"]))
    sess.rx_num = st.next_in
    sess.resend(lg["next_in"])
    if a.test_id:
        link.send(msg("mw_test_request", test_id=a.test_id))
    echoed = 0
    while not link.eof and not sess.logout_got:
        out = sess.next(a.deadline_at - time.monotonic())
        if not out:
            continue
        n, _, m = out
        sess.delivered(n)
        if m["type"] != "ping":
            continue
        k = st.next_out  # the number this echo gets
        echo = msg("ping", seq=m["seq"], sent_ns=0)
        try:
            if k == a.lose:
                # journaled, never written: the client sees the jump at the next one
                st.out[k] = echo
                st.next_out = k + 1
            else:
                if a.lose and k == a.lose + 1:
                    link.send(msg("mw_seq", next=k, resent=False))
                if k == a.dup:  # the three before it again: the client must drop them
                    link.send(msg("mw_seq", next=k - 3, resent=True), *[st.out[i] for i in range(k - 3, k)],
                              msg("mw_seq", next=k, resent=False))
                sess.send_app(echo)
        except OSError:
            pass  # journaled: resent at the next logon
        echoed += 1
        emit(echoed=echoed)
    link.close()
    st.save()
    emit(summary=dict(sess.stats, next_in=st.next_in, next_out=st.next_out, echoed=echoed,
                      logout=sess.logout_got))


def expect_logout(got, code, has=()):
    lo = [m for m in got if m["type"] == "mw_logout"]
    if not lo:
        raise Broken("no mw_logout before the close")
    if lo[0]["code"] != code:
        raise Broken("mw_logout code %d (%s), want %d" % (lo[0]["code"], lo[0]["reason"], code))
    for h in has:
        if h not in lo[0]["reason"]:
            raise Broken("the logout reason %r does not name %r" % (lo[0]["reason"], h))
    return lo[0]


HOSTILE = {
    "gap": "after logon: mw_seq{next=E+5} and a ping; the server must ask mw_resend_request{from=E,to=0};"
           " then mw_seq{next=E} and ping E, whose echo must come back",
    "flood": "20 mw_resend_request at once: mw_logout code 4, close",
    "silent": "logs on (heartbeat_ms 100) and never sends again: heartbeats, mw_test_request,"
              " mw_logout code 3, close",
    "claim": "logon with next_in 50 on a new session: mw_logout code 1 naming 50 and 0",
    "badid": "logon with session ../etc: mw_logout code 1",
    "early": "a ping before the logon: mw_logout code 2",
    "ackfirst": "mw_logon_ack as the first message: mw_logout code 2",
    "relogon": "a second mw_logon after the logon: mw_logout code 2",
    "seq0": "mw_seq{next=0} after the logon: mw_logout code 2",
    "resend0": "mw_resend_request{from=0} after the logon: mw_logout code 2",
    "resetclaim": "logon with reset and next_in 5: mw_logout code 1 (and the session is not reset)",
}
# after the logon: what the hostile client sends, and what the logout must name
AFTER_LOGON = {
    "relogon": (lambda a, st: logon_msg(a, st), "mw_logon"),
    "seq0": (lambda a, st: msg("mw_seq", next=0, resent=False), "next 0"),
    "resend0": (lambda a, st: msg("mw_resend_request", **{"from": 0, "to": 0}), "resend from 0"),
}


def run_hostile(a):
    st = State(None)
    link = connect(a.port, codec_of(a.serdes), a.deadline_at)
    summary = {"case": a.case}
    if a.case in ("claim", "badid", "early", "ackfirst", "resetclaim"):
        if a.case == "claim":
            link.send(logon_msg(a, st, next_in=50))
            lo = expect_logout(drain(link, 5), LOGOUT_REJECTED, ("50", "0"))
        elif a.case == "resetclaim":
            link.send(logon_msg(a, st, next_in=5, reset=True))
            lo = expect_logout(drain(link, 5), LOGOUT_REJECTED, ("5",))
        elif a.case == "ackfirst":
            link.send(msg("mw_logon_ack", session=a.session, next_in=1, next_out=1, heartbeat_ms=1000))
            lo = expect_logout(drain(link, 5), LOGOUT_PROTOCOL, ("mw_logon",))
        elif a.case == "badid":
            link.send(logon_msg(a, st, session="../etc"))
            lo = expect_logout(drain(link, 5), LOGOUT_REJECTED, ("../etc",))
        else:
            link.send(msg("ping", seq=1, sent_ns=0))
            lo = expect_logout(drain(link, 5), LOGOUT_PROTOCOL, ("mw_logon",))
        summary["logout"] = lo
        emit(summary=summary)
        return
    link.send(logon_msg(a, st))
    ack = wait_for(link, ("mw_logon_ack",))
    sess = Session(link, st, ack["heartbeat_ms"])
    e = ack["next_in"]
    if a.case == "gap":
        link.send(msg("mw_seq", next=e + 5, resent=False), msg("ping", seq=e + 5, sent_ns=0))
        rq = wait_for(link, ("mw_resend_request",), 5)
        if rq["from"] != e or rq["to"] != 0:
            raise Broken("resend request %s, want from=%d to=0" % (json.dumps(rq), e))
        # numbers e..e+4 never existed: start again at e (not a resend)
        st.next_out = e
        link.send(msg("mw_seq", next=e, resent=False))
        sess.send_app(msg("ping", seq=e, sent_ns=0))
        while True:
            out = sess.next(a.deadline_at - time.monotonic())
            if link.eof or sess.logout_got:
                raise Broken("closed before the echo")
            if out:
                break
        n, _, m = out
        if n != st.next_in or m["seq"] != e:
            raise Broken("echo %s number %d, want ping %d number %d" % (json.dumps(m), n, e, st.next_in))
        sess.delivered(n)
        summary["resend_request"] = rq
        summary["echo"] = n
        sess.logout(LOGOUT_NORMAL, "done")
        drain(link, 5)
    elif a.case in AFTER_LOGON:
        make, names = AFTER_LOGON[a.case]
        link.send(make(a, st))
        summary["logout"] = expect_logout(drain(link, 5), LOGOUT_PROTOCOL, (names,))
    elif a.case == "flood":
        link.send(*[msg("mw_resend_request", **{"from": 1, "to": 0}) for _ in range(20)])
        summary["logout"] = expect_logout(drain(link, 5), LOGOUT_RESEND_FLOOD)
    elif a.case == "silent":
        t0 = time.monotonic()
        got = drain(link, 5)  # never writes again
        summary["ms"] = int((time.monotonic() - t0) * 1000)
        kinds = [m["type"] for m in got]
        if "mw_test_request" not in kinds:
            raise Broken("no mw_test_request before the close: %s" % kinds)
        if "mw_heartbeat" not in kinds or kinds.index("mw_heartbeat") > kinds.index("mw_test_request"):
            raise Broken("no mw_heartbeat before the test request: %s" % kinds)
        summary["logout"] = expect_logout(got, LOGOUT_SILENT)
        if kinds.index("mw_logout") < kinds.index("mw_test_request"):
            raise Broken("the logout came before the test request: %s" % kinds)
        summary["kinds"] = kinds
    link.close()
    emit(summary=summary)


# ---- the journal file (README "The journal file format") -------------------------

def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def run_journal(a):
    """Reads a journal file as the README describes it; prints each record and
    a summary with where recovery must cut (good_end) and why."""
    with open(a.file, "rb") as f:
        data = f.read()
    if len(data) < 4096:
        raise Broken("a journal of %d bytes" % len(data))
    magic, version, epoch, created, session, crc = struct.unpack_from("<4sIQQ32sI", data, 0)
    if magic != b"MWJ1" or version != 1:
        raise Broken("bad magic/version %r %d" % (magic, version))
    if crc32c(data[:56]) != crc:
        raise Broken("header crc %#x, computed %#x" % (crc, crc32c(data[:56])))
    in_next, in_seen, out_first = struct.unpack_from("<QQQ", data, 64)
    if data[88:4096].strip(b"\0"):
        raise Broken("nonzero bytes in the header after offset 88")
    name = session.split(b"\0")[0].decode()
    if not re.match(r"^%s\.0*%d\.mwj$" % (re.escape(name), epoch), os.path.basename(a.file)):
        raise Broken("file name %s for session %s epoch %d" % (a.file, name, epoch))
    off, want, out, inn, why = 4096, out_first, 0, 0, None
    fixed = FixedCodec()
    while len(data) - off >= 4:
        (ln,) = struct.unpack_from("<I", data, off)
        if ln == 0:
            break
        if len(data) - off < 24 or ln > 1 << 30 or 24 + (ln + 7) // 8 * 8 > len(data) - off:
            why = "record length %d reaches past the end of the file" % ln
            break
        rcrc, seq, kind, r1, r2 = struct.unpack_from("<IQHHI", data, off + 4)
        if crc32c(data[off + 8:off + 24 + ln]) != rcrc:
            why = "record checksum mismatch"
            break
        if kind not in (1, 2) or r1 or r2:
            why = "bad record kind %d" % kind
            break
        if kind == 1 and seq != want:
            why = "outbound record %d where %d was next" % (seq, want)
            break
        payload = data[off + 24:off + 24 + ln]
        rec = {"off": off, "seq": seq, "kind": "out" if kind == 1 else "in", "len": ln}
        if a.decode:
            rec["msg"] = fixed.decode(payload)
        if data[off + 24 + ln:off + 24 + (ln + 7) // 8 * 8].strip(b"\0"):
            raise Broken("nonzero padding after record %d" % seq)
        emit(record=rec)
        if kind == 1:
            want += 1
            out += 1
        else:
            inn += 1
        off += 24 + (ln + 7) // 8 * 8
    if why is None and data[off:].strip(b"\0"):
        why = "nonzero bytes after the last record"
    emit(summary={"session": name, "epoch": epoch, "in_next": in_next, "in_seen": in_seen,
                  "out_first": out_first, "out_next": want, "out": out, "in": inn, "good_end": off,
                  "cut": why})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("role", choices=("client", "server", "hostile", "journal"))
    p.add_argument("serdes", help="text or fixed (journal: the file)")
    p.add_argument("rest", nargs="*")
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--handle", type=int)
    p.add_argument("--expect-resent", type=int, default=0)
    p.add_argument("--expect-pushed", type=int, default=0)
    p.add_argument("--heartbeat-ms", type=int, default=1000)
    p.add_argument("--user", default="py")
    p.add_argument("--reset", action="store_true")
    p.add_argument("--session", default="")
    p.add_argument("--deadline", type=float, default=20.0)
    p.add_argument("--decode", action="store_true", help="journal: decode payloads (fixed serdes)")
    # server misbehaviour, to test a msgwire Clt
    p.add_argument("--lose", type=int, default=0, help="journal echo number K but never write it")
    p.add_argument("--dup", type=int, default=0, help="before echo K, send K-3..K-1 again")
    p.add_argument("--test-id", type=int, default=0, help="send mw_test_request{test_id} after the ack")
    p.add_argument("--ack-claim", type=int, default=0, help="ack next_in = ours + K")
    p.add_argument("--refuse", default="", help="refuse the logon with this reason")
    a = p.parse_args()
    a.deadline_at = time.monotonic() + a.deadline
    if a.role != "journal" and a.serdes not in ("text", "fixed"):
        p.error("serdes: text or fixed")
    try:
        if a.role == "client":
            a.port, a.session, a.state = int(a.rest[0]), a.rest[1], a.rest[2]
            run_client(a)
        elif a.role == "journal":
            a.file = a.serdes
            run_journal(a)
        elif a.role == "server":
            a.state = a.rest[0]
            run_server(a)
        else:
            a.port, a.case = int(a.rest[0]), a.rest[1]
            a.session = a.session or "H1"
            if a.case not in HOSTILE:
                raise Broken("unknown case %s" % a.case)
            run_hostile(a)
    except (Broken, OSError, ValueError, KeyError) as e:
        emit(error="%s: %s" % (type(e).__name__, e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
