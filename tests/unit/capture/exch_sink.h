/*
 * A recording cap_session_sink for tests: deep-copies every conn, conn-end
 * and exchange record so assertions can run after the session is gone.
 * Header lists are flattened to "name: value\n" text for easy comparison.
 */
#ifndef H2R_TESTS_EXCH_SINK_H
#define H2R_TESTS_EXCH_SINK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap_session.h"

#define SINK_MAX 256

struct rec_exch {
    uint64_t id;
    uint64_t conn_id;
    uint32_t stream_id;
    uint32_t flags;
    char *req; /* flattened headers */
    char *resp;
    char *trl;
    char *req_body; /* NUL-terminated copy of the stored bytes */
    size_t req_body_stored;
    uint64_t req_body_len;
    char *resp_body;
    size_t resp_body_stored;
    uint64_t resp_body_len;
    int32_t status;
    int32_t grpc_status;
    int64_t rst_code;
    uint32_t rst_by;
    int64_t goaway_code;
    int64_t t_req_first_ns;
    int64_t t_req_end_ns;
    int64_t t_resp_hdrs_ns;
    int64_t t_resp_end_ns;
    char *error; /* NULL when the record had none */
};

struct rec_sink {
    struct rec_exch x[SINK_MAX];
    size_t nx;
    struct h2r_conn conn[SINK_MAX];
    uint32_t conn_transport[SINK_MAX];
    size_t nconn;
    struct h2r_conn_end end[SINK_MAX];
    char *end_reason[SINK_MAX];
    size_t nend;
    int fail_writes; /* return H2R_ERR_IO from every write when set */
};

static inline char *sink_dup(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        exit(2);
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static inline char *sink_flatten(const struct h2r_hdr *h, size_t n)
{
    size_t total = 1;
    for (size_t i = 0; i < n; i++)
        total += (size_t)h[i].name_len + h[i].value_len + 3;
    char *s = malloc(total);
    size_t o = 0;
    if (!s)
        exit(2);
    for (size_t i = 0; i < n; i++) {
        memcpy(s + o, h[i].name, h[i].name_len);
        o += h[i].name_len;
        s[o++] = ':';
        s[o++] = ' ';
        memcpy(s + o, h[i].value, h[i].value_len);
        o += h[i].value_len;
        s[o++] = '\n';
    }
    s[o] = '\0';
    return s;
}

static inline int sink_conn(void *ud, const struct h2r_conn *c)
{
    struct rec_sink *k = ud;
    if (k->fail_writes)
        return H2R_ERR_IO;
    if (k->nconn < SINK_MAX) {
        k->conn[k->nconn] = *c;
        k->conn[k->nconn].client = k->conn[k->nconn].server = NULL;
        k->conn_transport[k->nconn] = c->transport;
        k->nconn++;
    }
    return 0;
}

static inline int sink_conn_end(void *ud, const struct h2r_conn_end *e)
{
    struct rec_sink *k = ud;
    if (k->fail_writes)
        return H2R_ERR_IO;
    if (k->nend < SINK_MAX) {
        k->end[k->nend] = *e;
        k->end_reason[k->nend] = e->reason ? sink_dup(e->reason, strlen(e->reason)) : NULL;
        k->end[k->nend].reason = NULL;
        k->nend++;
    }
    return 0;
}

static inline int sink_exchange(void *ud, const struct h2r_exchange *x)
{
    struct rec_sink *k = ud;
    struct rec_exch *r;
    if (k->fail_writes)
        return H2R_ERR_IO;
    if (k->nx == SINK_MAX)
        return 0;
    r = &k->x[k->nx++];
    r->id = x->id;
    r->conn_id = x->conn_id;
    r->stream_id = x->stream_id;
    r->flags = x->flags;
    r->req = sink_flatten(x->req_hdrs, x->n_req_hdrs);
    r->resp = sink_flatten(x->resp_hdrs, x->n_resp_hdrs);
    r->trl = sink_flatten(x->trailers, x->n_trailers);
    r->req_body = sink_dup(x->req_body, x->req_body_stored);
    r->req_body_stored = x->req_body_stored;
    r->req_body_len = x->req_body_len;
    r->resp_body = sink_dup(x->resp_body, x->resp_body_stored);
    r->resp_body_stored = x->resp_body_stored;
    r->resp_body_len = x->resp_body_len;
    r->status = x->status;
    r->grpc_status = x->grpc_status;
    r->rst_code = x->rst_code;
    r->rst_by = x->rst_by;
    r->goaway_code = x->goaway_code;
    r->t_req_first_ns = x->t_req_first_ns;
    r->t_req_end_ns = x->t_req_end_ns;
    r->t_resp_hdrs_ns = x->t_resp_hdrs_ns;
    r->t_resp_end_ns = x->t_resp_end_ns;
    r->error = x->error ? sink_dup(x->error, strlen(x->error)) : NULL;
    return 0;
}

static inline struct cap_session_sink rec_sink_make(struct rec_sink *k)
{
    struct cap_session_sink s = {sink_conn, sink_conn_end, sink_exchange, k, NULL};
    return s;
}

static inline void rec_sink_clear(struct rec_sink *k)
{
    for (size_t i = 0; i < k->nx; i++) {
        struct rec_exch *r = &k->x[i];
        free(r->req);
        free(r->resp);
        free(r->trl);
        free(r->req_body);
        free(r->resp_body);
        free(r->error);
    }
    for (size_t i = 0; i < k->nend; i++)
        free(k->end_reason[i]);
    memset(k, 0, sizeof(*k));
}

/* The recorded exchange of a stream, or NULL. */
static inline const struct rec_exch *rec_find(const struct rec_sink *k, uint32_t sid)
{
    for (size_t i = 0; i < k->nx; i++) {
        if (k->x[i].stream_id == sid)
            return &k->x[i];
    }
    return NULL;
}

static inline int rec_str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

/* Field-by-field equality of two recorded exchanges. */
static inline int rec_exch_eq(const struct rec_exch *a, const struct rec_exch *b)
{
    return a->id == b->id && a->conn_id == b->conn_id && a->stream_id == b->stream_id &&
           a->flags == b->flags && rec_str_eq(a->req, b->req) && rec_str_eq(a->resp, b->resp) &&
           rec_str_eq(a->trl, b->trl) && a->req_body_stored == b->req_body_stored &&
           memcmp(a->req_body, b->req_body, a->req_body_stored) == 0 &&
           a->req_body_len == b->req_body_len && a->resp_body_stored == b->resp_body_stored &&
           memcmp(a->resp_body, b->resp_body, a->resp_body_stored) == 0 &&
           a->resp_body_len == b->resp_body_len && a->status == b->status &&
           a->grpc_status == b->grpc_status && a->rst_code == b->rst_code &&
           a->rst_by == b->rst_by && a->goaway_code == b->goaway_code &&
           a->t_req_first_ns == b->t_req_first_ns && a->t_req_end_ns == b->t_req_end_ns &&
           a->t_resp_hdrs_ns == b->t_resp_hdrs_ns && a->t_resp_end_ns == b->t_resp_end_ns &&
           rec_str_eq(a->error, b->error);
}

#endif
