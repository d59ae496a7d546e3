/* raw_common.h - plumbing shared by the raw-socket baselines (raw_pingpong,
 * raw_stream). They must not use msgwire, so they share this instead.
 * Define RAW_PROG (the program name for messages) before including. */
#ifndef RAW_COMMON_H
#define RAW_COMMON_H

#ifndef RAW_PROG
#error "define RAW_PROG before including raw_common.h"
#endif

static __attribute__((unused)) void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static __attribute__((unused)) void die(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs(RAW_PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static __attribute__((unused)) uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static __attribute__((unused)) void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static __attribute__((unused)) uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static __attribute__((unused)) void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static __attribute__((unused)) uint64_t get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static __attribute__((unused)) uint64_t parse_u64(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        die("bad value for %s: '%s'", opt, s);
    return (uint64_t)v;
}

/* "tcp://HOST:PORT" -> resolved address. HOST may be [v6]. */
static __attribute__((unused)) struct addrinfo *resolve(const char *url, int passive)
{
    const char *p = url;
    if (strncmp(p, "tcp://", 6) != 0)
        die("url must look like tcp://HOST:PORT, got '%s'", url);
    p += 6;
    char host[256], port[16];
    const char *colon;
    if (*p == '[') {
        const char *rb = strchr(p, ']');
        if (!rb || rb[1] != ':')
            die("bad url '%s'", url);
        if ((size_t)(rb - p - 1) >= sizeof host)
            die("host too long in '%s'", url);
        memcpy(host, p + 1, (size_t)(rb - p - 1));
        host[rb - p - 1] = 0;
        colon = rb + 1;
    } else {
        colon = strrchr(p, ':');
        if (!colon || colon == p || (size_t)(colon - p) >= sizeof host)
            die("bad url '%s'", url);
        memcpy(host, p, (size_t)(colon - p));
        host[colon - p] = 0;
    }
    if (strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof port)
        die("bad port in '%s'", url);
    strcpy(port, colon + 1);

    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0)
        die("resolve '%s': %s", url, gai_strerror(rc));
    return res;
}

#endif
