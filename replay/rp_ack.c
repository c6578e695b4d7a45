/*
 * Acknowledged entities (see rp_ack.h): which replies acknowledge a
 * creation, the identity inside them, and the queue that carries them from
 * the loop threads to the run file.
 *
 * Why not protobuf-c: the messages we need are two nested fields deep
 * (CreateUserResponse.user.{id,name}), and protobuf-c only decodes through
 * generated descriptors, which would mean vendoring Headscale's .proto files
 * per version (0.23 has string ids where 0.29 has uint64) plus protoc-c in the
 * build. The replies are walked with core's bounds-checked protobuf reader
 * (fld_next, the one the trace and run codecs use); a fuzz target,
 * tests/fuzz/fuzz_ack_pb.c, holds this file's use of it to no read past the end.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/cursor.h"
#include "h2replay/error.h"
#include "h2replay/fields.h"
#include "rp_ack.h"

#define GRPC_SERVICE "/headscale.v1.HeadscaleService/"

enum rp_ack_method rp_ack_method_of(const char *method, const char *path)
{
    if (!path)
        return RP_ACK_NONE;
    size_t n = strcspn(path, "?");
    static const struct {
        const char *path;
        enum rp_ack_method m;
        int rest;
    } table[] = {
        {GRPC_SERVICE "CreateUser", RP_ACK_CREATE_USER, 0},
        {GRPC_SERVICE "CreatePreAuthKey", RP_ACK_CREATE_PAK, 0},
        {GRPC_SERVICE "CreateApiKey", RP_ACK_CREATE_API_KEY, 0},
        {GRPC_SERVICE "RegisterNode", RP_ACK_REGISTER_NODE, 0},
        {"/api/v1/user", RP_ACK_REST_USER, 1},
        {"/api/v1/preauthkey", RP_ACK_REST_PAK, 1},
        {"/api/v1/apikey", RP_ACK_REST_API_KEY, 1},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strlen(table[i].path) != n || memcmp(table[i].path, path, n) != 0)
            continue;
        if (table[i].rest && (!method || strcmp(method, "POST") != 0))
            return RP_ACK_NONE;
        return table[i].m;
    }
    return RP_ACK_NONE;
}

/* ---- protobuf (the wire reader is core's fld_next, include/h2replay/fields.h) ---- */

/* The last occurrence of field num (protobuf: the last one wins) as a sub-cursor. */
static int pb_find(const uint8_t *msg, size_t n, uint32_t num, struct fld_value *out)
{
    struct fld_cursor c = {msg, n};
    struct fld_value f;
    int rc, found = 0;
    while ((rc = fld_next(&c, &f)) == 1) {
        if (f.field == num) {
            *out = f;
            found = 1;
        }
    }
    return rc < 0 ? rc : found;
}

/* Printable text only: identities end up in reports and SQL comparisons. */
static int text_ok(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] == 0x7f)
            return 0;
    return 1;
}

/* A string field, or a uint64 one in decimal (Headscale 0.23 ids are strings, later uint64). */
static int pb_text(const struct fld_value *f, char *out, size_t cap)
{
    if (f->wire_type == FLD_VARINT) {
        snprintf(out, cap, "%llu", (unsigned long long)f->u);
        return 1;
    }
    if (f->wire_type != FLD_BYTES || f->n == 0 || f->n >= cap || !text_ok(f->data, f->n))
        return 0;
    memcpy(out, f->data, f->n);
    out[f->n] = '\0';
    return 1;
}

int rp_grpc_message(const uint8_t *body, size_t n, const uint8_t **msg, size_t *len)
{
    struct h2r_cursor c = {body, body ? n : 0}, m;
    uint8_t compressed;
    uint32_t l;
    if (h2r_cur_u8(&c, &compressed) || compressed != 0 || h2r_cur_be32(&c, &l) ||
        h2r_cur_take(&c, l, &m))
        return H2R_ERR_FORMAT;
    *msg = m.p;
    *len = m.len;
    return 0;
}

/* field `outer` of the response message, itself a message: its field `num` as text. */
static int pb_nested_text(const uint8_t *msg, size_t n, uint32_t outer, uint32_t num, char *out,
                          size_t cap)
{
    struct fld_value f, g;
    if (pb_find(msg, n, outer, &f) != 1 || f.wire_type != FLD_BYTES)
        return 0;
    if (pb_find(f.data, f.n, num, &g) != 1)
        return 0;
    return pb_text(&g, out, cap);
}

static void set_kind(struct rp_ack_entity *e, const char *k)
{
    snprintf(e->kind, sizeof(e->kind), "%s", k);
}

/* API keys before 0.28 are "PREFIX.SECRET" and the table stores PREFIX. */
static void api_key_prefix(struct rp_ack_entity *e)
{
    const char *dot = strchr(e->key, '.');
    if (strncmp(e->key, "hskey-api-", 10) != 0 && dot && dot > e->key &&
        (size_t)(dot - e->key) < sizeof(e->prefix)) {
        memcpy(e->prefix, e->key, (size_t)(dot - e->key));
        e->prefix[dot - e->key] = '\0';
    }
}

static int parse_grpc(enum rp_ack_method m, const uint8_t *msg, size_t n,
                      struct rp_ack_entity *e)
{
    switch (m) {
    case RP_ACK_CREATE_USER: /* CreateUserResponse{User user = 1}, User{id = 1, name = 2} */
        pb_nested_text(msg, n, 1, 1, e->id, sizeof(e->id));
        pb_nested_text(msg, n, 1, 2, e->name, sizeof(e->name));
        return e->id[0] || e->name[0];
    case RP_ACK_CREATE_PAK: /* {PreAuthKey pre_auth_key = 1}, PreAuthKey{id = 2, key = 3} */
        pb_nested_text(msg, n, 1, 2, e->id, sizeof(e->id));
        pb_nested_text(msg, n, 1, 3, e->key, sizeof(e->key));
        return e->id[0] || e->key[0];
    case RP_ACK_CREATE_API_KEY: { /* CreateApiKeyResponse{string api_key = 1} */
        struct fld_value f;
        if (pb_find(msg, n, 1, &f) != 1 || f.wire_type != FLD_BYTES ||
            !pb_text(&f, e->key, sizeof(e->key)))
            return 0;
        api_key_prefix(e);
        return 1;
    }
    case RP_ACK_REGISTER_NODE: /* RegisterNodeResponse{Node node = 1}: id 1, mkey 2, nodekey 3 */
        pb_nested_text(msg, n, 1, 1, e->id, sizeof(e->id));
        pb_nested_text(msg, n, 1, 2, e->machine_key, sizeof(e->machine_key));
        pb_nested_text(msg, n, 1, 3, e->node_key, sizeof(e->node_key));
        return e->id[0] || e->node_key[0];
    default:
        return 0;
    }
}

/* ---- JSON (REST replies, TS2021 requests) ---- */

static void json_text(const json_t *v, char *out, size_t cap)
{
    if (json_is_string(v) && strlen(json_string_value(v)) < cap &&
        text_ok((const uint8_t *)json_string_value(v), strlen(json_string_value(v))))
        snprintf(out, cap, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
}

static json_t *json_of(const uint8_t *p, size_t n)
{
    if (!p || n == 0)
        return NULL;
    return json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, NULL);
}

static int parse_rest(enum rp_ack_method m, json_t *root, int is_request,
                      struct rp_ack_entity *e)
{
    if (!json_is_object(root))
        return 0;
    switch (m) {
    case RP_ACK_REST_USER: {
        const json_t *u = is_request ? root : json_object_get(root, "user");
        json_text(json_object_get(u, "name"), e->name, sizeof(e->name));
        if (!is_request)
            json_text(json_object_get(u, "id"), e->id, sizeof(e->id));
        return e->id[0] || e->name[0];
    }
    case RP_ACK_REST_PAK: {
        if (is_request)
            return 0;
        const json_t *k = json_object_get(root, "preAuthKey");
        json_text(json_object_get(k, "id"), e->id, sizeof(e->id));
        json_text(json_object_get(k, "key"), e->key, sizeof(e->key));
        return e->id[0] || e->key[0];
    }
    case RP_ACK_REST_API_KEY:
        if (is_request)
            return 0;
        json_text(json_object_get(root, "apiKey"), e->key, sizeof(e->key));
        api_key_prefix(e);
        return e->key[0] != '\0';
    default:
        return 0;
    }
}

static const char *kind_of(enum rp_ack_method m)
{
    switch (m) {
    case RP_ACK_CREATE_USER:
    case RP_ACK_REST_USER:
        return "user";
    case RP_ACK_CREATE_PAK:
    case RP_ACK_REST_PAK:
        return "pre_auth_key";
    case RP_ACK_CREATE_API_KEY:
    case RP_ACK_REST_API_KEY:
        return "api_key";
    case RP_ACK_REGISTER_NODE:
        return "node";
    default:
        return NULL;
    }
}

static int parse_one(enum rp_ack_method m, const uint8_t *body, size_t n, int is_request,
                     struct rp_ack_entity *e)
{
    if (m >= RP_ACK_REST_USER) {
        json_t *root = json_of(body, n);
        int ok = parse_rest(m, root, is_request, e);
        json_decref(root);
        return ok;
    }
    const uint8_t *msg;
    size_t len;
    if (rp_grpc_message(body, n, &msg, &len))
        return 0;
    if (!is_request)
        return parse_grpc(m, msg, len, e);
    /* requests: only CreateUserRequest{name = 1} names what it creates */
    struct fld_value f;
    if (m != RP_ACK_CREATE_USER || pb_find(msg, len, 1, &f) != 1 || f.wire_type != FLD_BYTES)
        return 0;
    return pb_text(&f, e->name, sizeof(e->name));
}

/*
 * Run files are shared (CI artifacts, bug reports) like traces, so a key's
 * secret never reaches one: a 0.28+ key keeps its public part
 * "hskey-auth-PPPPPPPPPPPP-" (Headscale stores that prefix in clear, and verify
 * matches on it) and an older key is dropped (the id, or the API key's prefix,
 * identifies the row). Returns 0 when nothing identifies the entity any more.
 */
static int mask_secret(struct rp_ack_entity *e)
{
    static const char *const tags[] = {"hskey-auth-", "hskey-api-"};
    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
        size_t tl = strlen(tags[i]);
        if (strncmp(e->key, tags[i], tl) == 0 && strlen(e->key) > tl + 12 &&
            e->key[tl + 12] == '-') {
            snprintf(e->key + tl + 13, sizeof(e->key) - tl - 13, "***");
            return 1;
        }
    }
    if (e->key[0]) {
        e->key[0] = '\0';
        return e->id[0] || e->prefix[0];
    }
    return 1;
}

int rp_ack_parse(enum rp_ack_method m, const uint8_t *req, size_t req_len, const uint8_t *resp,
                 size_t resp_len, struct rp_ack_entity *e)
{
    memset(e, 0, sizeof(*e));
    const char *kind = kind_of(m);
    if (!kind)
        return H2R_ERR_FORMAT;
    set_kind(e, kind);
    if (parse_one(m, resp, resp_len, 0, e) && mask_secret(e)) {
        e->source = H2R_ACK_SRC_RESPONSE;
        return 0;
    }
    memset(e, 0, sizeof(*e));
    set_kind(e, kind);
    if (parse_one(m, req, req_len, 1, e) && mask_secret(e)) {
        e->source = H2R_ACK_SRC_REQUEST;
        return 0;
    }
    return H2R_ERR_FORMAT;
}

int rp_ack_parse_ts_register(const uint8_t *req, size_t req_len, struct rp_ack_entity *e)
{
    memset(e, 0, sizeof(*e));
    set_kind(e, "node");
    json_t *root = json_of(req, req_len);
    if (json_is_object(root)) {
        json_text(json_object_get(root, "NodeKey"), e->node_key, sizeof(e->node_key));
        json_text(json_object_get(json_object_get(root, "Hostinfo"), "Hostname"), e->hostname,
                  sizeof(e->hostname));
    }
    json_decref(root);
    e->source = H2R_ACK_SRC_REQUEST; /* RegisterResponse names no key: the request does */
    return e->node_key[0] ? 0 : H2R_ERR_FORMAT;
}

/* ---- queue ---- */

static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rp_ack_item *q_v;
static size_t q_n, q_cap;
static uint64_t q_dropped;

void rp_ack_reset(void)
{
    pthread_mutex_lock(&q_mu);
    free(q_v);
    q_v = NULL;
    q_n = q_cap = 0;
    q_dropped = 0;
    pthread_mutex_unlock(&q_mu);
}

void rp_ack_push(uint32_t section, uint64_t exchange_id, uint64_t trace_conn, int64_t t_ns,
                 const struct rp_ack_entity *e)
{
    pthread_mutex_lock(&q_mu);
    if (q_n == q_cap) {
        size_t ncap = q_cap ? q_cap * 2 : 64;
        struct rp_ack_item *nv = q_cap < RP_ACK_QUEUE_MAX ? realloc(q_v, ncap * sizeof(*nv)) : NULL;
        if (!nv) {
            q_dropped++;
            pthread_mutex_unlock(&q_mu);
            return;
        }
        q_v = nv;
        q_cap = ncap;
    }
    struct rp_ack_item *it = &q_v[q_n++];
    it->section = section;
    it->exchange_id = exchange_id;
    it->trace_conn = trace_conn;
    it->t_ns = t_ns;
    it->e = *e;
    pthread_mutex_unlock(&q_mu);
}

void rp_ack_node_registered(uint32_t section, uint64_t exchange_id, uint64_t trace_conn,
                            int64_t t_ns, const char *reg_body, size_t reg_len)
{
    struct rp_ack_entity e;
    if (rp_ack_parse_ts_register((const uint8_t *)reg_body, reg_len, &e) == 0) {
        rp_ack_push(section, exchange_id, trace_conn, t_ns, &e);
        return;
    }
    rp_ack_unidentified();
}

uint64_t rp_ack_dropped(void)
{
    pthread_mutex_lock(&q_mu);
    uint64_t d = q_dropped;
    pthread_mutex_unlock(&q_mu);
    return d;
}

void rp_ack_unidentified(void)
{
    pthread_mutex_lock(&q_mu);
    q_dropped++;
    pthread_mutex_unlock(&q_mu);
}

size_t rp_ack_take(struct rp_ack_item **items, uint64_t *dropped)
{
    pthread_mutex_lock(&q_mu);
    *items = q_v;
    size_t n = q_n;
    q_v = NULL;
    q_n = q_cap = 0;
    if (dropped)
        *dropped = q_dropped;
    pthread_mutex_unlock(&q_mu);
    return n;
}

static const char *nz(const char *s)
{
    return s && s[0] ? s : NULL;
}

void rp_ack_to_run(const struct rp_ack_item *it, struct h2r_run_ack *a)
{
    memset(a, 0, sizeof(*a));
    a->section = it->section;
    a->exchange_id = it->exchange_id;
    a->trace_conn = it->trace_conn;
    a->t_ns = it->t_ns;
    a->kind = it->e.kind;
    a->id = nz(it->e.id);
    a->name = nz(it->e.name);
    a->key = nz(it->e.key);
    a->prefix = nz(it->e.prefix);
    a->node_key = nz(it->e.node_key);
    a->machine_key = nz(it->e.machine_key);
    a->hostname = nz(it->e.hostname);
    a->source = it->e.source;
}

int rp_ack_json_append(json_t *list, const struct h2r_run_ack *a)
{
    json_t *o = json_object();
    if (!o)
        return H2R_ERR_NOMEM;
    const struct {
        const char *name, *v;
    } f[] = {{"kind", a->kind},         {"id", a->id},
             {"name", a->name},         {"key", a->key},
             {"prefix", a->prefix},     {"node_key", a->node_key},
             {"machine_key", a->machine_key}, {"hostname", a->hostname}};
    int bad = 0;
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        json_t *s = f[i].v && f[i].v[0] ? json_string(f[i].v) : NULL;
        if (s) /* NULL also for text that is not UTF-8: that field cannot match a column */
            bad |= json_object_set_new(o, f[i].name, s);
        else if (i == 0) /* no usable kind: verify could not even file it */
            bad = 1;
    }
    bad |= json_object_set_new(o, "exchange", json_integer((json_int_t)a->exchange_id));
    if (bad) {
        json_decref(o);
        return a->kind && a->kind[0] ? H2R_ERR_NOMEM : H2R_ERR_FORMAT;
    }
    return json_array_append_new(list, o) ? H2R_ERR_NOMEM : 0; /* o is stolen either way */
}
