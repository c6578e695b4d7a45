/*
 * Unit tests for replay/rp_ack.c: which paths acknowledge, the bounded
 * protobuf reader on good and bad input, identities from Headscale 0.29 and
 * 0.23 replies (uint64 vs string ids), the request fallback, REST and
 * TS2021 bodies, the queue and the JSON form db_verify.c reads.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "h2replay/error.h"
#include "h2replay/fields.h"
#include "rp_ack.h"

struct msg {
    uint8_t b[512];
    size_t n;
};

static void put_varint(struct msg *m, uint64_t v)
{
    while (v >= 0x80) {
        m->b[m->n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    m->b[m->n++] = (uint8_t)v;
}

static void put_u(struct msg *m, uint32_t f, uint64_t v)
{
    put_varint(m, (uint64_t)f << 3);
    put_varint(m, v);
}

static void put_s(struct msg *m, uint32_t f, const void *p, size_t n)
{
    put_varint(m, (uint64_t)f << 3 | 2);
    put_varint(m, n);
    memcpy(m->b + m->n, p, n);
    m->n += n;
}

static void grpc(struct msg *out, const struct msg *in)
{
    out->n = 0;
    out->b[out->n++] = 0;
    out->b[out->n++] = (uint8_t)(in->n >> 24);
    out->b[out->n++] = (uint8_t)(in->n >> 16);
    out->b[out->n++] = (uint8_t)(in->n >> 8);
    out->b[out->n++] = (uint8_t)in->n;
    memcpy(out->b + out->n, in->b, in->n);
    out->n += in->n;
}

static void test_methods(void)
{
    CHECK_EQ_INT(rp_ack_method_of("POST", "/headscale.v1.HeadscaleService/CreateUser"),
                 RP_ACK_CREATE_USER);
    CHECK_EQ_INT(rp_ack_method_of("POST", "/headscale.v1.HeadscaleService/CreatePreAuthKey"),
                 RP_ACK_CREATE_PAK);
    CHECK_EQ_INT(rp_ack_method_of("POST", "/headscale.v1.HeadscaleService/ListNodes"),
                 RP_ACK_NONE);
    CHECK_EQ_INT(rp_ack_method_of("POST", "/api/v1/user?x=1"), RP_ACK_REST_USER);
    CHECK_EQ_INT(rp_ack_method_of("GET", "/api/v1/user"), RP_ACK_NONE);
    CHECK_EQ_INT(rp_ack_method_of("POST", NULL), RP_ACK_NONE);
}

static void test_pb_reader(void)
{
    struct msg m = {{0}, 0};
    put_u(&m, 1, 300);
    put_s(&m, 2, "ab", 2);
    struct fld_cursor c = {m.b, m.n};
    struct fld_value f;
    CHECK_EQ_INT(fld_next(&c, &f), 1);
    CHECK_EQ_INT(f.field, 1);
    CHECK_EQ_INT(f.u, 300);
    CHECK_EQ_INT(fld_next(&c, &f), 1);
    CHECK_EQ_INT(f.wire_type, FLD_BYTES);
    CHECK_EQ_MEM(f.data, f.n, "ab", 2);
    CHECK_EQ_INT(fld_next(&c, &f), 0);
    /* a length past the end, a group, field number 0, an 11-byte varint */
    const uint8_t past[] = {0x12, 0x05, 'a'}, group[] = {0x0b}, zero[] = {0x00, 0x01};
    const uint8_t longv[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    struct fld_cursor b1 = {past, sizeof(past)}, b2 = {group, sizeof(group)},
                      b3 = {zero, sizeof(zero)}, b4 = {longv, sizeof(longv)};
    CHECK_EQ_INT(fld_next(&b1, &f), H2R_ERR_TRUNCATED);
    CHECK_EQ_INT(fld_next(&b2, &f), H2R_ERR_FORMAT);
    CHECK_EQ_INT(fld_next(&b3, &f), H2R_ERR_FORMAT);
    CHECK(fld_next(&b4, &f) < 0);
    /* gRPC framing: compressed and short messages are refused */
    const uint8_t *p;
    size_t n;
    const uint8_t comp[] = {1, 0, 0, 0, 0}, shortm[] = {0, 0, 0, 0, 9, 1};
    CHECK_EQ_INT(rp_grpc_message(comp, sizeof(comp), &p, &n), H2R_ERR_FORMAT);
    CHECK_EQ_INT(rp_grpc_message(shortm, sizeof(shortm), &p, &n), H2R_ERR_FORMAT);
}

static void test_create_user(void)
{
    struct msg user = {{0}, 0}, resp = {{0}, 0}, body, req = {{0}, 0}, reqb;
    put_u(&user, 1, 42); /* 0.24+: uint64 id */
    put_s(&user, 2, "alice", 5);
    put_s(&resp, 1, user.b, user.n);
    grpc(&body, &resp);
    put_s(&req, 1, "alice-req", 9);
    grpc(&reqb, &req);
    struct rp_ack_entity e;
    CHECK_EQ_INT(rp_ack_parse(RP_ACK_CREATE_USER, reqb.b, reqb.n, body.b, body.n, &e), 0);
    CHECK_EQ_STR(e.kind, "user");
    CHECK_EQ_STR(e.id, "42");
    CHECK_EQ_STR(e.name, "alice");
    CHECK_EQ_INT(e.source, H2R_ACK_SRC_RESPONSE);

    /* 0.23: the id is a string */
    struct msg u23 = {{0}, 0}, r23 = {{0}, 0}, b23;
    put_s(&u23, 1, "7", 1);
    put_s(&u23, 2, "bob", 3);
    put_s(&r23, 1, u23.b, u23.n);
    grpc(&b23, &r23);
    CHECK_EQ_INT(rp_ack_parse(RP_ACK_CREATE_USER, NULL, 0, b23.b, b23.n, &e), 0);
    CHECK_EQ_STR(e.id, "7");
    CHECK_EQ_STR(e.name, "bob");

    /* response cut short (not kept in full): the request names the user */
    CHECK_EQ_INT(rp_ack_parse(RP_ACK_CREATE_USER, reqb.b, reqb.n, body.b, body.n - 2, &e), 0);
    CHECK_EQ_STR(e.name, "alice-req");
    CHECK_EQ_STR(e.id, "");
    CHECK_EQ_INT(e.source, H2R_ACK_SRC_REQUEST);
    CHECK_EQ_INT(rp_ack_parse(RP_ACK_CREATE_USER, NULL, 0, NULL, 0, &e), H2R_ERR_FORMAT);
}

static void test_pak_and_api_key(void)
{
    const char *key = "hskey-auth-abcdefghijkl-0123456789";
    struct msg pak = {{0}, 0}, resp = {{0}, 0}, body;
    put_s(&pak, 1, "\x08\x01", 2); /* 0.26+: the user as a message */
    put_u(&pak, 2, 9);
    put_s(&pak, 3, key, strlen(key));
    put_s(&resp, 1, pak.b, pak.n);
    grpc(&body, &resp);
    struct rp_ack_entity e;
    CHECK_EQ_INT(rp_ack_parse(RP_ACK_CREATE_PAK, NULL, 0, body.b, body.n, &e), 0);
    CHECK_EQ_STR(e.kind, "pre_auth_key");
    CHECK_EQ_STR(e.id, "9");
    CHECK_EQ_STR(e.key, "hskey-auth-abcdefghijkl-***"); /* the secret never reaches a run file */

    struct msg ak = {{0}, 0}, akb;
    put_s(&ak, 1, "Abc1234.secretpart", 18);
    grpc(&akb, &ak);
    CHECK_EQ_INT(rp_ack_parse(RP_ACK_CREATE_API_KEY, NULL, 0, akb.b, akb.n, &e), 0);
    CHECK_EQ_STR(e.kind, "api_key");
    CHECK_EQ_STR(e.prefix, "Abc1234");
    CHECK_EQ_STR(e.key, "");
    /* a 0.23 pre-auth key (48 hex, stored in clear) is dropped: the id identifies it */
    struct msg old = {{0}, 0}, oresp = {{0}, 0}, ob;
    put_s(&old, 1, "alice", 5);
    put_s(&old, 2, "12", 2);
    put_s(&old, 3, "0123456789abcdef0123456789abcdef0123456789abcdef", 48);
    put_s(&oresp, 1, old.b, old.n);
    grpc(&ob, &oresp);
    CHECK_EQ_INT(rp_ack_parse(RP_ACK_CREATE_PAK, NULL, 0, ob.b, ob.n, &e), 0);
    CHECK_EQ_STR(e.id, "12");
    CHECK_EQ_STR(e.key, "");
}

static void test_rest_and_ts(void)
{
    const char *rest = "{\"user\":{\"id\":\"5\",\"name\":\"carol\"}}";
    struct rp_ack_entity e;
    CHECK_EQ_INT(rp_ack_parse(RP_ACK_REST_USER, NULL, 0, (const uint8_t *)rest, strlen(rest), &e),
                 0);
    CHECK_EQ_STR(e.id, "5");
    CHECK_EQ_STR(e.name, "carol");
    char reg[256];
    snprintf(reg, sizeof(reg),
             "{\"NodeKey\":\"nodekey:%064d\",\"Hostinfo\":{\"Hostname\":\"h2r-3\"}}", 0);
    CHECK_EQ_INT(rp_ack_parse_ts_register((const uint8_t *)reg, strlen(reg), &e), 0);
    CHECK_EQ_STR(e.kind, "node");
    CHECK(strncmp(e.node_key, "nodekey:000", 11) == 0);
    CHECK_EQ_STR(e.hostname, "h2r-3");
    CHECK_EQ_INT(rp_ack_parse_ts_register((const uint8_t *)"{}", 2, &e), H2R_ERR_FORMAT);
}

static void test_queue(void)
{
    rp_ack_reset();
    struct rp_ack_entity e;
    memset(&e, 0, sizeof(e));
    snprintf(e.kind, sizeof(e.kind), "user");
    snprintf(e.name, sizeof(e.name), "dave");
    rp_ack_push(1, 10, 2, 500, &e);
    rp_ack_node_registered(1, 12, 3, 600, "not json", 8);
    struct rp_ack_item *items;
    uint64_t dropped;
    size_t n = rp_ack_take(&items, &dropped);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(dropped, 1);
    struct h2r_run_ack a;
    rp_ack_to_run(&items[0], &a);
    CHECK_EQ_INT(a.section, 1);
    CHECK_EQ_INT(a.exchange_id, 10);
    CHECK_EQ_STR(a.name, "dave");
    CHECK(a.id == NULL);
    json_t *list = json_array();
    CHECK_EQ_INT(rp_ack_json_append(list, &a), 0);
    json_t *o = json_array_get(list, 0);
    CHECK_EQ_STR(json_string_value(json_object_get(o, "kind")), "user");
    CHECK_EQ_STR(json_string_value(json_object_get(o, "name")), "dave");
    CHECK(json_object_get(o, "id") == NULL);
    json_decref(list);
    free(items);
    CHECK_EQ_INT(rp_ack_take(&items, &dropped), 0);
    free(items);
    rp_ack_reset();
}

int main(void)
{
    test_methods();
    test_pb_reader();
    test_create_user();
    test_pak_and_api_key();
    test_rest_and_ts();
    test_queue();
    return check_summary("test_rp_ack");
}
