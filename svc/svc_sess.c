/* svc_sess.c - the Svc's sessions by id (see svc_sess_impl.h). */
#include "svc_sess_impl.h"

#include <stdlib.h>
#include <string.h>

static uint32_t hash(const char *s) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

int mw__svc_sessions_init(mw__svc_sessions_t *t, uint32_t max) {
    memset(t, 0, sizeof *t);
    t->max = max ? max : 1024;
    t->cap = 16;
    while (t->cap < 2 * t->max) t->cap <<= 1;
    if (!(t->tab = calloc(t->cap, sizeof *t->tab))) return MW_ENOMEM;
    pthread_mutex_init(&t->mu, NULL);
    return 0;
}

void mw__svc_sessions_fini(mw__svc_sessions_t *t) {
    if (!t->tab) return;
    for (uint32_t i = 0; i < t->cap; i++) mw__sess_free(t->tab[i]);
    free(t->tab);
    t->tab = NULL;
    pthread_mutex_destroy(&t->mu);
}

/* The slot of id: its session, or the empty slot where it would go. */
static uint32_t probe(const mw__svc_sessions_t *t, const char *id) {
    uint32_t i = hash(id) & (t->cap - 1);
    while (t->tab[i] && strcmp(mw__sess_id(t->tab[i]), id) != 0) i = (i + 1) & (t->cap - 1);
    return i;
}

mw__sess_t *mw__svc_sessions_find(mw__svc_sessions_t *t, const char *id) {
    if (!t->tab) return NULL;
    pthread_mutex_lock(&t->mu);
    mw__sess_t *s = t->tab[probe(t, id)];
    pthread_mutex_unlock(&t->mu);
    return s;
}

int mw__svc_sessions_get(mw__svc_sessions_t *t, const char *id, const mw_session_opts_t *o,
                         const mw_protocol_t *app, mw__sess_t **out, mw_err_t *err) {
    pthread_mutex_lock(&t->mu);
    uint32_t i = probe(t, id);
    int r = 0;
    if (!t->tab[i]) {
        if (t->n >= t->max) r = mw_err_set(err, MW_EFULL, "max_sessions %u reached", t->max);
        else if ((r = mw__sess_open(&t->tab[i], o, id, MW__SESS_SERVER, app, err)) == 0) t->n++;
    }
    *out = t->tab[i];
    pthread_mutex_unlock(&t->mu);
    return r;
}
