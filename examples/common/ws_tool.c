/* ws_tool.c - the echo engine shared by the WebSocket tools; see ws_tool.h. */
#include "ws_tool.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mw_clock.h"
#include "stream_impl.h"

#define INITIAL_CAP (64u * 1024)
#define MIN_TAIL 4096u

static size_t be32(const uint8_t *p) {
    return (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
}

int ws_echo_init(ws_echo_t *e, size_t max_msg) {
    memset(e, 0, sizeof *e);
    e->max = max_msg + WS_TOOL_REC_HDR;
    e->cap = e->max < INITIAL_CAP ? e->max : INITIAL_CAP;
    e->p = malloc(e->cap);
    e->echo = true;
    return e->p ? 0 : MW_ENOMEM;
}

void ws_echo_fini(ws_echo_t *e) {
    free(e->p);
    e->p = NULL;
    e->cap = e->len = e->off = e->scan = 0;
}

static void reset_if_empty(ws_echo_t *e) {
    if (e->off == e->len) e->off = e->scan = e->len = 0;
}

/* Reports the records that became whole; without echo they are dropped. */
static void scan_records(ws_echo_t *e) {
    while (e->len - e->scan >= WS_TOOL_REC_HDR) {
        const uint8_t *r = e->p + e->scan;
        size_t n = be32(r + 1);
        if (e->len - e->scan - WS_TOOL_REC_HDR < n) break;
        if (e->on_msg) e->on_msg(e->ud, r[0], r + WS_TOOL_REC_HDR, n);
        e->msgs++;
        e->bytes += n;
        e->scan += WS_TOOL_REC_HDR + n;
    }
    if (!e->echo) e->off = e->scan;
    reset_if_empty(e);
}

/* Hands whole records back to the stream. 1 progress, 0 none. */
static int put_back(ws_echo_t *e, mw_stream_t *s) {
    if (e->scan == e->off) {
        if (mw__stream_want(s) & MW_WANT_WRITE) (void)mw__stream_writev(s, NULL, 0);
        return 0;
    }
    ssize_t w = mw__stream_write(s, e->p + e->off, e->scan - e->off);
    if (w == 0 || w == MW_EAGAIN) return 0;
    if (w > 0) {
        e->off += (size_t)w;
    } else {
        e->werr = (int)w;
        e->echo = false;
        e->off = e->scan;
    }
    reset_if_empty(e);
    return 1;
}

/* Makes space at the tail: compacts, or grows when a record arriving from
 * the start of the buffer cannot fit. False if only writing can make room. */
static bool make_room(ws_echo_t *e) {
    if (e->cap - e->len >= MIN_TAIL || (e->len < e->cap && e->off == 0)) return true;
    if (e->off) {
        memmove(e->p, e->p + e->off, e->len - e->off);
        e->len -= e->off, e->scan -= e->off, e->off = 0;
        return true;
    }
    if (e->scan > 0 || e->cap >= e->max) return false;
    size_t need = e->len >= WS_TOOL_REC_HDR ? WS_TOOL_REC_HDR + be32(e->p + 1) : e->cap + 1;
    size_t ncap = e->cap * 2 > need ? e->cap * 2 : need;
    if (ncap > e->max) ncap = e->max;
    uint8_t *np = realloc(e->p, ncap);
    if (!np) return false;
    e->p = np;
    e->cap = ncap;
    return true;
}

int ws_echo_pump(ws_echo_t *e, mw_stream_t *s) {
    for (;;) {
        int progress = put_back(e, s);
        if (make_room(e)) {
            ssize_t r = mw__stream_read(s, e->p + e->len, e->cap - e->len);
            if (r > 0) {
                e->len += (size_t)r;
                scan_records(e);
                progress = 1;
            } else if (r != MW_EAGAIN) {
                return (int)r;
            }
        }
        if (!progress) return 0;
    }
}

int ws_echo_events(const ws_echo_t *e, const mw_stream_t *s) {
    int ev = mw__stream_want(s);
    if (e->len < e->cap || e->off > 0 || (e->scan == 0 && e->cap < e->max)) ev |= MW_WANT_READ;
    if (e->scan > e->off && !(ev & MW_WANT_READ)) ev |= MW_WANT_WRITE;
    return ev;
}

int ws_tool_flush(mw_stream_t *s) {
    ssize_t r = mw__stream_writev(s, NULL, 0);
    if (r == MW_EAGAIN && (mw__stream_want(s) & MW_WANT_WRITE)) return MW_EAGAIN;
    return 0;
}

static int64_t left_ns(uint64_t deadline) {
    uint64_t now = mw_now_ns();
    return now >= deadline ? 0 : (int64_t)(deadline - now);
}

int ws_tool_flush_wait(mw_stream_t *s, int64_t timeout_ns) {
    uint64_t deadline = mw_now_ns() + (uint64_t)timeout_ns;
    while (ws_tool_flush(s) == MW_EAGAIN) {
        int64_t left = left_ns(deadline);
        if (left == 0 || mw__stream_wait(s, mw__stream_want(s), left) < 0) return MW_ETIMEDOUT;
    }
    return 0;
}

int ws_tool_drain_wait(mw_stream_t *ws, int64_t timeout_ns) {
    mw_stream_t *in = ws->inner ? ws->inner : ws;
    uint64_t deadline = mw_now_ns() + (uint64_t)timeout_ns;
    uint8_t scratch[4096];
    for (;;) {
        ssize_t r = mw__stream_read(in, scratch, sizeof scratch);
        if (r > 0) continue;
        if (r != MW_EAGAIN) return 0;
        int64_t left = left_ns(deadline);
        int want = mw__stream_want(in);
        if (left == 0 || mw__stream_wait(in, want ? want : MW_WANT_READ, left) < 0) return MW_ETIMEDOUT;
    }
}

const char *ws_tool_code_name(int code) {
    switch (code) {
    case 1000: return "normal";
    case 1001: return "going away";
    case 1002: return "protocol error";
    case 1003: return "unsupported data";
    case 1005: return "no status";
    case 1006: return "abnormal closure";
    case 1007: return "invalid payload data";
    case 1008: return "policy violation";
    case 1009: return "message too big";
    case 1010: return "mandatory extension";
    case 1011: return "internal error";
    default: return "";
    }
}
