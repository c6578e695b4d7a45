/*
 * JSON selectors for rewrite and capture rules: `.user.name`, `.items[0].id`,
 * `.items[-1]`, `.*`, `[*]`, `["odd key"]` and `.**.Key` (Key at any depth).
 *
 * A selector is compiled once into steps and walked over a jansson tree.
 * Every walk has a node-visit budget and a depth cap, so `.**.**.x` over a
 * large body costs bounded time. Under `**` the walk is post-order: a
 * callback that stores a new value (possibly an object holding the same key)
 * never has that value walked again.
 */
#include <stdlib.h>
#include <string.h>

#include "rw_internal.h"

#define SEL_MAX_STEPS 64
#define SEL_MAX_DEEP 2

/* Bytes that end a bare key after '.'. */
static int key_end_byte(char c)
{
    return c == '.' || c == '[' || c == ']' || c == '"' || c == ' ' || c == '\t' || c == '\0';
}

static int add_step(struct rw_sel *sel, int kind, const char *key, size_t key_len, long index)
{
    struct rw_step *st = &sel->steps[sel->n];
    memset(st, 0, sizeof(*st));
    st->kind = kind;
    st->index = index;
    if (kind == RW_S_KEY) {
        st->key = malloc(key_len + 1);
        if (!st->key)
            return H2R_ERR_NOMEM;
        memcpy(st->key, key, key_len);
        st->key[key_len] = '\0';
        st->key_len = key_len;
    }
    sel->n++;
    return 0;
}

/* Parses `["key"]` content starting after '"' at src[*i]; unescapes \" and \\. */
static int quoted_key(struct rw_sel *sel, const char *src, size_t len, size_t *i,
                      const char **err_msg)
{
    char *buf = malloc(len + 1);
    size_t n = 0;
    int rc;
    if (!buf)
        return H2R_ERR_NOMEM;
    while (*i < len && src[*i] != '"') {
        if (src[*i] == '\\') {
            if (*i + 1 >= len || (src[*i + 1] != '"' && src[*i + 1] != '\\')) {
                *err_msg = "only \\\" and \\\\ are escapes in a quoted key";
                rc = H2R_ERR_FORMAT;
                goto out;
            }
            (*i)++;
        }
        buf[n++] = src[(*i)++];
    }
    if (*i + 1 >= len || src[*i + 1] != ']') {
        *err_msg = "quoted key must end with \"]";
        rc = H2R_ERR_FORMAT;
        goto out;
    }
    *i += 2;
    rc = add_step(sel, RW_S_KEY, buf, n, 0);
out:
    free(buf);
    return rc;
}

/* Parses `[N]`, `[-N]` or `[*]` content starting after '['. */
static int bracket(struct rw_sel *sel, const char *src, size_t len, size_t *i, const char **err_msg)
{
    if (*i < len && src[*i] == '"') {
        (*i)++;
        return quoted_key(sel, src, len, i, err_msg);
    }
    if (*i + 1 < len && src[*i] == '*' && src[*i + 1] == ']') {
        *i += 2;
        return add_step(sel, RW_S_ANY, NULL, 0, 0);
    }
    int neg = 0;
    if (*i < len && src[*i] == '-') {
        neg = 1;
        (*i)++;
    }
    long v = 0;
    size_t digits = 0;
    while (*i < len && src[*i] >= '0' && src[*i] <= '9' && digits < 10) {
        v = v * 10 + (src[*i] - '0');
        (*i)++;
        digits++;
    }
    if (digits == 0 || digits >= 10 || *i >= len || src[*i] != ']' || (neg && v == 0)) {
        *err_msg = "expected [N], [-N], [*] or [\"key\"] (N up to 9 digits)";
        return H2R_ERR_FORMAT;
    }
    (*i)++;
    return add_step(sel, RW_S_INDEX, NULL, 0, neg ? -v : v);
}

int rw_sel_compile(struct rw_sel *sel, const char *src, size_t len, size_t *err_off,
                   const char **err_msg)
{
    size_t i = 0;
    size_t deep_at = 0; /* offset of the last '**', for the message */
    int deep = 0;
    int rc = H2R_ERR_FORMAT;

    memset(sel, 0, sizeof(*sel));
    sel->steps = calloc(SEL_MAX_STEPS, sizeof(*sel->steps));
    if (!sel->steps)
        return H2R_ERR_NOMEM;
    if (len == 1 && src[0] == '.')
        return 0; /* the whole body */
    if (len == 0 || (src[0] != '.' && src[0] != '[')) {
        *err_msg = "a selector starts with '.' or '['";
        goto fail;
    }
    while (i < len) {
        if (sel->n == SEL_MAX_STEPS) {
            *err_msg = "selector has more than 64 steps";
            goto fail;
        }
        if (src[i] == '[') {
            i++;
            rc = bracket(sel, src, len, &i, err_msg);
            if (rc != 0)
                goto fail_rc;
            continue;
        }
        if (src[i] != '.') {
            *err_msg = "expected '.' or '['";
            goto fail;
        }
        i++;
        size_t k = i;
        while (k < len && !key_end_byte(src[k]))
            k++;
        if (k == i) {
            *err_msg = "empty key after '.' (use [\"\"] for an empty key)";
            goto fail;
        }
        if (k - i == 2 && src[i] == '*' && src[i + 1] == '*') {
            deep++;
            if (deep > SEL_MAX_DEEP) {
                *err_msg = "at most two '**' per selector";
                goto fail;
            }
            deep_at = i;
            rc = add_step(sel, RW_S_DEEP, NULL, 0, 0);
        } else if (k - i == 1 && src[i] == '*') {
            rc = add_step(sel, RW_S_ANY, NULL, 0, 0);
        } else {
            rc = add_step(sel, RW_S_KEY, src + i, k - i, 0);
        }
        if (rc != 0)
            goto fail_rc;
        i = k;
    }
    if (sel->steps[sel->n - 1].kind == RW_S_DEEP) {
        *err_msg = "'**' must be followed by a step, as in .**.key";
        i = deep_at;
        goto fail;
    }
    return 0;

fail:
    rc = H2R_ERR_FORMAT;
fail_rc:
    *err_off = i < len ? i : len;
    rw_sel_free(sel);
    return rc;
}

void rw_sel_free(struct rw_sel *sel)
{
    if (sel->steps) {
        for (size_t i = 0; i < sel->n; i++)
            free(sel->steps[i].key);
    }
    free(sel->steps);
    memset(sel, 0, sizeof(*sel));
}

struct walk {
    const struct rw_sel *sel;
    int want_absent;
    rw_sel_fn fn;
    void *arg;
    size_t budget;
};

static int walk(struct walk *w, json_t *parent, const char *key, size_t key_len, size_t index,
                json_t *node, size_t i, unsigned depth);

/* Calls walk() for each member or element of node with step i. */
static int walk_children(struct walk *w, json_t *node, size_t i, unsigned depth)
{
    if (json_is_object(node)) {
        void *it = json_object_iter(node);
        while (it) {
            const char *k = json_object_iter_key(it);
            size_t kl = json_object_iter_key_len(it);
            json_t *v = json_object_iter_value(it);
            int rc = walk(w, node, k, kl, 0, v, i, depth + 1);
            if (rc != 0)
                return rc;
            it = json_object_iter_next(node, it);
        }
    } else if (json_is_array(node)) {
        for (size_t k = 0; k < json_array_size(node); k++) {
            int rc = walk(w, node, NULL, 0, k, json_array_get(node, k), i, depth + 1);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

/* node sits at parent[key or index]; steps i.. remain to be matched from node. */
static int walk(struct walk *w, json_t *parent, const char *key, size_t key_len, size_t index,
                json_t *node, size_t i, unsigned depth)
{
    if (w->budget == 0 || depth > RW_JSON_MAX_DEPTH)
        return H2R_ERR_LIMIT;
    w->budget--;
    if (i == w->sel->n)
        return w->fn(parent, key, key_len, index, node, w->arg);

    const struct rw_step *st = &w->sel->steps[i];
    switch (st->kind) {
    case RW_S_KEY: {
        if (!json_is_object(node))
            return 0;
        json_t *child = json_object_getn(node, st->key, st->key_len);
        if (!child) {
            if (w->want_absent && i + 1 == w->sel->n)
                return w->fn(node, st->key, st->key_len, 0, NULL, w->arg);
            return 0;
        }
        return walk(w, node, st->key, st->key_len, 0, child, i + 1, depth + 1);
    }
    case RW_S_INDEX: {
        if (!json_is_array(node))
            return 0;
        size_t size = json_array_size(node);
        size_t k;
        if (st->index < 0) {
            if ((size_t)(-st->index) > size)
                return 0;
            k = size - (size_t)(-st->index);
        } else {
            if ((size_t)st->index >= size)
                return 0;
            k = (size_t)st->index;
        }
        return walk(w, node, NULL, 0, k, json_array_get(node, k), i + 1, depth + 1);
    }
    case RW_S_ANY:
        return walk_children(w, node, i + 1, depth);
    case RW_S_DEEP: {
        /* descendants first, then node itself: post-order (see the file comment) */
        int rc = walk_children(w, node, i, depth);
        if (rc != 0)
            return rc;
        return walk(w, parent, key, key_len, index, node, i + 1, depth);
    }
    default:
        return 0;
    }
}

int rw_sel_walk(const struct rw_sel *sel, json_t *root, int want_absent, rw_sel_fn fn, void *arg)
{
    struct walk w = {sel, want_absent, fn, arg, RW_JSON_BUDGET};
    int rc = walk(&w, NULL, NULL, 0, 0, root, 0, 0);
    return rc > 0 ? 0 : rc;
}
