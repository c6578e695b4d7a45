/*
 * Unit tests for request rewriting (replay/rw_*.c): rule parse errors with
 * line:column, placeholder filling, header/path/query/JSON rewrites,
 * per-run unique values, captures from responses, content-length fix-up.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "rw_rules.h"

#define HDR(n, v)                                                                                  \
    {                                                                                              \
        (const uint8_t *)(n), (const uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1                   \
    }

static char errbuf[512];

/* Value of header name in req as a NUL-terminated copy in a static buffer, or NULL. */
static const char *hval(const struct rw_request *req, const char *name)
{
    static char buf[4096];
    for (size_t i = 0; i < req->n_hdrs; i++) {
        const struct h2r_hdr *h = &req->hdrs[i];
        if (h->name_len == strlen(name) && memcmp(h->name, name, h->name_len) == 0) {
            size_t n = h->value_len < sizeof(buf) - 1 ? h->value_len : sizeof(buf) - 1;
            memcpy(buf, h->value, n);
            buf[n] = '\0';
            return buf;
        }
    }
    return NULL;
}

static const char *body_str(const struct rw_request *req)
{
    static char buf[4096];
    size_t n = req->body_len < sizeof(buf) - 1 ? req->body_len : sizeof(buf) - 1;
    if (n)
        memcpy(buf, req->body, n);
    buf[n] = '\0';
    return buf;
}

static struct rw_ruleset *rules(const char *text)
{
    struct rw_ruleset *rs = NULL;
    CHECK_EQ_INT(rw_ruleset_new(&rs), 0);
    int rc = rw_ruleset_parse(rs, text, strlen(text), "t.rules", errbuf, sizeof(errbuf));
    if (rc != 0)
        fprintf(stderr, "unexpected parse error: %s\n", errbuf);
    CHECK_EQ_INT(rc, 0);
    return rs;
}

/* Parses text expecting failure; returns the message (static). */
static const char *parse_err(const char *text, int want_rc)
{
    struct rw_ruleset *rs = NULL;
    CHECK_EQ_INT(rw_ruleset_new(&rs), 0);
    errbuf[0] = '\0';
    int rc = rw_ruleset_parse(rs, text, strlen(text), "t.rules", errbuf, sizeof(errbuf));
    CHECK_EQ_INT(rc, want_rc);
    CHECK_EQ_INT(rw_ruleset_count(rs), 0);
    rw_ruleset_free(rs);
    return errbuf;
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void test_parse_errors(void)
{
    const char *m;
    m = parse_err("# fine\nheader x-a = ok\n  heder x = y\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:3:3: unknown statement 'heder'"));
    m = parse_err("header x-a = \"open\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:14: unterminated string"));
    m = parse_err("path \"^/a(\" -> /b\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:6: bad regex"));
    m = parse_err("header x = \"ab{{nope}}\"\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:15: unknown template function"));
    m = parse_err("path ^/u/([0-9]+)$ -> /users/\\2\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:23: \\2 but the regex has 1 group(s)"));
    m = parse_err("header x = \\1\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:12: \\N refers"));
    m = parse_err("header x = v when colour red\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:19: unknown condition"));
    m = parse_err("header x = v when method\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:25: missing methods"));
    m = parse_err("header x = v status 200\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:14: unexpected 'status'"));
    m = parse_err("header :path := /x\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:8: pseudo-headers can only be replaced"));
    m = parse_err("json .a..b = 1\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:9: empty key"));
    m = parse_err("json .a.** = 1\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:9: '**' must be followed"));
    m = parse_err("let a = x\nlet a = y\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:2:5: 'a' already has a let at t.rules:1"));
    m = parse_err("capture id from body .x\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:17: expected 'json' or 'header'"));
    m = parse_err("path \"(a)\\1\" -> x\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:10: back-references"));
    m = parse_err("path \"(a{200}){200}\" -> x\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:15: repetitions make this regex too large"));
    m = parse_err("path a++ -> x\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:8: stacked repetition operators"));
    m = parse_err("path \"(^|/)(a*)*(b*)*(c*)*(d*)*(e*)*(f*)*(g*)*(h*)*(i*)*(j*)*(k*)*\" -> x\n",
                  H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:66: too many repeated groups"));
    m = parse_err("path a{256} -> x\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:7: repetition count above 255"));
    m = parse_err("header x = \"a\\qb\"\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:14: unknown escape"));
    m = parse_err("header x = \"v\"w\n", H2R_ERR_FORMAT);
    CHECK(starts_with(m, "t.rules:1:15: expected a space after the closing quote"));

    /* a long line is a limit, not a format error */
    size_t n = RW_MAX_LINE + 10;
    char *big = malloc(n + 2);
    memset(big, 'a', n);
    big[n] = '\n';
    big[n + 1] = '\0';
    m = parse_err(big, H2R_ERR_LIMIT);
    CHECK(strstr(m, "t.rules:1:") != NULL);
    free(big);

    /* a failed parse keeps earlier statements, drops its own */
    struct rw_ruleset *rs = rules("header a = 1\n");
    CHECK(rw_ruleset_parse(rs, "header b = 2\nbogus\n", 19, "two", errbuf, sizeof(errbuf)) ==
          H2R_ERR_FORMAT);
    CHECK(starts_with(errbuf, "two:2:1:"));
    CHECK_EQ_INT(rw_ruleset_count(rs), 1);
    rw_ruleset_free(rs);

    /* comments, blank lines, CRLF, tabs */
    rs = rules("\r\n# c\n\theader  x-a\t=  \"a b\"   # trailing\r\n\n");
    CHECK_EQ_INT(rw_ruleset_count(rs), 1);
    rw_ruleset_free(rs);
}

static void test_placeholders(void)
{
    static const struct h2r_hdr hdrs[] = {
        HDR(":method", "POST"),
        HDR(":path", "/login?token=$H2R{token_1}&x=%24H2R%7Btoken_1%7D"),
        HDR("authorization", "Bearer $H2R{authorization_1}"),
        HDR("content-type", "application/json"),
        HDR("content-length", "29"),
    };
    static const char body[] = "{\"AuthKey\":\"$H2R{authkey_2}\"}";
    struct h2r_exchange x = {.id = 42,
                             .req_hdrs = hdrs,
                             .n_req_hdrs = 5,
                             .req_body = (const uint8_t *)body,
                             .req_body_stored = 29,
                             .req_body_len = 29};
    struct rw_ruleset *rs = rules("");

    /* nothing set: the check names the placeholder, the exchange and where */
    CHECK_EQ_INT(rw_check_exchange(rs, &x, errbuf, sizeof(errbuf)), H2R_ERR_ARG);
    CHECK(strstr(errbuf, "exchange 42") != NULL);
    CHECK(strstr(errbuf, "$H2R{token_1}") != NULL);
    CHECK(strstr(errbuf, "header :path") != NULL);
    CHECK(strstr(errbuf, "--set token=...") != NULL);

    CHECK_EQ_INT(rw_ruleset_set_var(rs, "token=a b+c", errbuf, sizeof(errbuf)), 0);
    CHECK_EQ_INT(rw_check_exchange(rs, &x, errbuf, sizeof(errbuf)), H2R_ERR_ARG);
    CHECK(strstr(errbuf, "$H2R{authorization_1} in header authorization") != NULL);

    /* exact name wins over the base name */
    CHECK_EQ_INT(rw_ruleset_set_var(rs, "authorization=base", errbuf, sizeof(errbuf)), 0);
    CHECK_EQ_INT(rw_ruleset_set_var(rs, "authorization_1=s3cr=t", errbuf, sizeof(errbuf)), 0);
    CHECK_EQ_INT(rw_check_exchange(rs, &x, errbuf, sizeof(errbuf)), H2R_ERR_ARG);
    CHECK(strstr(errbuf, "authkey_2} in the request body") != NULL);

    CHECK_EQ_INT(rw_ruleset_set_var(rs, "authkey=k\"1", errbuf, sizeof(errbuf)), 0);
    CHECK_EQ_INT(rw_check_exchange(rs, &x, errbuf, sizeof(errbuf)), 0);

    struct rw_session *s = rw_session_new(rs, 1);
    struct rw_request req;
    CHECK_EQ_INT(rw_apply(s, &x, &req, errbuf, sizeof(errbuf)), 0);
    CHECK_EQ_STR(hval(&req, "authorization"), "Bearer s3cr=t");
    /* :path values are percent-encoded, JSON bodies escaped */
    CHECK_EQ_STR(hval(&req, ":path"), "/login?token=a%20b%2Bc&x=a%20b%2Bc");
    CHECK_EQ_STR(body_str(&req), "{\"AuthKey\":\"k\\\"1\"}");
    CHECK_EQ_STR(hval(&req, "content-length"), "18");
    struct rw_stats st;
    rw_session_stats(s, &st);
    CHECK_EQ_INT(st.placeholders, 4);
    rw_request_release(s, &req);
    CHECK(req.hdrs == NULL);
    rw_request_release(s, &req); /* released twice: no-op */

    /* a header value may not gain CR/LF */
    CHECK_EQ_INT(rw_ruleset_set_var(rs, "authorization_1=a\r\nx: y", errbuf, sizeof(errbuf)), 0);
    CHECK_EQ_INT(rw_apply(s, &x, &req, errbuf, sizeof(errbuf)), H2R_ERR_ARG);
    CHECK(strstr(errbuf, "CR, LF or NUL") != NULL);
    CHECK(req.hdrs == NULL);

    rw_session_free(s);
    rw_ruleset_free(rs);

    /* set_var argument errors */
    CHECK_EQ_INT(rw_ruleset_new(&rs), 0);
    CHECK_EQ_INT(rw_ruleset_set_var(rs, "novalue", errbuf, sizeof(errbuf)), H2R_ERR_ARG);
    CHECK_EQ_INT(rw_ruleset_set_var(rs, "=v", errbuf, sizeof(errbuf)), H2R_ERR_ARG);
    CHECK_EQ_INT(rw_ruleset_set_var(rs, "a b=v", errbuf, sizeof(errbuf)), H2R_ERR_ARG);
    char *big = malloc(RW_MAX_VALUE + 8);
    memcpy(big, "k=", 2);
    memset(big + 2, 'v', RW_MAX_VALUE + 1);
    big[RW_MAX_VALUE + 3] = '\0';
    CHECK_EQ_INT(rw_ruleset_set_var(rs, big, errbuf, sizeof(errbuf)), H2R_ERR_ARG);
    free(big);
    rw_ruleset_free(rs);
}

static void test_load_vars(void)
{
    char path[] = "/tmp/test_rw_varsXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    static const char text[] = "# secrets\n\n  authkey=abc=def\r\nspaced = v \nbroken line\n";
    CHECK_EQ_INT(write(fd, text, sizeof(text) - 1), (long)(sizeof(text) - 1));
    close(fd);

    struct rw_ruleset *rs = rules("");
    CHECK_EQ_INT(rw_ruleset_load_vars(rs, path, errbuf, sizeof(errbuf)), H2R_ERR_ARG);
    char want[128];
    snprintf(want, sizeof(want), "%s:5: expected NAME=VALUE", path);
    CHECK_EQ_STR(errbuf, want);
    struct rw_session *s = rw_session_new(rs, 0);
    size_t len = 0;
    CHECK_EQ_STR(rw_session_var(s, "authkey", &len), "abc=def");
    CHECK_EQ_STR(rw_session_var(s, "spaced", &len), " v ");
    rw_session_free(s);
    rw_ruleset_free(rs);
    unlink(path);

    CHECK_EQ_INT(rw_ruleset_new(&rs), 0);
    CHECK_EQ_INT(rw_ruleset_load_vars(rs, "/nonexistent/vars", errbuf, sizeof(errbuf)), H2R_ERR_IO);
    CHECK_EQ_INT(rw_ruleset_load(rs, "/nonexistent/rules", errbuf, sizeof(errbuf)), H2R_ERR_IO);
    rw_ruleset_free(rs);
}

static void test_headers(void)
{
    static const struct h2r_hdr hdrs[] = {
        HDR("user-agent", "curl/8"), /* out of order on purpose: output puts pseudo first */
        HDR(":method", "POST"),
        HDR(":path", "/api/v1/user/alice?x=1"),
        HDR(":authority", "prod.example"),
        HDR("x-trace", "t1"),
        HDR("cookie", "a=b"),
    };
    struct h2r_exchange x = {.id = 1, .req_hdrs = hdrs, .n_req_hdrs = 6};
    struct rw_ruleset *rs = rules("header :authority = staging.example\n"
                                  "header user-agent = \"h2replay ({{orig}})\"\n"
                                  "header cookie delete\n"
                                  "header X-Run := \"{{run}}\"\n"
                                  "header x-trace = never when method GET\n"
                                  "header x-user := \\1 when method post,PUT path "
                                  "^/api/v1/user/([a-z]+)$\n"
                                  "header x-none = never when path ^/other\n");
    CHECK_EQ_INT(rw_check_exchange(rs, &x, errbuf, sizeof(errbuf)), 0);
    struct rw_session *s = rw_session_new(rs, 0xabcdef);
    struct rw_request req;
    CHECK_EQ_INT(rw_apply(s, &x, &req, errbuf, sizeof(errbuf)), 0);
    CHECK_EQ_INT(req.n_hdrs, 7);
    CHECK_EQ_MEM(req.hdrs[0].name, req.hdrs[0].name_len, ":method", 7);
    CHECK_EQ_MEM(req.hdrs[1].name, req.hdrs[1].name_len, ":path", 5);
    CHECK_EQ_MEM(req.hdrs[2].name, req.hdrs[2].name_len, ":authority", 10);
    CHECK_EQ_MEM(req.hdrs[3].name, req.hdrs[3].name_len, "user-agent", 10);
    CHECK_EQ_STR(hval(&req, ":authority"), "staging.example");
    CHECK_EQ_STR(hval(&req, "user-agent"), "h2replay (curl/8)");
    CHECK(hval(&req, "cookie") == NULL);
    CHECK_EQ_STR(hval(&req, "x-run"), "0000000000abcdef");
    CHECK_EQ_STR(hval(&req, "x-trace"), "t1");
    CHECK_EQ_STR(hval(&req, "x-user"), "alice");
    CHECK(req.body == NULL && req.body_len == 0);
    /* unchanged values are borrowed from the exchange */
    CHECK(req.hdrs[0].value == hdrs[1].value);
    rw_request_release(s, &req);
    rw_session_free(s);
    rw_ruleset_free(rs);
}

static void test_path_query(void)
{
    static const struct h2r_hdr hdrs[] = {
        HDR(":method", "GET"),
        HDR(":path", "/users/alice/posts/7?page=2&sort=asc&flag&page=3"),
    };
    struct h2r_exchange x = {.id = 2, .req_hdrs = hdrs, .n_req_hdrs = 2};
    struct rw_ruleset *rs = rules("path \"^/users/([^/]+)/posts/([0-9]+)\" -> "
                                  "\"/u/\\1-{{run}}/p/\\2\"\n"
                                  "query page = \"{{orig}}0\"\n"
                                  "query sort delete\n"
                                  "query flag = on\n"
                                  "query run := \"{{var:who|url}}\"\n"
                                  "query absent = x\n");
    CHECK_EQ_INT(rw_check_exchange(rs, &x, errbuf, sizeof(errbuf)), H2R_ERR_ARG);
    CHECK(strstr(errbuf, "{{var:who}}") != NULL);
    CHECK_EQ_INT(rw_ruleset_set_var(rs, "who=a&b c", errbuf, sizeof(errbuf)), 0);
    CHECK_EQ_INT(rw_check_exchange(rs, &x, errbuf, sizeof(errbuf)), 0);
    struct rw_session *s = rw_session_new(rs, 0x10);
    struct rw_request req;
    CHECK_EQ_INT(rw_apply(s, &x, &req, errbuf, sizeof(errbuf)), 0);
    CHECK_EQ_STR(hval(&req, ":path"),
                 "/u/alice-0000000000000010/p/7?page=20&flag=on&page=30&run=a%26b%20c");
    rw_request_release(s, &req);
    rw_session_free(s);
    rw_ruleset_free(rs);

    /* deleting the only parameter drops the '?' */
    static const struct h2r_hdr h2[] = {HDR(":method", "GET"), HDR(":path", "/a?k=v")};
    struct h2r_exchange x2 = {.id = 3, .req_hdrs = h2, .n_req_hdrs = 2};
    rs = rules("query k delete\nquery n := 1 when path ^/b$\n");
    s = rw_session_new(rs, 0);
    CHECK_EQ_INT(rw_apply(s, &x2, &req, errbuf, sizeof(errbuf)), 0);
    CHECK_EQ_STR(hval(&req, ":path"), "/a");
    rw_request_release(s, &req);
    rw_session_free(s);
    rw_ruleset_free(rs);
}

static void test_json(void)
{
    static const struct h2r_hdr hdrs[] = {
        HDR(":method", "POST"),
        HDR(":path", "/api/v1/user"),
        HDR("content-type", "application/json; charset=utf-8"),
        HDR("content-length", "114"),
    };
    static const char body[] = "{\"user\":{\"name\":\"alice\",\"age\":30},"
                               "\"items\":[{\"id\":1,\"Key\":\"k1\"},{\"id\":2}],"
                               "\"meta\":{\"deep\":{\"Key\":\"k2\"}},\"drop\":true}";
    struct h2r_exchange x = {.id = 4,
                             .req_hdrs = hdrs,
                             .n_req_hdrs = 4,
                             .req_body = (const uint8_t *)body,
                             .req_body_stored = sizeof(body) - 1,
                             .req_body_len = sizeof(body) - 1};
    CHECK_EQ_INT(sizeof(body) - 1, 114);
    struct rw_ruleset *rs = rules("json .user.name = \"{{orig}}-{{run}}\" when method POST\n"
                                  "json .user.age = raw \"{{orig}}1\"\n"
                                  "json .items[0].id = raw \"{\\\"n\\\":{{seq}}}\"\n"
                                  "json .items[-1].id = \"last\"\n"
                                  "json .**.Key = \"K\"\n"
                                  "json .drop delete\n"
                                  "json .user.added := yes\n"
                                  "json .nothere.x := no\n"
                                  "json .user.name = never when method GET\n");
    struct rw_session *s = rw_session_new(rs, 0xff);
    struct rw_request req;
    CHECK_EQ_INT(rw_apply(s, &x, &req, errbuf, sizeof(errbuf)), 0);
    static const char want[] = "{\"user\":{\"name\":\"alice-00000000000000ff\",\"age\":301,"
                               "\"added\":\"yes\"},\"items\":[{\"id\":{\"n\":1},\"Key\":\"K\"},"
                               "{\"id\":\"last\"}],\"meta\":{\"deep\":{\"Key\":\"K\"}}}";
    CHECK_EQ_STR(body_str(&req), want);
    char cl[16];
    snprintf(cl, sizeof(cl), "%zu", sizeof(want) - 1);
    CHECK_EQ_STR(hval(&req, "content-length"), cl);
    rw_request_release(s, &req);

    /* raw value that is not JSON: an error naming the rule */
    rw_session_free(s);
    rw_ruleset_free(rs);
    rs = rules("\n\njson .user = raw \"{broken\"\n");
    s = rw_session_new(rs, 0);
    CHECK_EQ_INT(rw_apply(s, &x, &req, errbuf, sizeof(errbuf)), H2R_ERR_ARG);
    CHECK(strstr(errbuf, "exchange 4: t.rules:3: raw value is not JSON") != NULL);
    rw_session_free(s);
    rw_ruleset_free(rs);

    /* not JSON: json rules are skipped and counted, the body goes out untouched */
    static const char text[] = "plain text";
    struct h2r_exchange y = x;
    y.req_body = (const uint8_t *)text;
    y.req_body_stored = sizeof(text) - 1;
    rs = rules("json .a = b\n");
    s = rw_session_new(rs, 0);
    CHECK_EQ_INT(rw_apply(s, &y, &req, errbuf, sizeof(errbuf)), 0);
    CHECK(req.body == y.req_body);
    CHECK_EQ_STR(hval(&req, "content-length"), "10"); /* made to match the stored body */
    struct rw_stats st;
    rw_session_stats(s, &st);
    CHECK_EQ_INT(st.json_skipped, 1);
    rw_request_release(s, &req);
    rw_session_free(s);
    rw_ruleset_free(rs);
}

/* Applies a one-rule set with seed and returns the header x value (malloc'd). */
static char *unique_value(uint64_t seed, const char *rule, int times)
{
    static const struct h2r_hdr hdrs[] = {HDR(":method", "GET"), HDR(":path", "/")};
    struct h2r_exchange x = {.id = 5, .req_hdrs = hdrs, .n_req_hdrs = 2};
    struct rw_ruleset *rs = rules(rule);
    struct rw_session *s = rw_session_new(rs, seed);
    char *out = NULL;
    for (int i = 0; i < times; i++) {
        struct rw_request req;
        CHECK_EQ_INT(rw_apply(s, &x, &req, errbuf, sizeof(errbuf)), 0);
        free(out);
        const char *v = hval(&req, "x");
        out = strdup(v ? v : "");
        rw_request_release(s, &req);
    }
    rw_session_free(s);
    rw_ruleset_free(rs);
    return out;
}

static void test_unique(void)
{
    const char *rule = "header x := \"{{unique}}/{{uuid}}/{{seq}}\"\n";
    char *a1 = unique_value(1, rule, 1);
    char *a1b = unique_value(1, rule, 1);
    char *b1 = unique_value(2, rule, 1);
    char *a2 = unique_value(1, rule, 2);
    CHECK_EQ_STR(a1, a1b); /* stable for the same seed */
    CHECK(strcmp(a1, b1) != 0);
    CHECK(strncmp(a1, b1, 16) != 0); /* {{unique}} differs across seeds */
    CHECK(strncmp(a1, a2, 16) != 0); /* and between requests of one run */
    CHECK(strncmp(a1 + 17, b1 + 17, 36) != 0);
    CHECK_EQ_INT(strlen(a1), 16 + 1 + 36 + 1 + 1);
    CHECK(a1[17 + 14] == '4');                  /* UUID version */
    CHECK(strchr("89ab", a1[17 + 19]) != NULL); /* RFC 4122 variant */
    CHECK_EQ_STR(a2 + strlen(a2) - 2, "/2");    /* {{seq}} counts requests */
    free(a1);
    free(a1b);
    free(b1);
    free(a2);

    /* two {{unique}} in one value differ; a let is evaluated once per session */
    char *two = unique_value(7, "header x := \"{{unique}}{{unique}}\"\n", 1);
    CHECK(strncmp(two, two + 16, 16) != 0);
    free(two);
    char *l1 = unique_value(7, "let name = \"alice-{{unique}}\"\nheader x := {{var:name}}\n", 1);
    char *l3 = unique_value(7, "let name = \"alice-{{unique}}\"\nheader x := {{var:name}}\n", 3);
    CHECK_EQ_STR(l1, l3);
    CHECK(starts_with(l1, "alice-"));
    free(l1);
    free(l3);

    /* a let cycle is an error, not a hang */
    static const struct h2r_hdr hdrs[] = {HDR(":method", "GET"), HDR(":path", "/")};
    struct h2r_exchange x = {.id = 6, .req_hdrs = hdrs, .n_req_hdrs = 2};
    struct rw_ruleset *rs = rules("let a = {{var:b}}\nlet b = {{var:a}}\nheader x := {{var:a}}\n");
    CHECK_EQ_INT(rw_check_exchange(rs, &x, errbuf, sizeof(errbuf)), H2R_ERR_ARG);
    struct rw_session *s = rw_session_new(rs, 0);
    struct rw_request req;
    CHECK_EQ_INT(rw_apply(s, &x, &req, errbuf, sizeof(errbuf)), H2R_ERR_ARG);
    CHECK(strstr(errbuf, "refers back to itself") != NULL);
    rw_session_free(s);
    rw_ruleset_free(rs);
}

static void test_capture(void)
{
    static const struct h2r_hdr create_h[] = {
        HDR(":method", "POST"),
        HDR(":path", "/api/v1/node/register"),
    };
    static const struct h2r_hdr use_h[] = {
        HDR(":method", "GET"),
        HDR(":path", "/api/v1/node/1234"),
        HDR("content-type", "application/json"),
    };
    static const char use_body[] = "{\"node\":1234}";
    struct h2r_exchange create = {.id = 10, .req_hdrs = create_h, .n_req_hdrs = 2};
    struct h2r_exchange use = {.id = 11,
                               .req_hdrs = use_h,
                               .n_req_hdrs = 3,
                               .req_body = (const uint8_t *)use_body,
                               .req_body_stored = sizeof(use_body) - 1};
    struct rw_ruleset *rs =
        rules("capture node_id from json .node.id when method POST path ^/api/v1/node/register$ "
              "status 2xx\n"
              "capture loc from header Location match \"/nodes/([0-9]+)$\" when method POST\n"
              "path \"^/api/v1/node/[0-9]+$\" -> \"/api/v1/node/{{var:node_id}}\"\n"
              "json .node = raw {{var:node_id}}\n"
              "header x-loc := {{var:loc}} when method GET\n");
    CHECK_EQ_INT(rw_check_exchange(rs, &use, errbuf, sizeof(errbuf)), 0);
    CHECK_EQ_INT(rw_check_exchange(rs, &create, errbuf, sizeof(errbuf)), 0);

    struct rw_session *s = rw_session_new(rs, 3);
    CHECK_EQ_INT(rw_wants_response(s, &create), 1);
    CHECK_EQ_INT(rw_wants_response(s, &use), 0);

    /* used before it is captured: an error naming the variable */
    struct rw_request req;
    CHECK_EQ_INT(rw_apply(s, &use, &req, errbuf, sizeof(errbuf)), H2R_ERR_ARG);
    CHECK(strstr(errbuf, "exchange 11: t.rules:3: {{var:node_id}} is not captured yet") != NULL);
    CHECK(req.hdrs == NULL);

    static const struct h2r_hdr resp_h[] = {
        HDR(":status", "201"),
        HDR("location", "/nodes/77"),
        HDR("content-type", "application/json"),
    };
    static const char resp[] = "{\"node\":{\"id\":987,\"name\":\"n\"}}";
    /* a 5xx does not satisfy `status 2xx`; the header capture has no status filter */
    rw_observe_response(s, &create, 500, resp_h, 3, (const uint8_t *)resp, sizeof(resp) - 1);
    size_t len = 0;
    CHECK(rw_session_var(s, "node_id", &len) == NULL);
    CHECK_EQ_STR(rw_session_var(s, "loc", &len), "77");
    rw_observe_response(s, &create, 201, resp_h, 3, (const uint8_t *)resp, sizeof(resp) - 1);
    CHECK_EQ_STR(rw_session_var(s, "node_id", &len), "987");

    CHECK_EQ_INT(rw_apply(s, &use, &req, errbuf, sizeof(errbuf)), 0);
    CHECK_EQ_STR(hval(&req, ":path"), "/api/v1/node/987");
    CHECK_EQ_STR(body_str(&req), "{\"node\":987}");
    CHECK_EQ_STR(hval(&req, "x-loc"), "77");
    rw_request_release(s, &req);

    /* a response without the field is a counted miss that keeps the old value */
    static const char other[] = "{\"error\":\"exists\"}";
    rw_observe_response(s, &create, 200, resp_h, 1, (const uint8_t *)other, sizeof(other) - 1);
    CHECK_EQ_STR(rw_session_var(s, "node_id", &len), "987");
    struct rw_stats st;
    rw_session_stats(s, &st);
    CHECK_EQ_INT(st.captured, 3);
    CHECK_EQ_INT(st.capture_missed, 2); /* the last response: no .node.id, no location */
    rw_session_free(s);

    /* a new session starts empty */
    s = rw_session_new(rs, 3);
    CHECK(rw_session_var(s, "node_id", &len) == NULL);
    rw_session_free(s);
    rw_ruleset_free(rs);
}

static void test_content_length(void)
{
    static const struct h2r_hdr hdrs[] = {
        HDR(":method", "POST"),
        HDR(":path", "/f"),
        HDR("content-type", "application/x-www-form-urlencoded"),
        HDR("content-length", "22"),
    };
    static const char body[] = "user=bob&pw=$H2R{pw_1}";
    struct h2r_exchange x = {.id = 12,
                             .req_hdrs = hdrs,
                             .n_req_hdrs = 4,
                             .req_body = (const uint8_t *)body,
                             .req_body_stored = sizeof(body) - 1};
    struct rw_ruleset *rs = rules("");
    CHECK_EQ_INT(rw_ruleset_set_var(rs, "pw=p@ss word", errbuf, sizeof(errbuf)), 0);
    struct rw_session *s = rw_session_new(rs, 0);
    struct rw_request req;
    CHECK_EQ_INT(rw_apply(s, &x, &req, errbuf, sizeof(errbuf)), 0);
    CHECK_EQ_STR(body_str(&req), "user=bob&pw=p%40ss%20word");
    CHECK_EQ_STR(hval(&req, "content-length"), "25");
    rw_request_release(s, &req);

    /* unchanged body and correct content-length: all borrowed */
    static const char body2[] = "user=bob";
    static const struct h2r_hdr hdrs2[] = {HDR(":method", "POST"), HDR(":path", "/f"),
                                           HDR("content-length", "8")};
    struct h2r_exchange y = {.id = 13,
                             .req_hdrs = hdrs2,
                             .n_req_hdrs = 3,
                             .req_body = (const uint8_t *)body2,
                             .req_body_stored = sizeof(body2) - 1};
    CHECK_EQ_INT(rw_apply(s, &y, &req, errbuf, sizeof(errbuf)), 0);
    CHECK(req.hdrs[2].value == hdrs2[2].value);
    CHECK(req.body == y.req_body);
    rw_request_release(s, &req);
    rw_session_free(s);
    rw_ruleset_free(rs);
}

static void test_misc(void)
{
    /* rw_ruleset_load names the file in messages */
    char path[] = "/tmp/test_rw_rulesXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    static const char text[] = "header a = 1\njson .x =\n";
    CHECK_EQ_INT(write(fd, text, sizeof(text) - 1), (long)(sizeof(text) - 1));
    close(fd);
    struct rw_ruleset *rs = NULL;
    CHECK_EQ_INT(rw_ruleset_new(&rs), 0);
    CHECK_EQ_INT(rw_ruleset_load(rs, path, errbuf, sizeof(errbuf)), H2R_ERR_FORMAT);
    char want[128];
    snprintf(want, sizeof(want), "%s:2:10: missing value", path);
    CHECK_EQ_STR(errbuf, want);
    rw_ruleset_free(rs);
    unlink(path);

    static const struct h2r_hdr hdrs[] = {
        HDR(":method", "PATCH"),
        HDR(":path", "/odd"),
        HDR("content-type", "application/merge-patch+json"),
    };
    static const char body[] = "{\"id\":{\"id\":0},\"a key\":\"q\\\"uote\",\"n\":[1,2,3]}";
    struct h2r_exchange x = {.id = 20,
                             .req_hdrs = hdrs,
                             .n_req_hdrs = 3,
                             .req_body = (const uint8_t *)body,
                             .req_body_stored = sizeof(body) - 1};
    rs = rules("json .**.id = raw \"{\\\"id\\\":1}\"\n"
               "json [\"a key\"] = raw \"[\\\"{{orig|json}}\\\"]\"\n"
               "json .n[1] delete\n"
               "json .n[5] = never\n"
               "header x := {{var:late}} when path ^/other$\n");
    /* the rule that needs `late` does not match this exchange */
    CHECK_EQ_INT(rw_check_exchange(rs, &x, errbuf, sizeof(errbuf)), 0);
    struct rw_session *s = rw_session_new(rs, 0);
    struct rw_request req;
    CHECK_EQ_INT(rw_apply(s, &x, &req, errbuf, sizeof(errbuf)), 0);
    CHECK_EQ_STR(body_str(&req), "{\"id\":{\"id\":1},\"a key\":[\"q\\\"uote\"],\"n\":[1,3]}");
    CHECK(hval(&req, "content-length") == NULL); /* never added */
    rw_request_release(s, &req);
    rw_session_free(s);
    rw_ruleset_free(rs);
}

int main(void)
{
    test_parse_errors();
    test_placeholders();
    test_load_vars();
    test_headers();
    test_path_query();
    test_json();
    test_unique();
    test_capture();
    test_content_length();
    test_misc();
    return check_summary("test_rw_rules");
}
