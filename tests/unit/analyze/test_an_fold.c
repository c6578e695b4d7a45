/*
 * Unit tests for endpoint folding (analyze/an_fold.c): every built-in id
 * shape, query strings, gRPC paths, unprintable bytes, cut keys, and user
 * rules (with back-references) including the errors of bad rules.
 */
#include <string.h>

#include "an_fold.h"
#include "check.h"
#include "h2replay/error.h"

static const char *fold(const struct an_folder *f, const char *path, int grpc)
{
    static char out[AN_KEY_MAX + 1];
    an_fold_path(f, path, grpc, out, sizeof(out));
    return out;
}

static void test_builtin(void)
{
    CHECK_EQ_STR(fold(NULL, "/machine/1234/map", 0), "/machine/{n}/map");
    CHECK_EQ_STR(fold(NULL, "/key?v=88", 0), "/key");
    CHECK_EQ_STR(fold(NULL, "/a/b#frag", 0), "/a/b");
    CHECK_EQ_STR(fold(NULL, "/api/v1/user/123e4567-e89b-12d3-a456-426614174000", 0),
                 "/api/v1/user/{uuid}");
    CHECK_EQ_STR(fold(NULL, "/machine/nodekey:0123456789abcdef0123/map", 0),
                 "/machine/nodekey:{key}/map");
    CHECK_EQ_STR(fold(NULL, "/machine/mkey:abcdef0123456789", 0), "/machine/mkey:{key}");
    CHECK_EQ_STR(fold(NULL, "/d/discokey:ABCDEF01", 0), "/d/discokey:{key}");
    CHECK_EQ_STR(fold(NULL, "/blob/deadbeef12", 0), "/blob/{hex}");
    CHECK_EQ_STR(fold(NULL, "/blob/deadbeef", 0), "/blob/deadbeef"); /* a word, not an id */
    CHECK_EQ_STR(fold(NULL, "/x/abcdefabcdefabcd", 0), "/x/{hex}");
    CHECK_EQ_STR(fold(NULL, "/t/eyJhbGciOiJIUzI1NiJ9abcDEF", 0), "/t/{tok}");
    CHECK_EQ_STR(fold(NULL, "/registrationrequests/x", 0), "/registrationrequests/x");
    CHECK_EQ_STR(fold(NULL, "/a1b2c3", 0), "/a1b2c3"); /* short mixed ids stay */
    CHECK_EQ_STR(fold(NULL, "/1/2/3/", 0), "/{n}/{n}/{n}/");
    CHECK_EQ_STR(fold(NULL, "", 0), "/");
    CHECK_EQ_STR(fold(NULL, NULL, 0), "/");
    CHECK_EQ_STR(fold(NULL, "/a\x01 b\xff", 0), "/a??b?");
    CHECK_EQ_STR(fold(NULL, "/headscale.v1.HeadscaleService/ListNodes", 1),
                 "/headscale.v1.HeadscaleService/ListNodes");
    CHECK_EQ_STR(fold(NULL, "/pkg.S/M123", 1), "/pkg.S/M123"); /* gRPC: no folding */
    CHECK_EQ_STR(fold(NULL, "/pkg.S/M?x=1", 1), "/pkg.S/M");

    char longpath[600], out[64];
    memset(longpath, 'z', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    size_t n = an_fold_path(NULL, longpath, 0, out, sizeof(out));
    CHECK_EQ_INT(n, sizeof(out) - 1);
    CHECK(strcmp(out + n - 3, "...") == 0);

    char key[AN_KEY_MAX + 32];
    an_fold_key(NULL, "POST", "/machine/1/map?x", 0, key, sizeof(key));
    CHECK_EQ_STR(key, "POST /machine/{n}/map");
    an_fold_key(NULL, NULL, NULL, 0, key, sizeof(key));
    CHECK_EQ_STR(key, "? /");
}

static void test_rules(void)
{
    struct an_folder *f = NULL;
    char err[256];
    const char *rules[] = {"^/users/[a-z]+=/users/{name}", "([a-z]+)-[0-9]+=\\1-{id}"};
    CHECK_EQ_INT(an_folder_new(&f, rules, 2, err, sizeof(err)), 0);
    CHECK_EQ_STR(fold(f, "/users/alice/posts/12", 0), "/users/{name}/posts/{n}");
    CHECK_EQ_STR(fold(f, "/node-42/x/node-7", 0), "/node-{id}/x/node-{id}");
    CHECK_EQ_STR(fold(f, "/other/5", 0), "/other/{n}");
    an_folder_free(f);

    /* an empty-matching rule terminates */
    const char *empty[] = {"x*=Y"};
    CHECK_EQ_INT(an_folder_new(&f, empty, 1, err, sizeof(err)), 0);
    CHECK(strlen(fold(f, "/abc", 0)) > 0);
    an_folder_free(f);

    const char *bad[] = {"([=x"};
    f = NULL;
    CHECK_EQ_INT(an_folder_new(&f, bad, 1, err, sizeof(err)), H2R_ERR_ARG);
    CHECK(strstr(err, "--fold-rule") != NULL);
    CHECK(f == NULL);
    const char *noeq[] = {"abc"};
    CHECK_EQ_INT(an_folder_new(&f, noeq, 1, err, sizeof(err)), H2R_ERR_ARG);
    CHECK(strstr(err, "REGEX=TEMPLATE") != NULL);
    an_folder_free(NULL);
}

int main(void)
{
    test_builtin();
    test_rules();
    return check_summary("test_an_fold");
}
