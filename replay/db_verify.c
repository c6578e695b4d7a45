/*
 * "Acknowledged but lost" and "present but never acknowledged": the
 * durability check run after a replay.
 *
 * A replay records every entity the server acknowledged (a 200 reply to a
 * user or key creation, a successful node registration). Here each
 * acknowledgement is indexed by "kind, field, value" in a small chained hash
 * table; then every live row of the database is looked up by its id and
 * identity columns. Acknowledgements no row matched were lost (the server
 * said yes, the database does not have it); rows that matched nothing were
 * created without the client ever hearing about it (timeouts, retries,
 * entities made outside the replay). Works on any adapter through
 * rp_db_list(), so both engines are judged by the same code.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "h2replay/error.h"

struct ack_node {
    struct ack_node *next;
    size_t ack; /* index into acks */
    char key[]; /* "kind\x1f" "field\x1f" "value" */
};

struct ack_index {
    struct ack_node **bucket;
    size_t nbucket;
    unsigned char *matched; /* per ack */
    int *kind;              /* per ack, -1 when ignored */
    size_t nacks;
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static int make_key(char *out, size_t outlen, int kind, const char *field, const char *value)
{
    return (size_t)snprintf(out, outlen, "%d\x1f%s\x1f%s", kind, field, value) >= outlen
               ? H2R_ERR_LIMIT
               : 0;
}

static int index_add(struct ack_index *ix, int kind, const char *field, const char *value,
                     size_t ack)
{
    char key[1024];
    if (make_key(key, sizeof(key), kind, field, value))
        return 0; /* absurdly long identity: cannot match a column anyway */
    size_t len = strlen(key);
    struct ack_node *n = malloc(sizeof(*n) + len + 1);
    if (!n)
        return H2R_ERR_NOMEM;
    memcpy(n->key, key, len + 1);
    n->ack = ack;
    size_t b = fnv1a(key) % ix->nbucket;
    n->next = ix->bucket[b];
    ix->bucket[b] = n;
    return 0;
}

/* Marks every ack indexed under (kind, field, value); returns how many. */
static int index_hit(struct ack_index *ix, int kind, const char *field, const char *value)
{
    char key[1024];
    if (make_key(key, sizeof(key), kind, field, value))
        return 0;
    int hits = 0;
    for (struct ack_node *n = ix->bucket[fnv1a(key) % ix->nbucket]; n; n = n->next) {
        if (strcmp(n->key, key) == 0) {
            ix->matched[n->ack] = 1;
            hits++;
        }
    }
    return hits;
}

static void index_free(struct ack_index *ix)
{
    if (ix->bucket) {
        for (size_t b = 0; b < ix->nbucket; b++) {
            struct ack_node *n = ix->bucket[b];
            while (n) {
                struct ack_node *next = n->next;
                free(n);
                n = next;
            }
        }
    }
    free(ix->bucket);
    free(ix->matched);
    free(ix->kind);
}

/* A JSON scalar as identity text: strings as-is, integers in decimal. */
static int scalar_text(const json_t *v, char *buf, size_t len)
{
    if (json_is_string(v)) {
        snprintf(buf, len, "%s", json_string_value(v));
        return 1;
    }
    if (json_is_integer(v)) {
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return 1;
    }
    return 0;
}

/*
 * The 12-character prefix of a Headscale 0.28+ key ("hskey-auth-PPPPPPPPPPPP-secret",
 * "hskey-api-PPPPPPPPPPPP-secret"); 0 when s is not one.
 */
static int key_prefix(const char *s, const char *tag, char *out, size_t outlen)
{
    size_t tl = strlen(tag);
    if (strncmp(s, tag, tl) != 0 || strlen(s) < tl + 13 || s[tl + 12] != '-' || outlen < 13)
        return 0;
    memcpy(out, s + tl, 12);
    out[12] = '\0';
    return 1;
}

/* Indexes one acknowledgement; returns 1 if indexed, 0 if unusable, <0 on error. */
static int index_entity(struct ack_index *ix, const json_t *e, size_t i, unsigned kinds)
{
    ix->kind[i] = -1;
    if (!json_is_object(e))
        return 0;
    enum rp_db_kind k;
    if (rp_db_kind_parse(json_string_value(json_object_get(e, "kind")), &k))
        return 0;
    if (!(kinds & (1u << k))) {
        ix->kind[i] = -2; /* valid, but not a kind we were asked to check */
        return 1;
    }
    int fields = 0, rc;
    char val[768], prefix[16];
    if (scalar_text(json_object_get(e, "id"), val, sizeof(val))) {
        if ((rc = index_add(ix, (int)k, "id", val, i)) < 0)
            return rc;
        fields++;
    }
    for (const char *const *col = rp_db_identity_columns(k); *col; col++) {
        if (!scalar_text(json_object_get(e, *col), val, sizeof(val)) || !val[0])
            continue;
        if ((rc = index_add(ix, (int)k, *col, val, i)) < 0)
            return rc;
        fields++;
    }
    /* Full keys also match by prefix (0.28+ stores prefix + bcrypt hash only). */
    const char *full = json_string_value(json_object_get(e, "key"));
    const char *tag = k == RP_DB_PRE_AUTH_KEYS ? "hskey-auth-" : k == RP_DB_API_KEYS ? "hskey-api-"
                                                                                   : NULL;
    if (full && tag && key_prefix(full, tag, prefix, sizeof(prefix))) {
        if ((rc = index_add(ix, (int)k, "prefix", prefix, i)) < 0)
            return rc;
        fields++;
    }
    if (!fields)
        return 0;
    ix->kind[i] = (int)k;
    return 1;
}

struct kind_tally {
    int64_t acked, present, lost, unacked;
    int64_t existing;    /* rows that were there before (ids up to "existing_before") */
    json_t *lost_list, *unacked_list;
};

struct list_ctx {
    struct ack_index *ix;
    int kind;
    int64_t before; /* rows with an id up to this existed before: not counted */
    struct kind_tally *t;
    size_t max_list;
};

static int on_row(const struct rp_db_row *row, void *ud)
{
    struct list_ctx *c = ud;
    char id[32];
    snprintf(id, sizeof(id), "%" PRId64, row->id);
    int hits = index_hit(c->ix, c->kind, "id", id);
    for (int i = 0; i < row->n; i++)
        if (row->value[i] && row->value[i][0])
            hits += index_hit(c->ix, c->kind, row->name[i], row->value[i]);
    if (row->id <= c->before) { /* an earlier row still satisfies an ack, but is not ours */
        c->t->existing++;
        return 0;
    }
    c->t->present++;
    if (hits)
        return 0;
    c->t->unacked++;
    if (json_array_size(c->t->unacked_list) < c->max_list) {
        json_t *o = json_object();
        if (!o)
            return H2R_ERR_NOMEM;
        json_object_set_new(o, "id", json_integer(row->id));
        for (int i = 0; i < row->n; i++)
            json_object_set_new(o, row->name[i],
                                row->value[i] ? json_string(row->value[i]) : json_null());
        json_array_append_new(c->t->unacked_list, o);
    }
    return 0;
}

int rp_db_verify(struct rp_db *db, const json_t *acks, unsigned kinds, size_t max_list,
                 json_t **report)
{
    *report = NULL;
    const json_t *list = acks;
    if (json_is_object(acks)) {
        list = json_object_get(acks, "acknowledged");
        if (!list)
            list = json_object_get(acks, "entities");
    }
    if (!json_is_array(list))
        return rp_db_fail(db, H2R_ERR_FORMAT,
                          "acknowledgements must be a JSON array or an object with an "
                          "\"acknowledged\" array");
    struct ack_index ix;
    memset(&ix, 0, sizeof(ix));
    struct kind_tally tally[RP_DB_KIND_COUNT];
    memset(tally, 0, sizeof(tally));
    json_t *out = NULL, *ignored = NULL;
    int64_t n_ignored = 0;
    int rc = H2R_ERR_NOMEM;

    ix.nacks = json_array_size(list);
    ix.nbucket = ix.nacks * 2 + 64;
    ix.bucket = calloc(ix.nbucket, sizeof(*ix.bucket));
    ix.matched = calloc(ix.nacks + 1, 1);
    ix.kind = calloc(ix.nacks + 1, sizeof(int));
    ignored = json_array();
    if (!ix.bucket || !ix.matched || !ix.kind || !ignored)
        goto out;
    for (size_t i = 0; i < ix.nacks; i++) {
        const json_t *e = json_array_get(list, i);
        int r = index_entity(&ix, e, i, kinds);
        if (r < 0) {
            rc = r;
            goto out;
        }
        if (r == 0) {
            n_ignored++;
            if (json_array_size(ignored) < max_list)
                json_array_append(ignored, (json_t *)e);
        } else if (ix.kind[i] >= 0) {
            tally[ix.kind[i]].acked++;
        }
    }
    for (int k = 0; k < RP_DB_KIND_COUNT; k++) {
        tally[k].lost_list = json_array();
        tally[k].unacked_list = json_array();
        if (!tally[k].lost_list || !tally[k].unacked_list)
            goto out;
    }
    for (int k = 0; k < RP_DB_KIND_COUNT; k++) {
        if (!(kinds & (1u << k)))
            continue;
        json_int_t before = json_integer_value(json_object_get(
            json_object_get(acks, "existing_before"), rp_db_kind_name((enum rp_db_kind)k)));
        struct list_ctx c = {&ix, k, before, &tally[k], max_list};
        rc = rp_db_list(db, (enum rp_db_kind)k, on_row, &c);
        if (rc)
            goto out;
    }
    rc = H2R_ERR_NOMEM;
    int64_t lost = 0, unacked = 0;
    for (size_t i = 0; i < ix.nacks; i++) {
        if (ix.kind[i] < 0 || ix.matched[i])
            continue;
        struct kind_tally *t = &tally[ix.kind[i]];
        t->lost++;
        if (json_array_size(t->lost_list) < max_list)
            json_array_append(t->lost_list, json_array_get(list, i));
    }
    out = json_object();
    json_t *kobj = json_object();
    if (!out || !kobj) {
        json_decref(kobj);
        goto out;
    }
    json_object_set_new(out, "engine", json_string(rp_db_engine(db)));
    json_object_set_new(out, "kinds", kobj);
    for (int k = 0; k < RP_DB_KIND_COUNT; k++) {
        if (!(kinds & (1u << k)))
            continue;
        struct kind_tally *t = &tally[k];
        json_t *o = json_object();
        if (!o)
            goto out;
        json_object_set_new(o, "acknowledged", json_integer(t->acked));
        json_object_set_new(o, "present", json_integer(t->present));
        json_object_set_new(o, "existing_before", json_integer(t->existing));
        json_object_set_new(o, "lost", json_integer(t->lost));
        json_object_set_new(o, "unacknowledged", json_integer(t->unacked));
        json_object_set(o, "lost_entities", t->lost_list);
        json_object_set(o, "unacknowledged_rows", t->unacked_list);
        json_object_set_new(kobj, rp_db_kind_name((enum rp_db_kind)k), o);
        lost += t->lost;
        unacked += t->unacked;
    }
    json_object_set_new(out, "acknowledged_but_lost", json_integer(lost));
    json_object_set_new(out, "present_but_never_acknowledged", json_integer(unacked));
    json_object_set_new(out, "ignored_entities", json_integer(n_ignored));
    json_object_set(out, "ignored_examples", ignored);
    *report = out;
    out = NULL;
    rc = 0;
out:
    if (rc == H2R_ERR_NOMEM && !db->err[0])
        rp_db_fail(db, rc, "out of memory");
    json_decref(out);
    json_decref(ignored);
    for (int k = 0; k < RP_DB_KIND_COUNT; k++) {
        json_decref(tally[k].lost_list);
        json_decref(tally[k].unacked_list);
    }
    index_free(&ix);
    return rc;
}
