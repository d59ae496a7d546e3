/*
 * raw_pingpong - plain-socket round-trip latency baseline (no msgwire).
 *
 * The reference msgwire's pingpong is measured against: the same wire format
 * and the same wait strategy, written directly on top of TCP sockets the way
 * a careful engineer would (TCP_NODELAY, one send() and normally one recv()
 * per message, no intermediate copies).
 *
 *   raw_pingpong svc --url tcp://HOST:PORT --mode spin|blocking|epoll
 *                    [--size BYTES] [--once] [--cpu N]
 *   raw_pingpong clt --url tcp://HOST:PORT --mode spin|blocking|epoll
 *                    [--size BYTES] [--count N] [--warmup N] [--cpu N] [--json]
 *   raw_pingpong demo --mode M [--size BYTES] [--count N] [--warmup N]
 *                    [--cpu N] [--svc-cpu N] [--json]
 *
 * Wire format: u32 big-endian payload length, then the payload. The payload's
 * first 8 bytes are the sequence number (little-endian), the rest a pattern
 * derived from the sequence number. The svc echoes every whole message; the
 * clt sends one message, waits for its echo, checks it byte for byte and
 * records the round-trip time.
 *
 * Modes: spin     - nonblocking socket, busy loop on EAGAIN (no poll)
 *        blocking - blocking socket, plain recv/send
 *        epoll    - nonblocking socket, epoll_wait(-1) for readiness, then recv
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
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

#define RAW_PROG "raw_pingpong"
#include "raw_common.h"

#define HDR 4u
#define MIN_SIZE 8u
#define MAX_SIZE (256u * 1024u * 1024u)

enum mode { MODE_SPIN, MODE_BLOCKING, MODE_EPOLL };

static const char *const mode_names[] = { "spin", "blocking", "epoll" };

struct opts {
    const char *url;
    enum mode mode;
    int mode_set;
    uint32_t size;
    uint64_t count;
    uint64_t warmup;
    int cpu;
    int svc_cpu;
    int once;
    int json;
};

struct conn {
    int fd;
    int ep; /* epoll instance, MODE_EPOLL only */
    enum mode mode;
    int want_out; /* registered for EPOLLOUT instead of EPOLLIN */
};

static void conn_close(struct conn *c)
{
    if (c->ep >= 0)
        close(c->ep);
    close(c->fd);
    c->fd = c->ep = -1;
}

/* ---- small helpers ------------------------------------------------------- */







/* Payload: seq (LE) then a pattern derived from seq. */
static void fill_payload(unsigned char *p, uint32_t size, uint64_t seq)
{
    put_le64(p, seq);
    uint64_t x = (seq + 1) * 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    for (uint32_t i = 8; i < size; i++)
        p[i] = (unsigned char)((x >> (8 * (i & 7))) + i);
}

static void pin_cpu(int cpu, const char *who)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        die("%s: sched_setaffinity(cpu %d): %s", who, cpu, strerror(errno));
}

static int parse_mode(const char *s, enum mode *m)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, mode_names[i]) == 0) {
            *m = (enum mode)i;
            return 0;
        }
    return -1;
}



static void set_nodelay(int fd)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        die("setsockopt(TCP_NODELAY): %s", strerror(errno));
}

static void conn_init(struct conn *c, int fd, enum mode mode)
{
    c->fd = fd;
    c->mode = mode;
    c->ep = -1;
    c->want_out = 0;
    set_nodelay(fd);
    if (mode == MODE_BLOCKING)
        return;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        die("fcntl(O_NONBLOCK): %s", strerror(errno));
    if (mode == MODE_EPOLL) {
        c->ep = epoll_create1(EPOLL_CLOEXEC);
        if (c->ep < 0)
            die("epoll_create1: %s", strerror(errno));
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
        if (epoll_ctl(c->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
            die("epoll_ctl(ADD): %s", strerror(errno));
    }
}


/* Block in epoll_wait(-1) until the socket is ready for `out ? write : read`.
 * The registration is switched only when direction changes (rare: only when
 * a send hits a full socket buffer). */
static void ep_wait(struct conn *c, int out)
{
    if (c->want_out != out) {
        struct epoll_event ev = { .events = out ? EPOLLOUT : EPOLLIN, .data.fd = c->fd };
        if (epoll_ctl(c->ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
            die("epoll_ctl(MOD): %s", strerror(errno));
        c->want_out = out;
    }
    struct epoll_event got;
    for (;;) {
        int n = epoll_wait(c->ep, &got, 1, -1);
        if (n > 0)
            return; /* EPOLLERR/EPOLLHUP surface through the next recv/send */
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
    }
}

/* Send all of buf. Returns 0, or -1 with errno set on a socket error. */
static int send_all(struct conn *c, const unsigned char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (c->mode == MODE_EPOLL)
                ep_wait(c, 1);
            /* spin: just retry */
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return -1;
        }
    }
    return 0;
}

/* Receive at least 1 and at most cap bytes. Returns bytes read, 0 on EOF,
 * -1 with errno set on error. In epoll mode waits for readiness first. */
static ssize_t recv_some(struct conn *c, unsigned char *buf, size_t cap)
{
    for (;;) {
        if (c->mode == MODE_EPOLL)
            ep_wait(c, 0);
        ssize_t n = recv(c->fd, buf, cap, 0);
        if (n >= 0)
            return n;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            continue; /* spin: retry at once; epoll: wait again */
        return -1;
    }
}

/* Receive exactly len bytes. 0 ok, 1 EOF, -1 error. */
static int recv_exact(struct conn *c, unsigned char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = recv_some(c, buf, len);
        if (n == 0)
            return 1;
        if (n < 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int listen_on(const char *url, uint16_t *port_out)
{
    struct addrinfo *ai = resolve(url, 1);
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0)
        die("bind %s: %s", url, strerror(errno));
    freeaddrinfo(ai);
    if (listen(fd, 16) != 0)
        die("listen: %s", strerror(errno));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        die("getsockname: %s", strerror(errno));
    *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

static int connect_to(const char *url)
{
    struct addrinfo *ai = resolve(url, 0);
    uint64_t deadline = now_ns() + 5000000000ull;
    for (;;) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            die("socket: %s", strerror(errno));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            freeaddrinfo(ai);
            return fd;
        }
        int e = errno;
        close(fd);
        /* tolerate a svc that is still starting up */
        if (e != ECONNREFUSED || now_ns() > deadline)
            die("connect %s: %s", url, strerror(e));
        struct timespec ts = { 0, 20000000 };
        nanosleep(&ts, NULL);
    }
}

/* ---- svc ------------------------------------------------------------------ */

/* Echo every whole message until the peer closes. The complete messages in
 * the receive buffer are sent back straight from it (one send for all of
 * them); only a trailing partial message is moved to the front. */
static int serve_conn(int fd, enum mode mode, uint32_t size_hint)
{
    struct conn c;
    conn_init(&c, fd, mode);
    size_t cap = (size_t)size_hint + HDR;
    if (cap < 64 * 1024)
        cap = 64 * 1024;
    unsigned char *buf = malloc(cap);
    if (!buf)
        die("out of memory");
    size_t have = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = recv_some(&c, buf + have, cap - have);
        if (n == 0) {
            if (have)
                fprintf(stderr, "raw_pingpong svc: peer closed mid-message (%zu bytes)\n", have);
            break;
        }
        if (n < 0) {
            int e = errno;
            if (e != ECONNRESET)
                fprintf(stderr, "raw_pingpong svc: recv: %s\n", strerror(e));
            rc = e == ECONNRESET ? 0 : -1;
            break;
        }
        have += (size_t)n;
        size_t off = 0;
        while (have - off >= HDR) {
            uint32_t len = get_be32(buf + off);
            if (len > MAX_SIZE) {
                fprintf(stderr, "raw_pingpong svc: bad length %" PRIu32 "\n", len);
                rc = -1;
                goto out;
            }
            if (have - off < HDR + (size_t)len) {
                if (off == 0 && HDR + (size_t)len > cap) { /* grow for a big message */
                    cap = HDR + (size_t)len;
                    unsigned char *nb = realloc(buf, cap);
                    if (!nb)
                        die("out of memory");
                    buf = nb;
                }
                break;
            }
            off += HDR + len;
        }
        if (off) {
            if (send_all(&c, buf, off) != 0) {
                int e = errno;
                if (e != EPIPE && e != ECONNRESET)
                    fprintf(stderr, "raw_pingpong svc: send: %s\n", strerror(e));
                rc = (e == EPIPE || e == ECONNRESET) ? 0 : -1;
                break;
            }
            have -= off;
            if (have)
                memmove(buf, buf + off, have);
        }
    }
out:
    free(buf);
    conn_close(&c);
    return rc;
}

struct svc_args {
    int lfd;
    struct opts o;
    int rc;
};

static void *svc_run(void *arg)
{
    struct svc_args *a = arg;
    pin_cpu(a->o.cpu, "svc");
    a->rc = 0;
    for (;;) {
        int fd = accept4(a->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            die("accept: %s", strerror(errno));
        }
        int rc = serve_conn(fd, a->o.mode, a->o.size);
        if (a->o.once) {
            a->rc = rc;
            break;
        }
    }
    close(a->lfd);
    return NULL;
}

/* ---- clt ------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* nearest-rank percentile of a sorted array */
static uint64_t pct(const uint64_t *v, uint64_t n, double p)
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

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void report_mismatch(const unsigned char *want, const unsigned char *got, uint32_t size,
                            uint64_t seq)
{
    uint32_t len = get_be32(got);
    if (len != size)
        die("echo %" PRIu64 ": length %" PRIu32 ", expected %" PRIu32, seq, len, size);
    uint64_t gs = get_le64(got + HDR);
    if (gs != seq)
        die("echo sequence mismatch: got %" PRIu64 ", expected %" PRIu64, gs, seq);
    for (uint32_t i = 8; i < size; i++)
        if (want[HDR + i] != got[HDR + i])
            die("echo %" PRIu64 ": payload mismatch at byte %" PRIu32 " (0x%02x, expected 0x%02x)",
                seq, i, got[HDR + i], want[HDR + i]);
    die("echo %" PRIu64 ": mismatch", seq);
}

static int run_clt(const struct opts *o)
{
    pin_cpu(o->cpu, "clt");
    struct conn c;
    conn_init(&c, connect_to(o->url), o->mode);

    size_t msg_len = HDR + (size_t)o->size;
    unsigned char *sbuf = malloc(msg_len);
    unsigned char *rbuf = malloc(msg_len);
    uint64_t *rtt = malloc((o->count ? o->count : 1) * sizeof *rtt);
    if (!sbuf || !rbuf || !rtt)
        die("out of memory");
    put_be32(sbuf, o->size);

    uint64_t total = o->warmup + o->count;
    uint64_t t_start = 0;
    for (uint64_t seq = 0; seq < total; seq++) {
        if (seq == o->warmup)
            t_start = now_ns();
        fill_payload(sbuf + HDR, o->size, seq);

        uint64_t t0 = now_ns();
        if (send_all(&c, sbuf, msg_len) != 0)
            die("send: %s", strerror(errno));
        int rc = recv_exact(&c, rbuf, msg_len);
        uint64_t t1 = now_ns();
        if (rc == 1)
            die("svc closed the connection after %" PRIu64 " round trips", seq);
        if (rc < 0)
            die("recv: %s", strerror(errno));

        if (memcmp(sbuf, rbuf, msg_len) != 0)
            report_mismatch(sbuf, rbuf, o->size, seq);
        if (seq >= o->warmup)
            rtt[seq - o->warmup] = t1 - t0;
    }
    uint64_t t_end = now_ns();
    conn_close(&c);

    uint64_t n = o->count;
    if (n == 0) {
        printf("no round trips recorded (--count 0)\n");
        free(sbuf), free(rbuf), free(rtt);
        return 0;
    }
    qsort(rtt, n, sizeof *rtt, cmp_u64);
    uint64_t mn = rtt[0], p50 = pct(rtt, n, 50), p90 = pct(rtt, n, 90), p99 = pct(rtt, n, 99),
             p999 = pct(rtt, n, 99.9), mx = rtt[n - 1];
    double secs = (double)(t_end - t_start) / 1e9;
    double per_s = secs > 0 ? (double)n / secs : 0;

    printf("raw pingpong: mode %s, size %" PRIu32 ", %" PRIu64 " round trips (+%" PRIu64
           " warmup), %s\n",
           mode_names[o->mode], o->size, n, o->warmup, o->url);
    printf("rtt us: min %.3f  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", mn / 1e3,
           p50 / 1e3, p90 / 1e3, p99 / 1e3, p999 / 1e3, mx / 1e3);
    printf("round trips/s: %.0f\n", per_s);
    if (o->json) {
        printf("{\"mode\":\"%s\",\"serdes\":\"raw\",\"url\":", mode_names[o->mode]);
        json_str(o->url);
        printf(",\"size\":%" PRIu32 ",\"count\":%" PRIu64 ",\"rtt_ns\":{\"min\":%" PRIu64
               ",\"p50\":%" PRIu64 ",\"p90\":%" PRIu64 ",\"p99\":%" PRIu64 ",\"p999\":%" PRIu64
               ",\"max\":%" PRIu64 "},\"rtt_per_s\":%.1f}\n",
               o->size, n, mn, p50, p90, p99, p999, mx, per_s);
    }
    fflush(stdout);
    free(sbuf);
    free(rbuf);
    free(rtt);
    return 0;
}

/* ---- main ----------------------------------------------------------------- */

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
    fprintf(stderr,
            "usage:\n"
            "  raw_pingpong svc  --url tcp://HOST:PORT --mode spin|blocking|epoll [--size BYTES]"
            " [--once] [--cpu N]\n"
            "  raw_pingpong clt  --url tcp://HOST:PORT --mode spin|blocking|epoll [--size BYTES]"
            " [--count N] [--warmup N] [--cpu N] [--json]\n"
            "  raw_pingpong demo --mode spin|blocking|epoll [--size BYTES] [--count N]"
            " [--warmup N] [--cpu N] [--svc-cpu N] [--json]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *cmd = argv[1];
    struct opts o = { .url = NULL, .mode = MODE_SPIN, .size = 64, .count = 100000,
                      .warmup = 10000, .cpu = -1, .svc_cpu = -1 };
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
        if (strcmp(name, "--once") == 0) {
            o.once = 1;
            continue;
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
            if (parse_mode(val, &o.mode) != 0)
                die("unknown mode '%s' (spin, blocking, epoll)", val);
            o.mode_set = 1;
        } else if (strcmp(name, "--size") == 0) {
            uint64_t s = parse_u64(name, val);
            if (s < MIN_SIZE || s > MAX_SIZE)
                die("--size must be in [%u, %u]", MIN_SIZE, MAX_SIZE);
            o.size = (uint32_t)s;
        } else if (strcmp(name, "--count") == 0)
            o.count = parse_u64(name, val);
        else if (strcmp(name, "--warmup") == 0)
            o.warmup = parse_u64(name, val);
        else if (strcmp(name, "--cpu") == 0)
            o.cpu = (int)parse_u64(name, val);
        else if (strcmp(name, "--svc-cpu") == 0)
            o.svc_cpu = (int)parse_u64(name, val);
        else
            die("unknown option %s", name);
    }
    if (!o.mode_set)
        die("--mode spin|blocking|epoll is required");
    if (o.count > ((uint64_t)1 << 40))
        die("--count too large");
    signal(SIGPIPE, SIG_IGN);

    if (strcmp(cmd, "svc") == 0) {
        if (!o.url)
            die("svc needs --url");
        uint16_t port;
        struct svc_args a = { .o = o };
        a.lfd = listen_on(o.url, &port);
        printf("listening on %u\n", (unsigned)port);
        fflush(stdout);
        svc_run(&a);
        return a.rc == 0 ? 0 : 1;
    }
    if (strcmp(cmd, "clt") == 0) {
        if (!o.url)
            die("clt needs --url");
        return run_clt(&o);
    }
    if (strcmp(cmd, "demo") == 0) {
        uint16_t port;
        struct svc_args a = { .o = o };
        a.o.once = 1;
        if (o.svc_cpu >= 0)
            a.o.cpu = o.svc_cpu;
        else if (o.cpu >= 0) {
            long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
            a.o.cpu = ncpu > 1 ? (int)((o.cpu + 1) % ncpu) : -1;
        }
        a.lfd = listen_on("tcp://127.0.0.1:0", &port); /* demo: loopback, any port */
        printf("listening on %u\n", (unsigned)port);
        fflush(stdout);
        pthread_t th;
        if (pthread_create(&th, NULL, svc_run, &a) != 0)
            die("pthread_create failed");
        static char url[64];
        snprintf(url, sizeof url, "tcp://127.0.0.1:%u", (unsigned)port);
        struct opts c = o;
        c.url = url;
        int rc = run_clt(&c);
        pthread_join(th, NULL);
        return rc != 0 || a.rc != 0 ? 1 : 0;
    }
    usage();
}
