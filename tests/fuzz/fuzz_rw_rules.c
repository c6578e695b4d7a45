/*
 * libFuzzer target: the rewrite rules parser and everything a parsed
 * ruleset runs. Input is rules text, optionally followed by a NUL byte and
 * a request body. A ruleset that parses is checked and applied to three
 * fixed exchanges (JSON, form and placeholder-laden), fed a response for
 * its captures, and applied again so captured variables are used.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rw_rules.h"

#define HDR(n, v)                                                                                  \
    {                                                                                              \
        (const uint8_t *)(n), (const uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1                   \
    }

static volatile size_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run(struct rw_session *s, const struct rw_ruleset *rs, const struct h2r_exchange *x)
{
    char err[256];
    struct rw_request req;
    (void)rw_check_exchange(rs, x, err, sizeof(err));
    if (rw_apply(s, x, &req, err, sizeof(err)) == 0) {
        for (size_t i = 0; i < req.n_hdrs; i++)
            sink += req.hdrs[i].name_len + req.hdrs[i].value_len;
        if (req.body_len)
            sink += req.body[0] + req.body[req.body_len - 1];
        rw_request_release(s, &req);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct h2r_hdr json_h[] = {
        HDR(":method", "POST"),
        HDR(":scheme", "http"),
        HDR(":path", "/api/v1/user/alice?page=2&token=$H2R{token_1}&flag"),
        HDR(":authority", "prod.example"),
        HDR("authorization", "Bearer $H2R{authorization_1}"),
        HDR("content-type", "application/json"),
        HDR("content-length", "10"),
    };
    static const struct h2r_hdr form_h[] = {
        HDR(":method", "PUT"),
        HDR(":path", "/f?x=%24H2R%7Bkey_3%7D"),
        HDR("content-type", "application/x-www-form-urlencoded"),
        HDR("cookie", "a=b"),
    };
    static const struct h2r_hdr resp_h[] = {
        HDR(":status", "201"),
        HDR("location", "/nodes/77"),
        HDR("x-api-key", "k-123"),
    };
    static const char default_body[] =
        "{\"user\":{\"name\":\"alice\",\"AuthKey\":\"$H2R{authkey_2}\"},\"items\":[{\"id\":1},"
        "{\"id\":2,\"Key\":[1,{\"Key\":null}]}],\"n\":1.5e3}";
    static const char form_body[] = "user=bob&pw=$H2R{pw_1}";
    static const char resp_body[] =
        "{\"node\":{\"id\":987,\"key\":\"nodekey:abc\"},\"list\":[1,2]}";

    const uint8_t *nul = memchr(data, '\0', size);
    size_t rules_len = nul ? (size_t)(nul - data) : size;
    const uint8_t *body = nul ? nul + 1 : (const uint8_t *)default_body;
    size_t body_len = nul ? size - rules_len - 1 : sizeof(default_body) - 1;

    struct rw_ruleset *rs = NULL;
    char err[256];
    if (rw_ruleset_new(&rs) != 0)
        return 0;
    if (rw_ruleset_parse(rs, (const char *)data, rules_len, "fuzz", err, sizeof(err)) != 0)
        goto out;
    (void)rw_ruleset_set_var(rs, "token=t&k n", err, sizeof(err));
    (void)rw_ruleset_set_var(rs, "authorization_1=s3cr3t", err, sizeof(err));
    (void)rw_ruleset_set_var(rs, "authkey=k\"\\1", err, sizeof(err));
    (void)rw_ruleset_set_var(rs, "key=v", err, sizeof(err));
    (void)rw_ruleset_set_var(rs, "name=bob", err, sizeof(err));

    struct h2r_exchange x1 = {.id = 1,
                              .req_hdrs = json_h,
                              .n_req_hdrs = 7,
                              .req_body = body,
                              .req_body_stored = body_len,
                              .req_body_len = body_len};
    struct h2r_exchange x2 = {.id = 2,
                              .req_hdrs = form_h,
                              .n_req_hdrs = 4,
                              .req_body = (const uint8_t *)form_body,
                              .req_body_stored = sizeof(form_body) - 1};
    struct h2r_exchange x3 = {.id = 3, .req_hdrs = json_h, .n_req_hdrs = 3};

    struct rw_session *s = rw_session_new(rs, 0x1234);
    if (!s)
        goto out;
    run(s, rs, &x1);
    run(s, rs, &x2);
    for (int i = 0; i < 2; i++) {
        const struct h2r_exchange *x = i ? &x2 : &x1;
        if (rw_wants_response(s, x))
            rw_observe_response(s, x, 201, resp_h, 3, (const uint8_t *)resp_body,
                                sizeof(resp_body) - 1);
    }
    /* the fuzzed body also serves as a response */
    rw_observe_response(s, &x3, 200, resp_h, 2, body, body_len);
    run(s, rs, &x1);
    run(s, rs, &x3);
    struct rw_stats st;
    rw_session_stats(s, &st);
    sink += (size_t)st.rewrites;
    rw_session_free(s);
out:
    rw_ruleset_free(rs);
    return 0;
}
