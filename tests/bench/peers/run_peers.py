#!/usr/bin/env python3
"""msgwire beside other messaging libraries, same placement, same run.

`make bench-peers` builds tests/bench/peers/*.c (ping-pong programs on
ZeroMQ, nng, libwebsockets and plain OpenSSL; see peer_common.h) and runs
this. Each row runs msgwire's pingpong and the peer(s) alternately, ROUNDS
times, with the same pinning, 64-byte messages; the table shows the median
p50 and p99 of each and the ratio msgwire/peer (below 1: msgwire is faster).

  event tcp   msgwire event mode (epoll) vs ZeroMQ PAIR and nng pair1, both
              processes on core 0 (as in run_bench.py's event row)
  event ws    msgwire event mode over ws:// vs libwebsockets, core 0
  tls spin    msgwire spin over tls:// vs OpenSSL with a nonblocking SSL_read
              spin loop, svc on core 0, clt on core 1
  tls block   msgwire blocking over tls:// vs OpenSSL with a blocking
              SSL_read, core 0

Then, unless --no-syscalls (or strace is missing), the syscalls per round
trip of each row, msgwire beside the peer, counted as in run_bench.py (strace -f, difference of two run lengths), outside the
timed runs.

Usage: run_peers.py [--rounds N] [--count N] [--quick] [--json FILE]
                    [--no-syscalls] [--sys-count N] [--sys-base N]
Only loopback addresses; every process is started here and waited for (by
its PID, with a timeout); certificates are made in a temporary directory.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import run_bench as rb  # noqa: E402  (start_svc, run_client, pingpong, make_pki)

PEERS = os.path.join(rb.BUILD, "bench", "peers")


def peer_pingpong(prog, scheme, mode, count, warmup, cpus, pki=None, trace=None):
    exe = os.path.join(PEERS, prog)
    path = "/pp" if scheme == "ws" else ""
    svc = [exe, "svc", "--url", "%s://127.0.0.1:0%s" % (scheme, path), "--mode", mode, "--once"]
    if pki:
        svc += ["--cert", pki[0], "--key", pki[1]]
    p, port = rb.start_svc(rb.strace_wrap(svc, trace and trace[0]), cpus[0])
    clt = [exe, "clt", "--url", "%s://127.0.0.1:%d%s" % (scheme, port, path), "--mode", mode,
           "--size", "64", "--count", str(count), "--warmup", str(warmup), "--json"]
    if pki:
        clt += ["--ca", pki[0]]
    try:
        return rb.last_json(rb.run_client(rb.strace_wrap(clt, trace and trace[1]), cpus[1]))
    finally:
        rb.finish(p, prog + " svc")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--quick", action="store_true", help="1 round, small counts (smoke test)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--no-syscalls", action="store_true", help="skip the strace section")
    ap.add_argument("--sys-count", type=int, default=10000, help="round trips counted under strace")
    ap.add_argument("--sys-base", type=int, default=1000, help="round trips of the baseline run")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.count, a.sys_count, a.sys_base = 1, 2000, 2000, 500
    warmup = max(a.count // 10, 100)
    other = 1 if (os.cpu_count() or 1) > 1 else 0
    for prog in ("peer_zmq", "peer_nng", "peer_lws", "peer_tls"):
        if not os.access(os.path.join(PEERS, prog), os.X_OK):
            sys.exit("run_peers: %s/%s is missing: run `make bench-peers`" % (PEERS, prog))

    with tempfile.TemporaryDirectory() as tmp:
        pki = rb.make_pki(tmp)
        # (label, msgwire (scheme, mode), cpus, [(peer label, prog, scheme, mode, target)])
        rows = [
            ("event tcp", ("tcp", "event"), (0, 0),
             [("ZeroMQ PAIR", "peer_zmq", "tcp", "event", 0.33), ("nng pair1", "peer_nng", "tcp", "event", None)]),
            ("event ws", ("ws", "event"), (0, 0), [("libwebsockets", "peer_lws", "ws", "event", 0.85)]),
            ("tls spin", ("tls", "spin"), (0, other), [("raw OpenSSL", "peer_tls", "tls", "spin", 1.10)]),
            ("tls blocking", ("tls", "blocking"), (0, 0), [("raw OpenSSL", "peer_tls", "tls", "blocking", 1.10)]),
        ]
        method = ("median of %d interleaved rounds; %d round trips of 64 B after %d warm-up; msgwire "
                  "`pingpong` with the fixed serdes" % (a.rounds, a.count, warmup))
        print("msgwire vs peer libraries, same placement, same run (%s)" % method)
        print()
        hdr = "%-13s %-14s %9s %9s %7s %9s %9s %7s %7s" % (
            "row", "peer", "mw p50", "peer p50", "ratio", "mw p99", "peer p99", "ratio", "target")
        print(hdr)
        print("-" * len(hdr))
        results = {"method": method, "rows": []}
        for label, (scheme, mode), cpus, peers in rows:
            tls = pki if scheme == "tls" else None
            mw, others, raw = [], {p[0]: [] for p in peers}, []
            # tcp rows also time raw sockets (the same wait strategy, no
            # library): raw / peer is the floor any target on that row has
            floor = scheme == "tcp"
            for _ in range(a.rounds):
                mw.append(rb.pingpong("mw", mode, "fixed", 64, a.count, warmup, cpus, scheme, tls))
                if floor:
                    raw.append(rb.pingpong("raw", "epoll" if mode == "event" else mode, "fixed", 64, a.count,
                                           warmup, cpus))
                for plabel, prog, pscheme, pmode, _t in peers:
                    others[plabel].append(peer_pingpong(prog, pscheme, pmode, a.count, warmup, cpus, tls))
            med = lambda rs, k: statistics.median(r["rtt_ns"][k] for r in rs)
            m50, m99 = med(mw, "p50"), med(mw, "p99")
            for plabel, prog, pscheme, pmode, target in peers:
                o50, o99 = med(others[plabel], "p50"), med(others[plabel], "p99")
                r50 = m50 / o50 if o50 else float("nan")
                r99 = m99 / o99 if o99 else float("nan")
                print("%-13s %-14s %7.2fus %7.2fus %7.3f %7.2fus %7.2fus %7.3f %7s%s" % (
                    label, plabel, m50 / 1e3, o50 / 1e3, r50, m99 / 1e3, o99 / 1e3, r99,
                    "<=%.2f" % target if target else "-",
                    "  (over target)" if target and r50 > target else ""))
                if floor:
                    w50 = med(raw, "p50")
                    print("%-13s %-14s %7.2fus %7.2fus %7.3f   (raw sockets against the same peer: the floor)" % (
                        "", "raw " + mode, w50 / 1e3, o50 / 1e3, w50 / o50 if o50 else float("nan")))
                sys.stdout.flush()
                results["rows"].append({
                    "row": label, "peer": plabel, "cpus": list(cpus), "mw_p50_ns": m50, "peer_p50_ns": o50,
                    "ratio_p50": r50, "mw_p99_ns": m99, "peer_p99_ns": o99, "ratio_p99": r99,
                    "target_p50": target,
                    "raw_p50_ns": med(raw, "p50") if floor else None,
                    "rounds_mw_p50": [r["rtt_ns"]["p50"] for r in mw],
                    "rounds_peer_p50": [r["rtt_ns"]["p50"] for r in others[plabel]]})
        print()
        print("ratio = msgwire / peer (below 1: msgwire is faster). Pinning: event and blocking rows put "
              "both processes on core 0; tls spin puts the svc on core 0 and the clt on core %d." % other)
        if not a.no_syscalls and rb.syscall_header(a.sys_base, a.sys_count, "peer"):
            results["syscalls"] = []
            for label, (scheme, mode), cpus, peers in rows:
                tls = pki if scheme == "tls" else None
                for plabel, prog, pscheme, pmode, _t in peers:
                    ref = lambda n, files: peer_pingpong(prog, pscheme, pmode, n, 0, cpus, tls, files)
                    mw = lambda n, files: rb.pingpong("mw", mode, "fixed", 64, n, 0, cpus, scheme, tls, files)
                    row = rb.syscall_rows(prog[5:] + " " + mode, a.sys_base, a.sys_count, ref, mw, tmp)
                    row["peer"] = plabel
                    results["syscalls"].append(row)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
