/*
 * Replay side of request rewriting (see rp_rewrite.h).
 *
 * One rewrite session per target run, shared by the loop threads behind a
 * mutex. The critical sections are short (template expansion of one
 * request, or running capture rules over one response), and they only
 * happen for traces that need rewriting at all; a trace without
 * placeholders and without rewrite flags never takes the lock.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/error.h"
#include "rp_h2.h"
#include "rp_rewrite.h"

#ifdef H2R_HAVE_RW
#include "rw_rules.h"

struct rp_rewrite {
    struct rw_ruleset *rs;
    struct rw_session *s;
    pthread_mutex_t mu;
};

int rp_rewrite_available(void)
{
    return 1;
}

int rp_rewrite_new(struct rp_rewrite **out, const struct h2r_replay_opts *o,
                   const struct rp_plan *plan, char *errbuf, size_t errlen)
{
    *out = NULL;
    if (!o->rewrite_file && !o->set_file && o->n_set_vars == 0 && plan->n_placeholder == 0)
        return 0;
    struct rp_rewrite *rw = calloc(1, sizeof(*rw));
    if (!rw)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    int rc = rw_ruleset_new(&rw->rs);
    if (rc) {
        free(rw);
        return h2r_seterr(errbuf, errlen, rc, "out of memory");
    }
    pthread_mutex_init(&rw->mu, NULL);
    if (o->rewrite_file) {
        rc = rw_ruleset_load(rw->rs, o->rewrite_file, errbuf, errlen);
        if (rc)
            goto fail;
    }
    if (o->set_file) {
        rc = rw_ruleset_load_vars(rw->rs, o->set_file, errbuf, errlen);
        if (rc)
            goto fail;
    }
    for (size_t i = 0; i < o->n_set_vars; i++) {
        rc = rw_ruleset_set_var(rw->rs, o->set_vars[i], errbuf, errlen);
        if (rc)
            goto fail;
    }
    *out = rw;
    return 0;
fail:
    rp_rewrite_free(rw);
    return rc;
}

int rp_rewrite_check(struct rp_rewrite *rw, const struct rp_plan *plan, char *errbuf, size_t errlen)
{
    if (!rw)
        return 0;
    for (uint32_t i = 0; i < plan->n_xs; i++) {
        if (plan->xs[i].flags & RP_PX_F_UNSENDABLE)
            continue;
        struct h2r_exchange x;
        rp_plan_exchange_view(plan, i, &x);
        int rc = rw_check_exchange(rw->rs, &x, errbuf, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

int rp_rewrite_begin(struct rp_rewrite *rw, uint64_t seed)
{
    if (!rw)
        return 0;
    rw_session_free(rw->s);
    rw->s = rw_session_new(rw->rs, seed);
    return rw->s ? 0 : H2R_ERR_NOMEM;
}

void rp_rewrite_end(struct rp_rewrite *rw)
{
    if (!rw)
        return;
    rw_session_free(rw->s);
    rw->s = NULL;
}

int rp_rewrite_apply(struct rp_rewrite *rw, const struct rp_plan *plan, uint32_t x, void **handle,
                     const struct h2r_hdr **hdrs, size_t *n_hdrs, const uint8_t **body,
                     size_t *body_len, char *errbuf, size_t errlen)
{
    *handle = NULL;
    struct rw_request *req = calloc(1, sizeof(*req));
    if (!req)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    struct h2r_exchange view;
    rp_plan_exchange_view(plan, x, &view);
    pthread_mutex_lock(&rw->mu);
    int rc = rw_apply(rw->s, &view, req, errbuf, errlen);
    pthread_mutex_unlock(&rw->mu);
    if (rc) {
        free(req);
        return rc;
    }
    *handle = req;
    *hdrs = req->hdrs;
    *n_hdrs = req->n_hdrs;
    *body = req->body;
    *body_len = req->body_len;
    return 0;
}

void rp_rewrite_release(struct rp_rewrite *rw, void *handle)
{
    if (!handle)
        return;
    pthread_mutex_lock(&rw->mu);
    rw_request_release(rw->s, handle);
    pthread_mutex_unlock(&rw->mu);
    free(handle);
}

int rp_rewrite_wants_response(struct rp_rewrite *rw, const struct rp_plan *plan, uint32_t x)
{
    struct h2r_exchange view;
    rp_plan_exchange_view(plan, x, &view);
    pthread_mutex_lock(&rw->mu);
    int r = rw_wants_response(rw->s, &view);
    pthread_mutex_unlock(&rw->mu);
    return r;
}

void rp_rewrite_observe(struct rp_rewrite *rw, const struct rp_plan *plan, uint32_t x, int status,
                        const struct rp_capture *cap)
{
    struct h2r_hdr *hdrs = NULL;
    if (cap->n_h) {
        hdrs = calloc(cap->n_h, sizeof(*hdrs));
        if (!hdrs)
            return; /* the capture is lost; the rules count it as a miss */
    }
    for (size_t i = 0; i < cap->n_h; i++) {
        hdrs[i].name = cap->hbuf + cap->h[i].name_off;
        hdrs[i].name_len = cap->h[i].name_len;
        hdrs[i].value = cap->hbuf + cap->h[i].value_off;
        hdrs[i].value_len = cap->h[i].value_len;
    }
    struct h2r_exchange view;
    rp_plan_exchange_view(plan, x, &view);
    pthread_mutex_lock(&rw->mu);
    rw_observe_response(rw->s, &view, status, hdrs, cap->n_h, cap->body, cap->body_len);
    pthread_mutex_unlock(&rw->mu);
    free(hdrs);
}

void rp_rewrite_free(struct rp_rewrite *rw)
{
    if (!rw)
        return;
    rw_session_free(rw->s);
    rw_ruleset_free(rw->rs);
    pthread_mutex_destroy(&rw->mu);
    free(rw);
}

#else /* !H2R_HAVE_RW: requests go out as captured */

struct rp_rewrite {
    int unused;
};

int rp_rewrite_available(void)
{
    return 0;
}

int rp_rewrite_new(struct rp_rewrite **out, const struct h2r_replay_opts *o,
                   const struct rp_plan *plan, char *errbuf, size_t errlen)
{
    (void)plan;
    *out = NULL;
    if (o->rewrite_file || o->set_file || o->n_set_vars)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                          "--rewrite, --set and --set-file need the rewrite module, which this "
                          "build does not have");
    return 0;
}

int rp_rewrite_check(struct rp_rewrite *rw, const struct rp_plan *plan, char *errbuf, size_t errlen)
{
    (void)rw;
    if (plan->n_placeholder == 0)
        return 0;
    return h2r_seterr(errbuf, errlen, H2R_ERR_UNSUPPORTED,
                      "%llu exchange(s) hold $H2R{...} placeholders (first: exchange %llu) and "
                      "this build cannot fill them (no rewrite module); capture with "
                      "--no-redact or use a build with rewriting",
                      (unsigned long long)plan->n_placeholder,
                      (unsigned long long)plan->first_placeholder_id);
}

int rp_rewrite_begin(struct rp_rewrite *rw, uint64_t seed)
{
    (void)rw;
    (void)seed;
    return 0;
}

void rp_rewrite_end(struct rp_rewrite *rw)
{
    (void)rw;
}

int rp_rewrite_apply(struct rp_rewrite *rw, const struct rp_plan *plan, uint32_t x, void **handle,
                     const struct h2r_hdr **hdrs, size_t *n_hdrs, const uint8_t **body,
                     size_t *body_len, char *errbuf, size_t errlen)
{
    (void)rw;
    *handle = NULL;
    *hdrs = plan->xs[x].hdrs;
    *n_hdrs = plan->xs[x].n_hdrs;
    *body = plan->xs[x].body;
    *body_len = plan->xs[x].body_stored;
    (void)errbuf;
    (void)errlen;
    return 0;
}

void rp_rewrite_release(struct rp_rewrite *rw, void *handle)
{
    (void)rw;
    (void)handle;
}

int rp_rewrite_wants_response(struct rp_rewrite *rw, const struct rp_plan *plan, uint32_t x)
{
    (void)rw;
    (void)plan;
    (void)x;
    return 0;
}

void rp_rewrite_observe(struct rp_rewrite *rw, const struct rp_plan *plan, uint32_t x, int status,
                        const struct rp_capture *cap)
{
    (void)rw;
    (void)plan;
    (void)x;
    (void)status;
    (void)cap;
}

void rp_rewrite_free(struct rp_rewrite *rw)
{
    (void)rw;
}

#endif
