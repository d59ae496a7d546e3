/*
 * raw_stream - plain-socket one-way throughput baseline (no msgwire).
 *
 *   raw_stream recv --url tcp://HOST:PORT [--mode spin|blocking|epoll]
 *                   [--size BYTES] [--cpu N] [--json]
 *   raw_stream send --url tcp://HOST:PORT [--mode spin|blocking|epoll]
 *                   [--size BYTES] [--seconds S] [--count N] [--cpu N] [--json]
 *
 * Wire format: u32 big-endian payload length, then `size` payload bytes whose
 * first 8 are an increasing sequence number (little-endian, from 0).
 *
 * The sender packs as many whole messages as fit into a 64 KiB user buffer
 * and hands the whole buffer to one send(); the payload template is written
 * once, so per message only the sequence number is stored. It stops after
 * --seconds (default 2) or --count messages, whichever comes first, and
 * closes the connection.
 *
 * The receiver listens (port 0 allowed; prints "listening on PORT"), accepts
 * one sender, reads into a 256 KiB buffer, parses every message (a partial
 * one at the end of the buffer is carried over) and checks that each
 * sequence number is previous+1. A gap adds to `lost`, a step backwards to
 * `out_of_order`. It stops on EOF; with no data for 60 s it exits with 2.
 * Time is measured from the first byte received to EOF; MB/s counts payload
 * bytes (10^6).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define RAW_PROG "raw_stream"
#include "raw_common.h"

#define HDR 4u
#define MIN_SIZE 8u
#define MAX_SIZE (64u * 1024u * 1024u)
#define SEND_BUF (64u * 1024u)
#define RECV_BUF (256u * 1024u)
#define IDLE_TIMEOUT_S 60

enum mode { MODE_SPIN, MODE_BLOCKING, MODE_EPOLL };

static const char *const mode_names[] = { "spin", "blocking", "epoll" };

struct opts {
    const char *url;
    enum mode mode;
    uint32_t size;
    double seconds;
    int seconds_set;
    uint64_t count;
    int count_set;
    int cpu;
    int json;
};

struct conn {
    int fd;
    int ep;
    enum mode mode;
};

static void conn_close(struct conn *c)
{
    if (c->ep >= 0)
        close(c->ep);
    close(c->fd);
    c->fd = c->ep = -1;
}

/* ---- helpers -------------------------------------------------------------- */


static void timeout_exit(const char *what) __attribute__((noreturn));
static void timeout_exit(const char *what)
{
    fflush(stdout);
    fprintf(stderr, "raw_stream: no %s for %d s, giving up\n", what, IDLE_TIMEOUT_S);
    exit(2);
}






static void pin_cpu(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        die("sched_setaffinity(cpu %d): %s", cpu, strerror(errno));
}



static void conn_init(struct conn *c, int fd, enum mode mode, uint32_t events)
{
    c->fd = fd;
    c->mode = mode;
    c->ep = -1;
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        die("setsockopt(TCP_NODELAY): %s", strerror(errno));
    if (mode == MODE_BLOCKING) {
        /* bound every blocking call; an expired timeout reports EAGAIN */
        struct timeval tv = { IDLE_TIMEOUT_S, 0 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        return;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        die("fcntl(O_NONBLOCK): %s", strerror(errno));
    if (mode == MODE_EPOLL) {
        c->ep = epoll_create1(EPOLL_CLOEXEC);
        if (c->ep < 0)
            die("epoll_create1: %s", strerror(errno));
        struct epoll_event ev = { .events = events, .data.fd = fd };
        if (epoll_ctl(c->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
            die("epoll_ctl(ADD): %s", strerror(errno));
    }
}


/* Wait for the registered event; returns 0, or exits 2 after the idle timeout. */
static void ep_wait(struct conn *c, const char *what)
{
    struct epoll_event got;
    for (;;) {
        int n = epoll_wait(c->ep, &got, 1, IDLE_TIMEOUT_S * 1000);
        if (n > 0)
            return;
        if (n == 0)
            timeout_exit(what);
        if (errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
    }
}

/* ---- recv ----------------------------------------------------------------- */

static int run_recv(const struct opts *o)
{
    pin_cpu(o->cpu);
    struct addrinfo *ai = resolve(o->url, 1);
    int lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, ai->ai_addr, ai->ai_addrlen) != 0)
        die("bind %s: %s", o->url, strerror(errno));
    freeaddrinfo(ai);
    if (listen(lfd, 4) != 0)
        die("listen: %s", strerror(errno));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(lfd, (struct sockaddr *)&ss, &sl) != 0)
        die("getsockname: %s", strerror(errno));
    unsigned port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    printf("listening on %u\n", port);
    fflush(stdout);

    struct pollfd pfd = { .fd = lfd, .events = POLLIN };
    int pr;
    do
        pr = poll(&pfd, 1, IDLE_TIMEOUT_S * 1000);
    while (pr < 0 && errno == EINTR);
    if (pr == 0)
        timeout_exit("sender");
    if (pr < 0)
        die("poll: %s", strerror(errno));
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        die("accept: %s", strerror(errno));
    close(lfd);

    struct conn c;
    conn_init(&c, fd, o->mode, EPOLLIN);

    size_t cap = RECV_BUF;
    if (cap < 2 * (HDR + (size_t)o->size))
        cap = 2 * (HDR + (size_t)o->size);
    unsigned char *buf = malloc(cap);
    if (!buf)
        die("out of memory");

    const uint32_t size = o->size;
    const size_t msg_len = HDR + (size_t)size;
    uint64_t expect = 0, msgs = 0, lost = 0, ooo = 0;
    uint64_t t_first = 0, t_end;
    size_t have = 0;
    unsigned spins = 0;
    int got_data = 0;             /* spin: data since the last clock check */
    uint64_t last_check = now_ns();
    int need_wait = 1; /* epoll: wait before the next recv */

    for (;;) {
        if (c.mode == MODE_EPOLL && need_wait)
            ep_wait(&c, "data");
        size_t want = cap - have;
        ssize_t n = recv(c.fd, buf + have, want, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (c.mode == MODE_BLOCKING)
                    timeout_exit("data"); /* SO_RCVTIMEO expired */
                if (c.mode == MODE_EPOLL) {
                    need_wait = 1;
                    continue;
                }
                if (++spins == 4096) { /* spin: look at the clock now and then */
                    spins = 0;
                    uint64_t t = now_ns();
                    if (got_data) {
                        got_data = 0;
                        last_check = t;
                    } else if (t - last_check > (uint64_t)IDLE_TIMEOUT_S * 1000000000u) {
                        timeout_exit("data");
                    }
                }
                continue;
            }
            die("recv: %s", strerror(errno));
        }
        if (n == 0)
            break;
        if (!t_first)
            t_first = now_ns();
        got_data = 1;
        /* level-triggered: a short read means the socket is drained */
        need_wait = (size_t)n < want;
        have += (size_t)n;

        size_t off = 0;
        while (have - off >= msg_len) {
            const unsigned char *m = buf + off;
            uint32_t len = get_be32(m);
            if (len != size)
                die("message %" PRIu64 ": length %" PRIu32 ", expected %" PRIu32
                    " (use --size)", msgs, len, size);
            uint64_t seq = get_le64(m + HDR);
            if (seq != expect) {
                if (seq > expect) {
                    lost += seq - expect;
                    expect = seq + 1;
                } else {
                    ooo++;
                }
            } else {
                expect++;
            }
            msgs++;
            off += msg_len;
        }
        if (have - off >= HDR && get_be32(buf + off) != size)
            die("message %" PRIu64 ": length %" PRIu32 ", expected %" PRIu32 " (use --size)",
                msgs, get_be32(buf + off), size);
        have -= off;
        if (have && off)
            memmove(buf, buf + off, have); /* carry the partial message over */
    }
    t_end = now_ns();
    conn_close(&c);
    free(buf);
    if (have)
        fprintf(stderr, "raw_stream: sender closed mid-message (%zu bytes left)\n", have);

    double secs = t_first ? (double)(t_end - t_first) / 1e9 : 0;
    double mps = secs > 0 ? (double)msgs / secs : 0;
    double mbps = secs > 0 ? (double)msgs * size / 1e6 / secs : 0;
    printf("raw stream recv: mode %s, size %" PRIu32 ": %" PRIu64 " msgs in %.3f s, %.0f msgs/s, "
           "%.1f MB/s, lost %" PRIu64 ", out_of_order %" PRIu64 "\n",
           mode_names[o->mode], size, msgs, secs, mps, mbps, lost, ooo);
    if (o->json)
        printf("{\"mode\":\"%s\",\"serdes\":\"raw\",\"size\":%" PRIu32 ",\"msgs\":%" PRIu64
               ",\"seconds\":%.6f,\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,\"lost\":%" PRIu64
               ",\"out_of_order\":%" PRIu64 "}\n",
               mode_names[o->mode], size, msgs, secs, mps, mbps, lost, ooo);
    fflush(stdout);
    return have ? 1 : 0;
}

/* ---- send ----------------------------------------------------------------- */

static int send_all(struct conn *c, const unsigned char *p, size_t len)
{
    unsigned spins = 0;
    uint64_t since = 0;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            spins = 0;
            since = 0;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (c->mode == MODE_BLOCKING)
                timeout_exit("progress sending"); /* SO_SNDTIMEO expired */
            if (c->mode == MODE_EPOLL) {
                ep_wait(c, "progress sending");
                continue;
            }
            if (++spins == 4096) {
                spins = 0;
                uint64_t t = now_ns();
                if (!since)
                    since = t;
                else if (t - since > (uint64_t)IDLE_TIMEOUT_S * 1000000000u)
                    timeout_exit("progress sending");
            }
            continue;
        }
        return -1;
    }
    return 0;
}

static int run_send(const struct opts *o)
{
    pin_cpu(o->cpu);
    struct addrinfo *ai = resolve(o->url, 0);
    int fd = -1;
    uint64_t deadline = now_ns() + 5000000000ull;
    for (;;) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            die("socket: %s", strerror(errno));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        int e = errno;
        close(fd);
        if (e != ECONNREFUSED || now_ns() > deadline)
            die("connect %s: %s", o->url, strerror(e));
        struct timespec ts = { 0, 20000000 };
        nanosleep(&ts, NULL);
    }
    freeaddrinfo(ai);
    struct conn c;
    conn_init(&c, fd, o->mode, EPOLLOUT);

    const uint32_t size = o->size;
    const size_t msg_len = HDR + (size_t)size;
    size_t per_batch = SEND_BUF / msg_len;
    if (per_batch == 0)
        per_batch = 1;
    size_t cap = per_batch * msg_len;
    unsigned char *buf = malloc(cap);
    if (!buf)
        die("out of memory");
    /* template: header and pattern written once; only seq changes later */
    for (size_t k = 0; k < per_batch; k++) {
        unsigned char *m = buf + k * msg_len;
        put_be32(m, size);
        for (uint32_t i = 8; i < size; i++)
            m[HDR + i] = (unsigned char)i;
    }

    int use_time = o->seconds_set || !o->count_set;
    double seconds = o->seconds_set ? o->seconds : 2.0;
    uint64_t limit = o->count_set ? o->count : UINT64_MAX;
    uint64_t t0 = now_ns();
    uint64_t t_stop = t0 + (uint64_t)(seconds * 1e9);
    uint64_t seq = 0;
    while (seq < limit) {
        if (use_time && now_ns() >= t_stop)
            break;
        size_t k = per_batch;
        if (limit - seq < k)
            k = (size_t)(limit - seq);
        unsigned char *m = buf + HDR;
        for (size_t j = 0; j < k; j++, m += msg_len)
            put_le64(m, seq++);
        if (send_all(&c, buf, k * msg_len) != 0)
            die("send: %s (after %" PRIu64 " msgs)", strerror(errno), seq);
    }
    uint64_t t1 = now_ns();
    conn_close(&c);
    free(buf);

    double secs = (double)(t1 - t0) / 1e9;
    double mps = secs > 0 ? (double)seq / secs : 0;
    double mbps = secs > 0 ? (double)seq * size / 1e6 / secs : 0;
    printf("raw stream send: mode %s, size %" PRIu32 ": %" PRIu64 " msgs in %.3f s, %.0f msgs/s, "
           "%.1f MB/s\n",
           mode_names[o->mode], size, seq, secs, mps, mbps);
    if (o->json)
        printf("{\"mode\":\"%s\",\"serdes\":\"raw\",\"size\":%" PRIu32 ",\"msgs\":%" PRIu64
               ",\"seconds\":%.6f,\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f}\n",
               mode_names[o->mode], size, seq, secs, mps, mbps);
    fflush(stdout);
    return 0;
}

/* ---- main ----------------------------------------------------------------- */

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
    fprintf(stderr,
            "usage:\n"
            "  raw_stream recv --url tcp://HOST:PORT [--mode spin|blocking|epoll] [--size BYTES]"
            " [--cpu N] [--json]\n"
            "  raw_stream send --url tcp://HOST:PORT [--mode spin|blocking|epoll] [--size BYTES]"
            " [--seconds S] [--count N] [--cpu N] [--json]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *cmd = argv[1];
    struct opts o = { .url = NULL, .mode = MODE_BLOCKING, .size = 64, .cpu = -1 };
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        char name[32];
        const char *eq = strchr(a, '=');
        if (strncmp(a, "--", 2) != 0)
            usage();
        if (eq && (size_t)(eq - a) < sizeof name) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = 0;
            val = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", a);
        }
        if (strcmp(name, "--json") == 0) {
            o.json = 1;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc)
                die("%s needs a value", name);
            val = argv[++i];
        }
        if (strcmp(name, "--url") == 0)
            o.url = val;
        else if (strcmp(name, "--mode") == 0) {
            int found = 0;
            for (int m = 0; m < 3; m++)
                if (strcmp(val, mode_names[m]) == 0) {
                    o.mode = (enum mode)m;
                    found = 1;
                }
            if (!found)
                die("unknown mode '%s' (spin, blocking, epoll)", val);
        } else if (strcmp(name, "--size") == 0) {
            uint64_t s = parse_u64(name, val);
            if (s < MIN_SIZE || s > MAX_SIZE)
                die("--size must be in [%u, %u]", MIN_SIZE, MAX_SIZE);
            o.size = (uint32_t)s;
        } else if (strcmp(name, "--seconds") == 0) {
            char *end;
            o.seconds = strtod(val, &end);
            if (end == val || *end || !(o.seconds >= 0) || o.seconds > 86400)
                die("bad value for --seconds: '%s'", val);
            o.seconds_set = 1;
        } else if (strcmp(name, "--count") == 0) {
            o.count = parse_u64(name, val);
            o.count_set = 1;
        } else if (strcmp(name, "--cpu") == 0)
            o.cpu = (int)parse_u64(name, val);
        else
            die("unknown option %s", name);
    }
    if (!o.url)
        die("--url tcp://HOST:PORT is required");
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(cmd, "recv") == 0)
        return run_recv(&o);
    if (strcmp(cmd, "send") == 0)
        return run_send(&o);
    usage();
}
