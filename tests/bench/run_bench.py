#!/usr/bin/env python3
"""msgwire benchmarks beside raw-socket baselines of the same wait strategy.

Each row runs the raw baseline and msgwire alternately, ROUNDS times, in the
same run, with the same pinning; the table shows the median of each and the
ratio msgwire/raw. Latency: p50 and p99 round-trip time of pingpong (64-byte
messages unless --size). Throughput: flood of 64-byte messages, msgs/s.

Pinning (2-core machine): spin runs svc and clt on different cores (each
spins a core); blocking and event run both on the same core, where every
round trip is two context switches (that is the point of those modes).

Syscalls (a separate section after the timed ones, skipped with
--no-syscalls or when strace is missing): each mode's ping-pong runs under
`strace -f` on both processes (the svc's calls counted from its accept on), once with --sys-base and once with
--sys-base + --sys-count round trips; the difference of the two counts per
syscall, divided by --sys-count, is the cost per round trip without setup
and teardown. Failed calls (EAGAIN: a read that found nothing) are counted
apart: in spin mode they are the spin itself and depend on timing.

Usage: run_bench.py [--rounds N] [--count N] [--quick] [--json FILE]
                    [--no-syscalls] [--sys-count N] [--sys-base N]
Only loopback addresses are used; every process is started here and ended by
its PID; every run is bounded by --count / --seconds and a timeout.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")
RAW_PP = os.path.join(BUILD, "bench", "raw_pingpong")
RAW_ST = os.path.join(BUILD, "bench", "raw_stream")
MW_PP = os.path.join(BUILD, "examples", "pingpong")
MW_FL = os.path.join(BUILD, "examples", "flood")
TIMEOUT = 120


def strace_wrap(cmd, out):
    """cmd run under strace -f (every syscall of every thread, one line each) into out."""
    return ["strace", "-f", "-qq", "-s", "0", "-o", out, "--"] + cmd if out else cmd


def start_svc(cmd, cpu):
    """Starts a server pinned to cpu, returns (proc, port) once it listens."""
    full = ["taskset", "-c", str(cpu)] + cmd
    p = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        if line.startswith("listening on "):
            return p, int(line.split()[2])
    p.kill()
    p.wait()
    raise RuntimeError("server did not report its port: %s" % " ".join(cmd))


def run_client(cmd, cpu):
    full = ["taskset", "-c", str(cpu)] + cmd
    r = subprocess.run(full, capture_output=True, text=True, timeout=TIMEOUT)
    if r.returncode != 0:
        raise RuntimeError("client failed (%d): %s\n%s" % (r.returncode, " ".join(cmd), r.stderr))
    return r.stdout


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON result line in:\n" + text)


def finish(p, what):
    try:
        out, err = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise RuntimeError(what + " did not exit")
    if p.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (what, p.returncode, err))
    return out


def pingpong(impl, mode, serdes, size, count, warmup, cpus, scheme="tcp", pki=None, trace=None, journal=None,
             fsync="none"):
    """One ping-pong run; trace=(svc file, clt file) runs both under strace -f."""
    base = "%s://127.0.0.1:%%d%s" % (scheme, "/pp" if scheme.startswith("ws") else "")
    if impl == "raw":
        svc = [RAW_PP, "svc", "--url", base % 0, "--mode", mode, "--size", str(size), "--once"]
    else:
        svc = [MW_PP, "svc", "--url", base % 0, "--mode", mode, "--serdes", serdes, "--once"]
        if journal:
            svc += ["--journal", journal, "--fsync", fsync]
        if pki:
            svc += ["--cert", pki[0], "--key", pki[1]]
    p, port = start_svc(strace_wrap(svc, trace and trace[0]), cpus[0])
    url = base % port
    exe = RAW_PP if impl == "raw" else MW_PP
    clt = [exe, "clt", "--url", url, "--mode", mode, "--size", str(size), "--count", str(count),
           "--warmup", str(warmup), "--json"]
    if impl != "raw":
        clt += ["--serdes", serdes]
        if journal:
            clt += ["--journal", journal, "--fsync", fsync]
        if pki:
            clt += ["--ca", pki[0]]
    try:
        res = last_json(run_client(strace_wrap(clt, trace and trace[1]), cpus[1]))
    finally:
        finish(p, "svc")
    return res


def flood(impl, mode, serdes, size, seconds, cpus):
    if impl == "raw":
        recv = [RAW_ST, "recv", "--url", "tcp://127.0.0.1:0", "--mode", mode, "--size", str(size), "--json"]
    else:
        recv = [MW_FL, "recv", "--url", "tcp://127.0.0.1:0", "--mode", mode, "--serdes", serdes,
                "--size", str(size), "--json"]
    p, port = start_svc(recv, cpus[0])
    url = "tcp://127.0.0.1:%d" % port
    exe = RAW_ST if impl == "raw" else MW_FL
    send = [exe, "send", "--url", url, "--mode", mode, "--size", str(size), "--seconds", str(seconds)]
    if impl != "raw":
        send += ["--serdes", serdes]
    run_client(send, cpus[1])
    return last_json(finish(p, "receiver"))


def make_pki(tmp):
    """A self-signed certificate for localhost/127.0.0.1, made now (EC P-256)."""
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def transports(a, warmup, other, results):
    """msgwire over each URL scheme against msgwire over TCP, spin mode."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        pki = make_pki(tmp)
        print()
        hdr = "%-18s %10s %10s %7s %7s" % ("transport (spin)", "tcp p50", "p50", "ratio", "target")
        print(hdr)
        print("-" * len(hdr))
        results["transports"] = []
        for scheme, target in [("ws", 1.10), ("tls", None), ("wss", None)]:
            tcp, other_runs = [], []
            for _ in range(a.rounds):
                tcp.append(pingpong("mw", "spin", "fixed", 64, a.count, warmup, (0, other)))
                other_runs.append(pingpong("mw", "spin", "fixed", 64, a.count, warmup, (0, other),
                                           scheme, pki if scheme in ("tls", "wss") else None))
            t50 = statistics.median(r["rtt_ns"]["p50"] for r in tcp)
            o50 = statistics.median(r["rtt_ns"]["p50"] for r in other_runs)
            ratio = o50 / t50 if t50 else float("nan")
            note = "" if target is None or ratio <= target else "  (over target)"
            print("%-18s %8.2fus %8.2fus %7.3f %7s%s" % (scheme + "://", t50 / 1e3, o50 / 1e3, ratio,
                                                         "%.2fx" % target if target else "-", note))
            results["transports"].append({"scheme": scheme, "tcp_p50_ns": t50, "p50_ns": o50, "ratio": ratio})


SYSCALL_DONE = re.compile(r"\)\s+=\s+(-?\d+|\?|0x[0-9a-f]+)(\s+E[A-Z0-9]+)?")


def strace_counts(path, from_accept=False):
    """strace -f output -> {syscall: (calls, errors)}, each call counted when it returns.
    from_accept: only from the first accepted connection on (a svc), so that a spin-mode svc
    polling its listener until the clt has started is not counted."""
    counts = {}
    started = not from_accept
    with open(path) as f:
        for line in f:
            parts = line.split(None, 1)
            if len(parts) < 2 or not parts[0].isdigit():
                continue
            rest = parts[1].rstrip()
            if rest.endswith("<unfinished ...>") or rest.startswith(("---", "+++")):
                continue
            if rest.startswith("<... "):
                name = rest[5:].split(None, 1)[0]
            else:
                name = rest.split("(", 1)[0]
            done = SYSCALL_DONE.findall(rest)
            if not done or not name.isidentifier():
                continue
            ret, err = done[-1]
            if not started:
                started = name.startswith("accept") and not ret.startswith("-")
                continue
            c, e = counts.get(name, (0, 0))
            counts[name] = (c + 1, e + (1 if err else 0))
    return counts


def traced_counts(run, n, tmp):
    """{"svc"|"clt": {syscall: (calls, errors)}, "secs": wall time} of run(n, (svc file, clt file)),
    a ping-pong of n round trips with both processes under strace -f."""
    files = (os.path.join(tmp, "svc.st"), os.path.join(tmp, "clt.st"))
    t0 = time.monotonic()
    run(n, files)
    return {"svc": strace_counts(files[0], True), "clt": strace_counts(files[1]), "secs": time.monotonic() - t0}


def per_rt(run, base, count, tmp):
    """({(side, syscall): (ok calls per round trip, failed calls per round trip)}, traced us per round trip):
    the counts of a run of base + count round trips minus those of a run of base, over count."""
    lo = traced_counts(run, base, tmp)
    hi = traced_counts(run, base + count, tmp)
    out = {}
    for side in ("clt", "svc"):
        for name in set(lo[side]) | set(hi[side]):
            c1, e1 = lo[side].get(name, (0, 0))
            c2, e2 = hi[side].get(name, (0, 0))
            ok, failed = ((c2 - e2) - (c1 - e1)) / count, (e2 - e1) / count
            if abs(ok) >= 0.005 or abs(failed) >= 0.005:
                out[(side, name)] = (ok, failed)
    return out, (hi["secs"] - lo["secs"]) * 1e6 / count


SYS_HDR = "%-12s %-4s %-16s %16s %16s %8s"


def syscall_header(base, count, what):
    """Prints the method and the header of a syscall table; False when strace is missing."""
    print()
    if not shutil.which("strace"):
        print("syscalls per round trip: skipped (strace is not installed)")
        return False
    print("syscalls per round trip (strace -f on each process, the svc's from its accept on; runs of %d and %d round trips, difference "
          "/ %d).\nok = calls that returned data or did their work; (+N) = failed calls, EAGAIN: a read that "
          "found nothing (in spin mode, the spin itself; under strace it spins slower). Calls made once per "
          "millisecond count more per round trip under strace, which slows each round trip (traced rt time)." % (
              base, base + count, count))
    hdr = SYS_HDR % ("mode", "side", "syscall", what + " ok (+failed)", "mw ok (+failed)", "ok diff")
    print(hdr)
    print("-" * len(hdr))
    return True


def syscall_rows(label, base, count, run_ref, run_mw, tmp):
    """Measures and prints one mode's rows: the reference, msgwire, the difference; returns them."""
    ref, ref_us = per_rt(run_ref, base, count, tmp)
    mw, mw_us = per_rt(run_mw, base, count, tmp)
    fmt = lambda v: "%.2f (+%.2f)" % v if v[1] >= 0.005 else "%.2f" % v[0]
    keys = sorted(set(ref) | set(mw), key=lambda k: (k[0], -max(ref.get(k, (0, 0))[0], mw.get(k, (0, 0))[0]), k[1]))
    for side, name in keys:
        r, m = ref.get((side, name), (0.0, 0.0)), mw.get((side, name), (0.0, 0.0))
        print(SYS_HDR.replace("%8s", "%+8.2f") % (label, side, name, fmt(r), fmt(m), m[0] - r[0]))
    rt = (sum(v[0] for v in ref.values()), sum(v[1] for v in ref.values()))
    mt = (sum(v[0] for v in mw.values()), sum(v[1] for v in mw.values()))
    print(SYS_HDR.replace("%8s", "%+8.2f") % (label, "both", "total", fmt(rt), fmt(mt), mt[0] - rt[0]))
    print("%-12s %-4s %-16s %14.0fus %14.0fus" % (label, "", "traced rt time", ref_us, mw_us))
    sys.stdout.flush()
    return {"mode": label, "ref": {"%s %s" % k: v for k, v in ref.items()},
            "mw": {"%s %s" % k: v for k, v in mw.items()}, "ref_total_ok": rt[0], "mw_total_ok": mt[0],
            "traced_us_per_rt_ref": ref_us, "traced_us_per_rt_mw": mw_us}


def syscalls(a, other, results):
    """Syscalls per round trip, raw vs msgwire, each mode (strace -f, both sides)."""
    import tempfile
    if not syscall_header(a.sys_base, a.sys_count, "raw"):
        return
    results["syscalls"] = {"method": "strace -f on svc (from its accept) and clt; (counts at %d - counts at %d) / %d" % (
        a.sys_base + a.sys_count, a.sys_base, a.sys_count), "modes": []}
    with tempfile.TemporaryDirectory() as tmp:
        for label, rmode, mmode, cpus in [("spin", "spin", "spin", (0, other)),
                                          ("blocking", "blocking", "blocking", (0, 0)),
                                          ("event", "epoll", "event", (0, 0))]:
            raw = lambda n, files: pingpong("raw", rmode, "raw", 64, n, 0, cpus, trace=files)
            mw = lambda n, files: pingpong("mw", mmode, "fixed", 64, n, 0, cpus, trace=files)
            results["syscalls"]["modes"].append(syscall_rows(label, a.sys_base, a.sys_count, raw, mw, tmp))


def sessions(a, warmup, other, results):
    """Session ping-pong beside the plain one (same run, same pinning): fsync
    none against the target, then what interval and always cost."""
    import tempfile
    print()
    hdr = "%-18s %10s %10s %7s %10s %10s %7s %7s" % ("session pingpong", "plain p50", "sess p50", "ratio",
                                                     "plain p99", "sess p99", "ratio", "target")
    print(hdr)
    print("-" * len(hdr))
    results["sessions"] = []
    with tempfile.TemporaryDirectory(prefix="mw_bench_sess_") as tmp:
        for label, mode, cpus in [("spin", "spin", (0, other)), ("blocking", "blocking", (0, 0)),
                                  ("event", "event", (0, 0))]:
            plain, sess = [], []
            for _ in range(a.rounds):
                plain.append(pingpong("mw", mode, "fixed", 64, a.count, warmup, cpus))
                sess.append(pingpong("mw", mode, "fixed", 64, a.count, warmup, cpus, journal=tmp))
            med = lambda rs, k: statistics.median(r["rtt_ns"][k] for r in rs)
            p50, s50, p99, s99 = med(plain, "p50"), med(sess, "p50"), med(plain, "p99"), med(sess, "p99")
            ratio = s50 / p50 if p50 else float("nan")
            print("%-18s %8.2fus %8.2fus %7.3f %8.2fus %8.2fus %7.3f %6.2fx%s" % (
                label + " (none)", p50 / 1e3, s50 / 1e3, ratio, p99 / 1e3, s99 / 1e3, s99 / p99 if p99 else 0,
                1.10, "" if ratio <= 1.10 else "  (over target)"))
            results["sessions"].append({"mode": label, "fsync": "none", "plain_p50_ns": p50, "sess_p50_ns": s50,
                                        "ratio_p50": ratio, "plain_p99_ns": p99, "sess_p99_ns": s99})
        print()
        hdr = "%-18s %10s %10s %12s %10s" % ("fsync cost", "p50", "p99", "fsyncs/s", "msgs")
        print(hdr)
        print("-" * len(hdr))
        for fs in ("none", "interval", "always"):
            count = a.count if fs != "always" else max(a.count // 20, 500)  # always: one fsync a message
            r = pingpong("mw", "blocking", "fixed", 64, count, max(count // 10, 50), (0, 0), journal=tmp, fsync=fs)
            secs = count / r["rtt_per_s"] if r.get("rtt_per_s") else 0
            fps = r["session"]["fsyncs"] / secs if secs else 0
            print("%-18s %8.2fus %8.2fus %12.0f %10d" % ("blocking " + fs, r["rtt_ns"]["p50"] / 1e3,
                                                         r["rtt_ns"]["p99"] / 1e3, fps, count))
            results["sessions"].append({"mode": "blocking", "fsync": fs, "sess_p50_ns": r["rtt_ns"]["p50"],
                                        "sess_p99_ns": r["rtt_ns"]["p99"], "fsyncs_per_s": fps})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--count", type=int, default=50000)
    ap.add_argument("--seconds", type=float, default=2)
    ap.add_argument("--quick", action="store_true", help="1 round, small counts (smoke test)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--no-syscalls", action="store_true", help="skip the strace section")
    ap.add_argument("--sys-count", type=int, default=20000, help="round trips counted under strace")
    ap.add_argument("--sys-base", type=int, default=2000, help="round trips of the baseline run")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.count, a.seconds = 1, 3000, 0.5
        a.sys_count, a.sys_base = 2000, 500
    warmup = max(a.count // 10, 100)
    ncpu = os.cpu_count() or 1
    other = 1 if ncpu > 1 else 0
    # (label, raw mode, msgwire mode, cpus svc/clt, target ratio on p50)
    rows = [
        ("spin (busy-poll)", "spin", "spin", (0, other), 1.05),
        ("blocking", "blocking", "blocking", (0, 0), 1.10),
        ("event (epoll)", "epoll", "event", (0, 0), 1.15),
    ]
    results = {"method": "median of %d interleaved rounds; pingpong count %d (warmup %d), 64 B fixed; "
                         "flood %.1f s of 64 B fixed" % (a.rounds, a.count, warmup, a.seconds),
               "latency": [], "flood": []}
    print("msgwire vs raw sockets, same wait strategy, same run (%s)" % results["method"])
    print()
    hdr = "%-18s %10s %10s %7s %10s %10s %7s %7s" % ("pingpong", "raw p50", "mw p50", "ratio", "raw p99",
                                                     "mw p99", "ratio", "target")
    print(hdr)
    print("-" * len(hdr))
    for label, rmode, mmode, cpus, target in rows:
        raw, mw = [], []
        for _ in range(a.rounds):
            raw.append(pingpong("raw", rmode, "raw", 64, a.count, warmup, cpus))
            mw.append(pingpong("mw", mmode, "fixed", 64, a.count, warmup, cpus))
        med = lambda rs, k: statistics.median(r["rtt_ns"][k] for r in rs)
        r50, m50, r99, m99 = med(raw, "p50"), med(mw, "p50"), med(raw, "p99"), med(mw, "p99")
        ratio = m50 / r50 if r50 else float("nan")
        print("%-18s %8.2fus %8.2fus %7.3f %8.2fus %8.2fus %7.3f %6.2fx%s" % (
            label, r50 / 1e3, m50 / 1e3, ratio, r99 / 1e3, m99 / 1e3, m99 / r99 if r99 else 0, target,
            "" if ratio <= target else "  (over target)"))
        results["latency"].append({"mode": label, "raw_p50_ns": r50, "mw_p50_ns": m50, "ratio_p50": ratio,
                                   "raw_p99_ns": r99, "mw_p99_ns": m99, "target": target,
                                   "rounds_raw_p50": [r["rtt_ns"]["p50"] for r in raw],
                                   "rounds_mw_p50": [r["rtt_ns"]["p50"] for r in mw]})
    print()
    hdr = "%-18s %14s %14s %7s %7s" % ("flood 64 B", "raw msgs/s", "mw msgs/s", "ratio", "target")
    print(hdr)
    print("-" * len(hdr))
    for label, rmode, mmode, cpus in [("spin", "spin", "spin", (0, other)),
                                      ("blocking", "blocking", "blocking", (0, other))]:
        raw, mw = [], []
        for _ in range(a.rounds):
            raw.append(flood("raw", rmode, "raw", 64, a.seconds, cpus))
            mw.append(flood("mw", mmode, "fixed", 64, a.seconds, cpus))
        rm = statistics.median(r["msgs_per_s"] for r in raw)
        mm = statistics.median(r["msgs_per_s"] for r in mw)
        lost = sum(r.get("lost", 0) + r.get("out_of_order", 0) for r in mw)
        ratio = mm / rm if rm else float("nan")
        print("%-18s %14.0f %14.0f %7.3f %6.2fx%s%s" % (label, rm, mm, ratio, 0.6,
                                                        "" if ratio >= 0.6 else "  (under target)",
                                                        "  LOST %d" % lost if lost else ""))
        results["flood"].append({"mode": label, "raw_msgs_per_s": rm, "mw_msgs_per_s": mm, "ratio": ratio,
                                 "lost_or_reordered": lost})
    sessions(a, warmup, other, results)
    transports(a, warmup, other, results)
    if not a.no_syscalls:
        syscalls(a, other, results)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
