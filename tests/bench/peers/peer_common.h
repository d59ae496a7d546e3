/* peer_common.h - what the peer ping-pong programs (peer_zmq, peer_nng,
 * peer_lws, peer_tls) share: options, the payload, the echo check and the
 * result lines. They must not use msgwire; each one uses its own library the
 * way its documentation shows, and run_bench.py runs them beside msgwire's
 * pingpong at the same placement.
 *
 * Command line (every peer):
 *   PROG svc --url URL [--mode M] [--once] [--cert F --key F]
 *   PROG clt --url URL [--mode M] [--size BYTES] [--count N] [--warmup N]
 *            [--json] [--ca F]
 * The svc prints "listening on PORT" once it listens (port 0: any free
 * port) and echoes every message; the clt sends one message of --size bytes
 * (the first 8 the sequence number, the rest a pattern derived from it),
 * waits for its echo, checks it byte for byte and records the round trip.
 * At the end the clt prints the same lines and JSON object as raw_pingpong
 * ("rtt_ns": {"p50": ...}). Define RAW_PROG before including.
 */
#ifndef PEER_COMMON_H
#define PEER_COMMON_H

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../raw_common.h"

#define PEER_MIN_SIZE 8u
#define PEER_MAX_SIZE (1u << 20)

struct peer_opts {
    const char *cmd; /* "svc" or "clt" */
    const char *url;
    const char *mode; /* the program checks the value */
    const char *cert, *key, *ca;
    uint32_t size;
    uint64_t count, warmup;
    int once, json;
};

static __attribute__((unused)) void peer_usage(const char *modes)
{
    fprintf(stderr,
            "usage:\n"
            "  %s svc --url tcp://HOST:PORT [--mode %s] [--once] [--cert F --key F]\n"
            "  %s clt --url tcp://HOST:PORT [--mode %s] [--size BYTES] [--count N] [--warmup N]"
            " [--json] [--ca F]\n",
            RAW_PROG, modes, RAW_PROG, modes);
    exit(2);
}

/* Parses argv into o (defaults: size 64, count 100000, warmup 10000). */
static __attribute__((unused)) void peer_parse(int argc, char **argv, struct peer_opts *o,
                                               const char *modes)
{
    if (argc < 2 || (strcmp(argv[1], "svc") != 0 && strcmp(argv[1], "clt") != 0))
        peer_usage(modes);
    memset(o, 0, sizeof *o);
    o->cmd = argv[1];
    o->size = 64;
    o->count = 100000;
    o->warmup = 10000;
    for (int i = 2; i < argc; i++) {
        const char *name = argv[i];
        if (strcmp(name, "--once") == 0) {
            o->once = 1;
            continue;
        }
        if (strcmp(name, "--json") == 0) {
            o->json = 1;
            continue;
        }
        if (strncmp(name, "--", 2) != 0 || i + 1 >= argc)
            peer_usage(modes);
        const char *val = argv[++i];
        if (strcmp(name, "--url") == 0)
            o->url = val;
        else if (strcmp(name, "--mode") == 0)
            o->mode = val;
        else if (strcmp(name, "--cert") == 0)
            o->cert = val;
        else if (strcmp(name, "--key") == 0)
            o->key = val;
        else if (strcmp(name, "--ca") == 0)
            o->ca = val;
        else if (strcmp(name, "--size") == 0) {
            uint64_t s = parse_u64(name, val);
            if (s < PEER_MIN_SIZE || s > PEER_MAX_SIZE)
                die("--size must be in [%u, %u]", PEER_MIN_SIZE, PEER_MAX_SIZE);
            o->size = (uint32_t)s;
        } else if (strcmp(name, "--count") == 0)
            o->count = parse_u64(name, val);
        else if (strcmp(name, "--warmup") == 0)
            o->warmup = parse_u64(name, val);
        else
            die("unknown option %s", name);
    }
    if (!o->url)
        die("%s needs --url", o->cmd);
    if (o->count == 0 || o->count > ((uint64_t)1 << 32))
        die("--count must be 1 .. 2^32");
}

/* "tcp://HOST:PORT/anything" -> host and port strings. */
static __attribute__((unused)) void peer_split_url(const char *url, char *host, size_t hcap,
                                                   char *port, size_t pcap)
{
    const char *p = strstr(url, "://");
    if (!p)
        die("bad url '%s'", url);
    p += 3;
    const char *hend, *colon;
    if (*p == '[') {
        hend = strchr(p, ']');
        if (!hend || hend[1] != ':')
            die("bad url '%s'", url);
        p++;
        colon = hend + 1;
    } else {
        colon = strchr(p, ':');
        if (!colon)
            die("bad url '%s'", url);
        hend = colon;
    }
    size_t hl = (size_t)(hend - p);
    size_t pl = strcspn(colon + 1, "/");
    if (hl == 0 || hl >= hcap || pl == 0 || pl >= pcap)
        die("bad url '%s'", url);
    memcpy(host, p, hl);
    host[hl] = 0;
    memcpy(port, colon + 1, pl);
    port[pl] = 0;
}

/* The message of sequence number seq: seq (LE), then a pattern from seq. */
static __attribute__((unused)) void peer_fill(unsigned char *p, uint32_t size, uint64_t seq)
{
    put_le64(p, seq);
    uint64_t x = (seq + 1) * 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    for (uint32_t i = 8; i < size; i++)
        p[i] = (unsigned char)((x >> (8 * (i & 7))) + i);
}

/* Dies unless got[0..len) is the echo of want[0..size). */
static __attribute__((unused)) void peer_check(const unsigned char *want, uint32_t size,
                                               const unsigned char *got, size_t len, uint64_t seq)
{
    if (len != size)
        die("echo %" PRIu64 ": %zu bytes, expected %" PRIu32, seq, len, size);
    if (memcmp(want, got, size) == 0)
        return;
    uint64_t gs = get_le64(got);
    if (gs != seq)
        die("echo sequence mismatch: got %" PRIu64 ", expected %" PRIu64, gs, seq);
    die("echo %" PRIu64 ": payload mismatch", seq);
}

/* ---- results -------------------------------------------------------------- */

struct peer_run {
    uint64_t *rtt; /* count of them */
    uint64_t n, total, seq;
    uint64_t t_start, t_end;
};

static __attribute__((unused)) void peer_run_init(struct peer_run *r, const struct peer_opts *o)
{
    memset(r, 0, sizeof *r);
    r->rtt = malloc(o->count * sizeof *r->rtt);
    if (!r->rtt)
        die("out of memory");
    r->total = o->warmup + o->count;
    r->n = o->count;
}

/* Records the round trip of message r->seq (t0 .. t1) and moves on. */
static __attribute__((unused)) void peer_record(struct peer_run *r, const struct peer_opts *o,
                                                uint64_t t0, uint64_t t1)
{
    if (r->seq == o->warmup)
        r->t_start = t0;
    if (r->seq >= o->warmup)
        r->rtt[r->seq - o->warmup] = t1 - t0;
    r->t_end = t1;
    r->seq++;
}

static int peer_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static __attribute__((unused)) uint64_t peer_pct(const uint64_t *v, uint64_t n, double p)
{
    double r = p / 100.0 * (double)n;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

/* Prints the result lines and (with --json) one JSON object, the shape of
 * raw_pingpong's: {"mode":..,"serdes":"raw","url":..,"rtt_ns":{"p50":..}}. */
static __attribute__((unused)) void peer_report(struct peer_run *r, const struct peer_opts *o,
                                                const char *what, const char *mode)
{
    uint64_t n = r->n;
    uint64_t *v = r->rtt;
    qsort(v, n, sizeof *v, peer_cmp_u64);
    uint64_t mn = v[0], p50 = peer_pct(v, n, 50), p90 = peer_pct(v, n, 90),
             p99 = peer_pct(v, n, 99), p999 = peer_pct(v, n, 99.9), mx = v[n - 1];
    double secs = (double)(r->t_end - r->t_start) / 1e9;
    double per_s = secs > 0 ? (double)n / secs : 0;
    printf("%s pingpong: mode %s, size %" PRIu32 ", %" PRIu64 " round trips (+%" PRIu64
           " warmup), %s\n",
           what, mode, o->size, n, o->warmup, o->url);
    printf("rtt us: min %.3f  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", mn / 1e3,
           p50 / 1e3, p90 / 1e3, p99 / 1e3, p999 / 1e3, mx / 1e3);
    printf("round trips/s: %.0f\n", per_s);
    if (o->json)
        printf("{\"impl\":\"%s\",\"mode\":\"%s\",\"serdes\":\"raw\",\"url\":\"%s\",\"size\":%" PRIu32
               ",\"count\":%" PRIu64 ",\"rtt_ns\":{\"min\":%" PRIu64 ",\"p50\":%" PRIu64
               ",\"p90\":%" PRIu64 ",\"p99\":%" PRIu64 ",\"p999\":%" PRIu64 ",\"max\":%" PRIu64
               "},\"rtt_per_s\":%.1f}\n",
               what, mode, o->url, o->size, n, mn, p50, p90, p99, p999, mx, per_s);
    fflush(stdout);
    free(r->rtt);
    r->rtt = NULL;
}

static __attribute__((unused)) void peer_listening(unsigned port)
{
    printf("listening on %u\n", port);
    fflush(stdout);
}

#endif
