/*
 * TS2021 sessions seen on the wire: what a passive observer can know about a
 * Tailscale control connection, kept as one ts_session record per session.
 *
 * The client puts Noise message 1 into its upgrade request
 * (X-Tailscale-Handshake: standard base64, RFC 4648 section 4, of the 101-byte
 * initiation frame: BE16 capability version, type 1, BE16 length 96, message
 * 1). The version is in clear; the client's static key (its machine key) is
 * encrypted under es and ss, so whoever holds the server's Noise private key
 * can read it (Noise IK, noiseprotocol.org rev 34 section 7.5: the responder
 * learns the initiator's static key from message 1). After "101 Switching
 * Protocols" both directions carry controlbase frames (u8 type, BE16 length):
 * first the server's handshake response (type 2, 48 bytes) or an error (type
 * 3, text), then transport records (type 4). Record keys come from ee, which
 * needs an ephemeral private key, so the content stays unknown to anyone who
 * was not an endpoint (forward secrecy): only the shape is kept - each
 * frame's direction, wire size, type and capture time.
 *
 * Machine keys are numbered into nodes in order of first appearance by a
 * seeded open-addressing table (the keys come from the network: a seed keeps
 * crafted keys from clustering), capped at CAP_TS_MAX_NODES.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap_ts.h"
#include "ts2021.h"

#define CTS_B64_MAX (TS_INIT_FRAME_LEN + 3) /* decode room: longer values are not frames */

enum cts_phase {
    CTS_WAIT_ANSWER, /* upgrade sent, no final answer yet */
    CTS_OPEN,        /* 101: frames in both directions */
    CTS_REFUSED,     /* final non-101 answer */
    CTS_REJECTED,    /* error frame from the server */
    CTS_UNDECODABLE  /* framing lost: gap, bad frame, bad answer head */
};

struct cap_ts {
    struct cap_ts_cfg cfg;
    enum cts_phase phase;
    uint32_t capver;
    uint32_t flags;
    uint64_t node;
    uint8_t machine_key[CAP_TS_KEY_LEN];
    int32_t status;
    int64_t t_handshake_ns;
    int got_response;
    struct h2r_ts_rec *recs;
    size_t n_recs, cap_recs;
    uint64_t recs_dropped;
    uint64_t frames[2], bytes[2];
    int cur_dir;     /* direction and capture time of the bytes being fed, */
    int64_t cur_ts;  /* for the frame callback */
    int reason_hard; /* reason says why the session failed (not only why it is unidentified) */
    char reason[CAP_TS_MAX_REASON + 64];
    struct ts_frame_parser fp[2];
};

/* ---- node table ---- */

struct cts_node {
    uint8_t key[CAP_TS_KEY_LEN];
    uint64_t node; /* 0: empty slot */
};

struct cap_ts_nodes {
    struct cts_node *slots;
    size_t cap; /* power of two, kept at most half full */
    uint64_t count;
    uint64_t seed;
};

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* splitmix64's finaliser over the four key words, keyed by the table's seed. */
static uint64_t key_hash(const struct cap_ts_nodes *t, const uint8_t key[CAP_TS_KEY_LEN])
{
    uint64_t h = t->seed;
    for (int i = 0; i < 4; i++) {
        h ^= load_le64(key + 8 * i);
        h += 0x9e3779b97f4a7c15ull;
        h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
        h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
        h ^= h >> 31;
    }
    return h;
}

struct cap_ts_nodes *cap_ts_nodes_new(uint64_t seed)
{
    struct cap_ts_nodes *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->seed = seed;
    return t;
}

void cap_ts_nodes_free(struct cap_ts_nodes *t)
{
    if (!t)
        return;
    free(t->slots);
    free(t);
}

static struct cts_node *nodes_slot(const struct cap_ts_nodes *t, const uint8_t *key)
{
    size_t i = (size_t)key_hash(t, key) & (t->cap - 1);
    while (t->slots[i].node != 0 && memcmp(t->slots[i].key, key, CAP_TS_KEY_LEN) != 0)
        i = (i + 1) & (t->cap - 1);
    return &t->slots[i];
}

static int nodes_grow(struct cap_ts_nodes *t)
{
    size_t ncap = t->cap ? t->cap * 2 : 64;
    struct cts_node *old = t->slots;
    size_t ocap = t->cap;
    struct cts_node *ns = calloc(ncap, sizeof(*ns));
    if (!ns)
        return H2R_ERR_NOMEM;
    t->slots = ns;
    t->cap = ncap;
    for (size_t i = 0; i < ocap; i++) {
        if (old[i].node != 0)
            *nodes_slot(t, old[i].key) = old[i];
    }
    free(old);
    return 0;
}

uint64_t cap_ts_nodes_get(struct cap_ts_nodes *t, const uint8_t key[CAP_TS_KEY_LEN])
{
    struct cts_node *e;
    if (t->cap) {
        e = nodes_slot(t, key);
        if (e->node != 0)
            return e->node;
    }
    if (t->count >= CAP_TS_MAX_NODES)
        return 0;
    if ((t->count + 1) * 2 > t->cap && nodes_grow(t) != 0)
        return 0;
    e = nodes_slot(t, key);
    memcpy(e->key, key, CAP_TS_KEY_LEN);
    e->node = ++t->count;
    return e->node;
}

uint64_t cap_ts_nodes_count(const struct cap_ts_nodes *t)
{
    return t ? t->count : 0;
}

/* ---- one session ---- */

/* Sets the reason; a hard one (why the session failed) replaces a soft one (why it is
 * unidentified) but never another hard one: the first failure is the cause. */
static void set_reason(struct cap_ts *t, int hard, const char *what, const char *detail)
{
    if (t->reason_hard || (!hard && t->reason[0]))
        return;
    snprintf(t->reason, sizeof(t->reason), "%s%s", what, detail ? detail : "");
    t->reason_hard = hard;
}

static void identify(struct cap_ts *t, const uint8_t *hs, size_t hs_len)
{
    struct ts_client_identity id;
    uint8_t frame[CTS_B64_MAX];
    const uint8_t *msg1;
    size_t flen = 0, mlen = 0;
    uint16_t version = 0;
    char err[160] = "";

    if (!hs) {
        t->cfg.stats->bad_handshake++;
        set_reason(t, 0, "no X-Tailscale-Handshake header", NULL);
        return;
    }
    if (ts_b64_decode((const char *)hs, hs_len, frame, sizeof(frame), &flen) != 0) {
        t->cfg.stats->bad_handshake++;
        set_reason(t, 0, "X-Tailscale-Handshake is not standard base64 of a frame", NULL);
        return;
    }
    if (ts_init_frame_parse(frame, flen, &version, &msg1, &mlen) != 0) {
        t->cfg.stats->bad_handshake++;
        set_reason(t, 0, "X-Tailscale-Handshake is not a 101-byte initiation frame", NULL);
        return;
    }
    t->capver = version;
    if (!t->cfg.noise_key || !t->cfg.nodes)
        return;
    if (ts_init_frame_identify(t->cfg.noise_key, frame, flen, &id, err, sizeof(err)) != 0) {
        t->cfg.stats->identify_failed++;
        set_reason(t, 0, "not identified with the noise key: ", err);
        return;
    }
    t->node = cap_ts_nodes_get(t->cfg.nodes, id.machine_pub);
    if (t->node == 0) {
        t->cfg.stats->node_table_full++;
        set_reason(t, 0, "not identified: node table full", NULL);
        return;
    }
    memcpy(t->machine_key, id.machine_pub, CAP_TS_KEY_LEN);
    t->flags |= H2R_TS_F_IDENTIFIED;
    t->cfg.stats->identified++;
}

static int on_frame(void *ud, uint8_t type, const uint8_t *body, size_t len)
{
    struct cap_ts *t = ud;
    int dir = t->cur_dir;

    t->frames[dir]++;
    t->cfg.stats->frames++;
    if (dir == 1 && type == TS_FRAME_RESP) {
        t->got_response = 1;
        t->t_handshake_ns = t->cur_ts;
    } else if (dir == 1 && type == TS_FRAME_ERROR) {
        /* Unauthenticated text from the server; keep printable ASCII only. */
        char text[CAP_TS_MAX_REASON + 1];
        size_t n = len < CAP_TS_MAX_REASON ? len : CAP_TS_MAX_REASON;
        for (size_t i = 0; i < n; i++)
            text[i] = body[i] >= 0x20 && body[i] < 0x7f ? (char)body[i] : '?';
        text[n] = '\0';
        t->phase = CTS_REJECTED;
        set_reason(t, 1, n ? text : "error frame without text", NULL);
    }
    if (t->n_recs == H2R_TS_MAX_RECS) {
        t->recs_dropped++;
        t->cfg.stats->recs_dropped++;
        return 0;
    }
    if (t->n_recs == t->cap_recs) {
        size_t ncap = t->cap_recs ? t->cap_recs * 2 : 64;
        struct h2r_ts_rec *nr;
        if (ncap > H2R_TS_MAX_RECS)
            ncap = H2R_TS_MAX_RECS;
        nr = realloc(t->recs, ncap * sizeof(*nr));
        if (!nr)
            return H2R_ERR_NOMEM;
        t->recs = nr;
        t->cap_recs = ncap;
    }
    t->recs[t->n_recs].t_ns = t->cur_ts - t->cfg.t_upgrade_ns;
    t->recs[t->n_recs].len = (uint32_t)(len + TS_FRAME_HDR_LEN);
    t->recs[t->n_recs].dir = (uint8_t)dir;
    t->recs[t->n_recs].type = type;
    t->n_recs++;
    return 0;
}

struct cap_ts *cap_ts_new(const struct cap_ts_cfg *cfg, const uint8_t *hs, size_t hs_len)
{
    struct cap_ts *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->cfg = *cfg;
    t->phase = CTS_WAIT_ANSWER;
    t->status = -1;
    if (cfg->tls)
        t->flags |= H2R_TS_F_TLS;
    ts_frame_parser_init(&t->fp[0], 0, on_frame, t);
    ts_frame_parser_init(&t->fp[1], 1, on_frame, t);
    t->cfg.stats->sessions++;
    identify(t, hs, hs_len);
    return t;
}

void cap_ts_answer(struct cap_ts *t, int status, int64_t ts_ns)
{
    (void)ts_ns;
    if (t->phase != CTS_WAIT_ANSWER)
        return;
    t->status = status;
    if (status == 101) {
        t->phase = CTS_OPEN;
        return;
    }
    t->phase = CTS_REFUSED;
    t->cfg.stats->refused++;
}

void cap_ts_fail(struct cap_ts *t, const char *reason)
{
    if (t->phase != CTS_WAIT_ANSWER && t->phase != CTS_OPEN)
        return;
    t->phase = CTS_UNDECODABLE;
    set_reason(t, 1, reason, NULL);
}

int cap_ts_feed(struct cap_ts *t, int dir, const uint8_t *buf, size_t len, int64_t ts_ns)
{
    int rc;

    if (dir != 0 && dir != 1)
        return H2R_ERR_ARG;
    t->bytes[dir] += len;
    if (t->phase != CTS_OPEN || len == 0)
        return 0;
    t->cur_dir = dir;
    t->cur_ts = ts_ns;
    rc = ts_frame_feed(&t->fp[dir], buf, len);
    if (rc == H2R_ERR_NOMEM)
        return rc;
    if (rc != 0 && t->phase == CTS_OPEN) {
        char why[200];
        snprintf(why, sizeof(why), "%s framing: %s", dir == 0 ? "client" : "server",
                 t->fp[dir].err[0] ? t->fp[dir].err : h2r_strerror(rc));
        t->phase = CTS_UNDECODABLE;
        set_reason(t, 1, why, NULL);
    }
    return 0;
}

void cap_ts_gap(struct cap_ts *t, int dir)
{
    (void)dir;
    if (t->phase == CTS_WAIT_ANSWER || t->phase == CTS_OPEN) {
        t->phase = CTS_UNDECODABLE;
        set_reason(t, 1, "gap", NULL);
    }
}

int cap_ts_open(const struct cap_ts *t)
{
    return t->phase == CTS_WAIT_ANSWER || t->phase == CTS_OPEN;
}

void cap_ts_finish(struct cap_ts *t, uint32_t conn_how, int64_t t_end_ns,
                   struct h2r_ts_session *out)
{
    uint32_t how;
    int capture_end = conn_how == H2R_CONN_END_CAPTURE_END;

    switch (t->phase) {
    case CTS_UNDECODABLE:
        how = H2R_TS_END_UNDECODABLE;
        break;
    case CTS_REFUSED:
        how = H2R_TS_END_REFUSED;
        break;
    case CTS_REJECTED:
        how = H2R_TS_END_REJECTED;
        break;
    case CTS_WAIT_ANSWER:
        how = capture_end ? H2R_TS_END_CAPTURE_END : H2R_TS_END_REJECTED;
        if (!capture_end)
            set_reason(t, 1, "closed before the upgrade was answered", NULL);
        break;
    case CTS_OPEN:
    default:
        if (!t->got_response) {
            how = capture_end ? H2R_TS_END_CAPTURE_END : H2R_TS_END_REJECTED;
            if (!capture_end)
                set_reason(t, 1, "closed before the handshake response", NULL);
        } else if (conn_how == H2R_CONN_END_RST) {
            how = H2R_TS_END_RST;
        } else if (capture_end) {
            how = H2R_TS_END_CAPTURE_END;
        } else if (conn_how == H2R_CONN_END_UNKNOWN) {
            how = H2R_TS_END_UNKNOWN;
        } else {
            how = H2R_TS_END_FIN;
        }
        break;
    }
    if (how == H2R_TS_END_REJECTED)
        t->cfg.stats->rejected++;
    else if (how == H2R_TS_END_UNDECODABLE)
        t->cfg.stats->undecodable++;

    memset(out, 0, sizeof(*out));
    out->id = t->cfg.id;
    out->conn_id = t->cfg.conn_id;
    out->node = t->node;
    out->capver = t->capver;
    out->flags = t->flags;
    if (t->flags & H2R_TS_F_IDENTIFIED)
        memcpy(out->machine_key, t->machine_key, CAP_TS_KEY_LEN);
    out->status = t->status;
    out->how = how;
    /* Packet times need not be monotonic (capture order, multi-queue taps), but the
     * trace reader refuses a session whose times are out of order: clamp to
     * upgrade <= handshake <= end. */
    out->t_upgrade_ns = t->cfg.t_upgrade_ns;
    out->t_handshake_ns = t->t_handshake_ns;
    if (out->t_handshake_ns != 0 && out->t_handshake_ns < out->t_upgrade_ns)
        out->t_handshake_ns = out->t_upgrade_ns;
    out->t_end_ns = t_end_ns;
    if (out->t_end_ns < out->t_upgrade_ns)
        out->t_end_ns = out->t_upgrade_ns;
    if (out->t_end_ns < out->t_handshake_ns)
        out->t_end_ns = out->t_handshake_ns;
    out->frames_c2s = t->frames[0];
    out->frames_s2c = t->frames[1];
    out->bytes_c2s = t->bytes[0];
    out->bytes_s2c = t->bytes[1];
    out->recs = t->recs;
    out->n_recs = t->n_recs;
    out->recs_dropped = t->recs_dropped;
    out->reason = t->reason[0] ? t->reason : NULL;
}

void cap_ts_free(struct cap_ts *t)
{
    if (!t)
        return;
    free(t->recs);
    free(t);
}

int cap_ts_parse_noise_key(const char *text, size_t len, uint8_t key[CAP_TS_KEY_LEN])
{
    return ts_key_parse(TS_PREFIX_PRIVATE, text, len, key) == 0 ? 0 : H2R_ERR_FORMAT;
}
