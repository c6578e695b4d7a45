/*
 * Redaction: header values (Authorization keeps its scheme, cookies keep
 * their names), query and form parameters, JSON fields at any depth, stable
 * placeholders per value, and withholding bodies that cannot be inspected.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cap_redact.h"

#define H(n, v)                                                                                    \
    {                                                                                              \
        (const uint8_t *)(n), (const uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1                   \
    }

static char *value_of(const struct h2r_hdr *v, size_t n, const char *name)
{
    static char buf[1024];
    for (size_t i = 0; i < n; i++) {
        if (v[i].name_len == strlen(name) && memcmp(v[i].name, name, v[i].name_len) == 0) {
            size_t l = v[i].value_len < sizeof(buf) - 1 ? v[i].value_len : sizeof(buf) - 1;
            memcpy(buf, v[i].value, l);
            buf[l] = '\0';
            return buf;
        }
    }
    return NULL;
}

static int contains(const void *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    const uint8_t *h = hay;
    for (size_t i = 0; k <= n && i + k <= n; i++) {
        if (memcmp(h + i, needle, k) == 0)
            return 1;
    }
    return 0;
}

static void test_headers(void)
{
    struct cap_redactor *r = cap_redactor_new(NULL, NULL);
    struct cap_redact_mem mem = {NULL, 0, 0};
    struct cap_redact_counts c = {0, 0, 0};
    CHECK(r != NULL);
    if (!r)
        return;

    const struct h2r_hdr req[] = {
        H(":method", "GET"),
        H(":path", "/x?token=abc&q=1&API_KEY=zz&empty="),
        H("authorization", "Bearer xyz"),
        H("cookie", "a=1; b=two"),
        H("x-api-key", "k1"),
        H("accept", "*/*"),
    };
    const struct h2r_hdr *v = req;
    CHECK_EQ_INT(cap_redact_headers(r, &v, 6, &mem, &c), 0);
    CHECK(v != req);
    CHECK_EQ_STR(value_of(v, 6, ":path"),
                 "/x?token=$H2R{token_1}&q=1&API_KEY=$H2R{api_key_1}&empty=");
    CHECK_EQ_STR(value_of(v, 6, "authorization"), "Bearer $H2R{authorization_1}");
    CHECK_EQ_STR(value_of(v, 6, "cookie"), "a=$H2R{cookie_a_1}; b=$H2R{cookie_b_1}");
    CHECK_EQ_STR(value_of(v, 6, "x-api-key"), "$H2R{x-api-key_1}");
    CHECK_EQ_STR(value_of(v, 6, "accept"), "*/*");
    CHECK_EQ_INT(c.values, 6);
    /* the originals are untouched */
    CHECK_EQ_STR(value_of(req, 6, "authorization"), "Bearer xyz");

    /* same value, same placeholder; a new value gets the next number */
    const struct h2r_hdr resp[] = {
        H(":status", "200"),
        H("set-cookie", "b=two; Path=/; HttpOnly"),
        H("set-cookie", "a=other; Max-Age=60"),
    };
    v = resp;
    CHECK_EQ_INT(cap_redact_headers(r, &v, 3, &mem, &c), 0);
    CHECK_EQ_STR(value_of(&v[1], 1, "set-cookie"), "b=$H2R{cookie_b_1}; Path=/; HttpOnly");
    CHECK_EQ_STR(value_of(&v[2], 1, "set-cookie"), "a=$H2R{cookie_a_2}; Max-Age=60");

    const struct h2r_hdr again[] = {
        H("authorization", "Bearer abc"),
        H("authorization", "Bearer xyz"),
        H("proxy-authorization", "Basic dXNlcjpwYXNz"),
        H("authorization", "opaque-token"),
    };
    v = again;
    CHECK_EQ_INT(cap_redact_headers(r, &v, 4, &mem, &c), 0);
    CHECK_EQ_STR(value_of(&v[0], 1, "authorization"), "Bearer $H2R{authorization_2}");
    CHECK_EQ_STR(value_of(&v[1], 1, "authorization"), "Bearer $H2R{authorization_1}");
    CHECK_EQ_STR(value_of(&v[2], 1, "proxy-authorization"), "Basic $H2R{proxy-authorization_1}");
    CHECK_EQ_STR(value_of(&v[3], 1, "authorization"), "$H2R{authorization_3}");

    /* nothing to redact: the list is not copied */
    const struct h2r_hdr plain[] = {H(":path", "/plain"), H("accept", "*/*")};
    v = plain;
    CHECK_EQ_INT(cap_redact_headers(r, &v, 2, &mem, &c), 0);
    CHECK(v == plain);

    cap_redact_mem_free(&mem);
    cap_redactor_free(r);

    /* custom lists; "" disables field redaction */
    r = cap_redactor_new("X-Secret", "");
    CHECK(r != NULL);
    if (!r)
        return;
    const struct h2r_hdr custom[] = {H("x-secret", "s"), H("authorization", "Bearer q"),
                                     H(":path", "/?token=t")};
    v = custom;
    CHECK_EQ_INT(cap_redact_headers(r, &v, 3, &mem, &c), 0);
    CHECK_EQ_STR(value_of(v, 3, "x-secret"), "$H2R{x-secret_1}");
    CHECK_EQ_STR(value_of(v, 3, "authorization"), "Bearer q");
    CHECK_EQ_STR(value_of(v, 3, ":path"), "/?token=t");
    cap_redact_mem_free(&mem);
    cap_redactor_free(r);
}

static void test_bodies(void)
{
    struct cap_redactor *r = cap_redactor_new(NULL, NULL);
    struct cap_redact_mem mem = {NULL, 0, 0};
    struct cap_redact_counts c = {0, 0, 0};
    const struct h2r_hdr json_ct[] = {H("content-type", "application/json; charset=utf-8")};
    const struct h2r_hdr vnd_ct[] = {H("content-type", "application/vnd.api+json")};
    const struct h2r_hdr form_ct[] = {H("content-type", "application/x-www-form-urlencoded")};
    const struct h2r_hdr text_ct[] = {H("content-type", "text/plain")};
    const struct h2r_hdr gz[] = {H("content-type", "application/json"),
                                 H("content-encoding", "gzip")};
    const uint8_t *b;
    size_t n;
    CHECK(r != NULL);
    if (!r)
        return;

    /* nested JSON, case-insensitive names, numbers, arrays */
    static const char nested[] =
        "{\"user\": \"bob\", \"auth\": {\"Password\": \"pw\", \"list\": [{\"api_key\": \"K\"}, "
        "{\"key\": 12345}]}, \"AuthKey\": \"tskey-auth-abc\", \"token\": null, \"n\": 1}";
    b = (const uint8_t *)nested;
    n = strlen(nested);
    CHECK_EQ_INT(cap_redact_body(r, json_ct, 1, &b, &n, n, &mem, &c), 0);
    CHECK_EQ_MEM(b, n,
                 "{\"user\":\"bob\",\"auth\":{\"Password\":\"$H2R{password_1}\",\"list\":"
                 "[{\"api_key\":\"$H2R{api_key_1}\"},{\"key\":\"$H2R{key_1}\"}]},"
                 "\"AuthKey\":\"$H2R{authkey_1}\",\"token\":null,\"n\":1}",
                 strlen("{\"user\":\"bob\",\"auth\":{\"Password\":\"$H2R{password_1}\",\"list\":"
                        "[{\"api_key\":\"$H2R{api_key_1}\"},{\"key\":\"$H2R{key_1}\"}]},"
                        "\"AuthKey\":\"$H2R{authkey_1}\",\"token\":null,\"n\":1}"));
    CHECK(!contains(b, n, "tskey-auth-abc"));
    CHECK(!contains(b, n, "12345"));
    CHECK_EQ_INT(c.values, 4);

    /* same secret in a later body: same placeholder; a new one: next number */
    static const char again[] = "[{\"authkey\":\"tskey-auth-abc\"},{\"authkey\":\"tskey-2\"}]";
    b = (const uint8_t *)again;
    n = strlen(again);
    CHECK_EQ_INT(cap_redact_body(r, vnd_ct, 1, &b, &n, n, &mem, &c), 0);
    CHECK_EQ_MEM(b, n, "[{\"authkey\":\"$H2R{authkey_1}\"},{\"authkey\":\"$H2R{authkey_2}\"}]",
                 strlen("[{\"authkey\":\"$H2R{authkey_1}\"},{\"authkey\":\"$H2R{authkey_2}\"}]"));

    /* JSON without secrets stays byte-exact (same buffer) */
    static const char clean[] = "{ \"a\" : 1.10 }";
    b = (const uint8_t *)clean;
    n = strlen(clean);
    CHECK_EQ_INT(cap_redact_body(r, json_ct, 1, &b, &n, n, &mem, &c), 0);
    CHECK(b == (const uint8_t *)clean);

    /* truncated JSON body: dropped, counted */
    static const char trunc[] = "{\"password\":\"hunt";
    b = (const uint8_t *)trunc;
    n = strlen(trunc);
    CHECK_EQ_INT(cap_redact_body(r, json_ct, 1, &b, &n, 1000, &mem, &c), 0);
    CHECK(b == NULL);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(c.bodies_dropped, 1);

    /* declared JSON that does not parse: dropped too */
    static const char bad[] = "{\"password\": hunter2}";
    b = (const uint8_t *)bad;
    n = strlen(bad);
    CHECK_EQ_INT(cap_redact_body(r, json_ct, 1, &b, &n, n, &mem, &c), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(c.bodies_dropped, 2);

    /* compressed JSON cannot be inspected: dropped */
    static const char zipped[] = "\x1f\x8b\x08\x00";
    b = (const uint8_t *)zipped;
    n = 4;
    CHECK_EQ_INT(cap_redact_body(r, gz, 2, &b, &n, 4, &mem, &c), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(c.bodies_dropped, 3);

    /* form body */
    static const char form[] = "user=a&password=p%20w&client_secret=s";
    b = (const uint8_t *)form;
    n = strlen(form);
    CHECK_EQ_INT(cap_redact_body(r, form_ct, 1, &b, &n, n, &mem, &c), 0);
    CHECK_EQ_MEM(b, n, "user=a&password=$H2R{password_2}&client_secret=$H2R{client_secret_1}",
                 strlen("user=a&password=$H2R{password_2}&client_secret=$H2R{client_secret_1}"));

    /* no content-type but parses as JSON: redacted; text/plain: left alone */
    static const char sniff[] = " {\"token\":\"t0k\"}";
    b = (const uint8_t *)sniff;
    n = strlen(sniff);
    CHECK_EQ_INT(cap_redact_body(r, NULL, 0, &b, &n, n, &mem, &c), 0);
    CHECK_EQ_MEM(b, n, "{\"token\":\"$H2R{token_1}\"}", strlen("{\"token\":\"$H2R{token_1}\"}"));
    b = (const uint8_t *)sniff;
    n = strlen(sniff);
    CHECK_EQ_INT(cap_redact_body(r, text_ct, 1, &b, &n, n, &mem, &c), 0);
    CHECK(b == (const uint8_t *)sniff);

    cap_redact_mem_free(&mem);
    cap_redactor_free(r);
}

static void test_exchange(void)
{
    struct cap_redactor *r = cap_redactor_new(NULL, NULL);
    struct cap_redact_mem mem = {NULL, 0, 0};
    struct cap_redact_counts c = {0, 0, 0};
    const struct h2r_hdr req[] = {H(":method", "POST"), H(":path", "/login"),
                                  H("content-type", "application/json")};
    const struct h2r_hdr resp[] = {H(":status", "200"), H("content-type", "application/json")};
    static const char reqb[] = "{\"password\":\"hunter2\"}";
    static const char respb[] = "{\"access_token\":\"eyJabc\",\"expires\":3600}";
    struct h2r_exchange x;
    CHECK(r != NULL);
    if (!r)
        return;
    memset(&x, 0, sizeof(x));
    x.req_hdrs = req;
    x.n_req_hdrs = 3;
    x.req_body = (const uint8_t *)reqb;
    x.req_body_stored = strlen(reqb);
    x.req_body_len = strlen(reqb);
    x.resp_hdrs = resp;
    x.n_resp_hdrs = 2;
    x.resp_body = (const uint8_t *)respb;
    x.resp_body_stored = 20; /* truncated at the storage cap */
    x.resp_body_len = strlen(respb);
    x.flags = H2R_EXCH_F_RESP_BODY_TRUNC;
    CHECK_EQ_INT(cap_redact_exchange(r, &x, &mem, &c), 0);
    CHECK(x.flags & H2R_EXCH_F_REDACTED);
    CHECK_EQ_MEM(x.req_body, x.req_body_stored, "{\"password\":\"$H2R{password_1}\"}",
                 strlen("{\"password\":\"$H2R{password_1}\"}"));
    CHECK_EQ_INT(x.req_body_len, strlen(reqb));
    CHECK_EQ_INT(x.resp_body_stored, 0);
    CHECK_EQ_INT(x.resp_body_len, strlen(respb));
    CHECK_EQ_INT(c.values, 1);
    CHECK_EQ_INT(c.bodies_dropped, 1);
    cap_redact_mem_free(&mem);

    /* nothing secret: no flag */
    memset(&x, 0, sizeof(x));
    x.req_hdrs = req;
    x.n_req_hdrs = 2;
    CHECK_EQ_INT(cap_redact_exchange(r, &x, &mem, &c), 0);
    CHECK_EQ_INT(x.flags, 0);
    cap_redact_mem_free(&mem);
    cap_redactor_free(r);
    cap_redactor_free(NULL);
}

int main(void)
{
    test_headers();
    test_bodies();
    test_exchange();
    return check_summary("test_cap_redact");
}
