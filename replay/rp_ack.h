/*
 * What the server acknowledged: entities a replay was told were created.
 *
 * A replay records an "ack" (docs/run-format.md, record 7) for every
 * creation the server confirmed: a gRPC CreateUser / CreatePreAuthKey /
 * CreateApiKey / RegisterNode answered grpc-status 0 (or the REST
 * equivalents answered 2xx), and a TS2021 node registration accepted.
 * `db verify --run` and `replay --db` compare them with the database
 * (db_verify.c): "acknowledged but lost" and "present but never
 * acknowledged".
 *
 * Three parts:
 *   - parsing (no I/O): which requests can acknowledge something, and the
 *     identity in the response message (a bounded protobuf reader; JSON for
 *     REST and TS2021), falling back to the request when the response body
 *     is unreadable;
 *   - a process-wide queue: loop threads push, the coordinator (the run
 *     file's only writer) takes. Acknowledgements are rare next to results
 *     (one per creation), so one mutex is cold; the queue is bounded and
 *     counts what it drops;
 *   - conversion to the JSON list rp_db_verify() takes.
 */
#ifndef H2R_RP_ACK_H
#define H2R_RP_ACK_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/run.h"

/* Acknowledgements queued between two drains (about 1 s); past it they are dropped, counted. */
#define RP_ACK_QUEUE_MAX 262144u

enum rp_ack_method {
    RP_ACK_NONE = 0,
    RP_ACK_CREATE_USER,     /* gRPC headscale.v1.HeadscaleService/CreateUser */
    RP_ACK_CREATE_PAK,      /* .../CreatePreAuthKey */
    RP_ACK_CREATE_API_KEY,  /* .../CreateApiKey */
    RP_ACK_REGISTER_NODE,   /* .../RegisterNode */
    RP_ACK_REST_USER,       /* POST /api/v1/user (JSON) */
    RP_ACK_REST_PAK,        /* POST /api/v1/preauthkey */
    RP_ACK_REST_API_KEY     /* POST /api/v1/apikey */
};

/* The method a request path (query ignored) and HTTP method may acknowledge; RP_ACK_NONE. */
enum rp_ack_method rp_ack_method_of(const char *method, const char *path);

/* One acknowledged entity: owned, fixed-size copies (longer values are cut, then useless). */
struct rp_ack_entity {
    char kind[16]; /* "user", "pre_auth_key", "node", "api_key" */
    char id[32];
    char name[128];
    char key[160];
    char prefix[48];
    char node_key[80];
    char machine_key[80];
    char hostname[128];
    uint32_t source; /* H2R_ACK_SRC_* */
};

/*
 * The first complete gRPC message of a body (RFC-less: grpc/doc/PROTOCOL-HTTP2.md,
 * "Length-Prefixed-Message": 1 byte compressed flag, 4 bytes big-endian length).
 * Returns 0 with *msg / *len set, H2R_ERR_FORMAT (short, or compressed: we do not
 * inflate) .
 */
int rp_grpc_message(const uint8_t *body, size_t n, const uint8_t **msg, size_t *len);

/*
 * Fills e from an acknowledged exchange: the response body first (resp may be
 * NULL or cut: truncated), else the request body (source H2R_ACK_SRC_REQUEST).
 * Returns 0, or H2R_ERR_FORMAT when neither names the entity.
 */
int rp_ack_parse(enum rp_ack_method m, const uint8_t *req, size_t req_len, const uint8_t *resp,
                 size_t resp_len, struct rp_ack_entity *e);

/*
 * Fills e from a TS2021 RegisterRequest JSON body (NodeKey, Hostinfo.Hostname) that the
 * server accepted. Returns 0 or H2R_ERR_FORMAT.
 */
int rp_ack_parse_ts_register(const uint8_t *req, size_t req_len, struct rp_ack_entity *e);

/* ---- the process-wide queue ---- */

/* Empties the queue and zeroes the drop counter (at the start of a replay). */
void rp_ack_reset(void);

/* Queues e for section / exchange (t_ns from t0). Thread-safe; never blocks for long. */
void rp_ack_push(uint32_t section, uint64_t exchange_id, uint64_t trace_conn, int64_t t_ns,
                 const struct rp_ack_entity *e);

/*
 * The one hook of the TS2021 node engine: the register request body reg_body
 * (JSON) was accepted; queues the node it names. Never fails (a body it cannot
 * read is counted as dropped).
 */
void rp_ack_node_registered(uint32_t section, uint64_t exchange_id, uint64_t trace_conn,
                            int64_t t_ns, const char *reg_body, size_t reg_len);

/* Acknowledgements lost so far (queue full, or no identity found). */
uint64_t rp_ack_dropped(void);

/* Counts an acknowledgement whose identity no body gave (it shows as dropped). */
void rp_ack_unidentified(void);

/* One queued acknowledgement. */
struct rp_ack_item {
    uint32_t section;
    uint64_t exchange_id;
    uint64_t trace_conn;
    int64_t t_ns;
    struct rp_ack_entity e;
};

/*
 * Takes everything queued: *items (caller frees) and their count; *dropped gets the
 * acknowledgements lost so far (queue full, or no identity found). Returns the count.
 */
size_t rp_ack_take(struct rp_ack_item **items, uint64_t *dropped);

/* The run-file view of an item (strings borrowed from it; "" becomes NULL). */
void rp_ack_to_run(const struct rp_ack_item *it, struct h2r_run_ack *a);

/*
 * Appends a run-file ack to a JSON array in db_verify.c's entity form
 * ({"kind", "id", "name", "key", "node_key", ...}). Returns 0, H2R_ERR_FORMAT (no
 * usable kind: nothing appended) or H2R_ERR_NOMEM.
 */
struct json_t;
int rp_ack_json_append(struct json_t *list, const struct h2r_run_ack *a);

#endif
