/*
 * Target URL parsing for the replay stage.
 *
 * A target is where a whole trace is replayed: scheme, host and port. The
 * trace keeps every request's path; the target only replaces :scheme and
 * :authority. Anything else in the URL (user info, a path other than "/",
 * query, fragment) would be silently ignored, so it is rejected instead.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/error.h"
#include "rp_url.h"

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

static int is_host_char(char c)
{
    return is_name_char(c) || c == '~' || c == '%';
}

static int parse_port(const char *s, size_t n, uint16_t *port)
{
    if (n == 0 || n > 5)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/* Splits "NAME=URL": a name is there when the text before the first '=' is a plain name. */
static const char *split_name(const char *spec, struct rp_target *t)
{
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec)
        return spec;
    for (const char *p = spec; p < eq; p++)
        if (!is_name_char(*p))
            return spec;
    size_t n = (size_t)(eq - spec);
    if (n >= sizeof(t->name))
        return NULL;
    memcpy(t->name, spec, n);
    t->name[n] = '\0';
    return eq + 1;
}

static int bad(char *errbuf, size_t errlen, const char *spec, const char *what)
{
    return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "target '%s': %s", spec, what);
}

/* "[v6]" or "[v6]:port" */
static int parse_bracketed(const char *spec, const char *rest, size_t auth_len, struct rp_target *t,
                           const char **port, size_t *port_len, char *errbuf, size_t errlen)
{
    const char *close = memchr(rest, ']', auth_len);
    if (!close)
        return bad(errbuf, errlen, spec, "unclosed '['");
    const char *host = rest + 1;
    size_t host_len = (size_t)(close - host);
    const char *after = close + 1;
    if (after < rest + auth_len) {
        if (*after != ':')
            return bad(errbuf, errlen, spec, "bad authority");
        *port = after + 1;
        *port_len = (size_t)(rest + auth_len - *port);
    }
    struct in6_addr a6;
    if (host_len == 0 || host_len >= sizeof(t->host))
        return bad(errbuf, errlen, spec, "bad IPv6 address");
    memcpy(t->host, host, host_len);
    t->host[host_len] = '\0';
    if (inet_pton(AF_INET6, t->host, &a6) != 1)
        return bad(errbuf, errlen, spec, "bad IPv6 address");
    t->host_ip = 1;
    return 0;
}

int rp_target_parse(const char *spec, struct rp_target *t, char *errbuf, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    if (!spec || !*spec)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "empty target");
    const char *url = split_name(spec, t);
    if (!url)
        return bad(errbuf, errlen, spec, "name too long");

    const char *rest;
    /* ts2021+http(s)://: the Tailscale control protocol (docs/ts2021.md), an HTTP/1.1 upgrade
     * over TCP or TLS; the rest of the URL reads as for plain targets */
    if (strncmp(url, "ts2021+", 7) == 0 &&
        (strncmp(url + 7, "http://", 7) == 0 || strncmp(url + 7, "https://", 8) == 0)) {
        t->ts2021 = 1;
        url += 7;
    }
    if (strncmp(url, "http://", 7) == 0) {
        t->scheme = "http";
        t->port = 80;
        rest = url + 7;
    } else if (strncmp(url, "https://", 8) == 0) {
        t->scheme = "https";
        t->port = 443;
        t->tls = 1;
        rest = url + 8;
    } else {
        return bad(errbuf, errlen, spec,
                   "URL must start with http:// (h2c prior knowledge), https:// (TLS), "
                   "ts2021+http:// or ts2021+https://");
    }

    size_t auth_len = strcspn(rest, "/?#");
    const char *tail = rest + auth_len;
    if (*tail && strcmp(tail, "/") != 0)
        return bad(errbuf, errlen, spec,
                   "only scheme://host[:port] is allowed (the captured path is kept)");
    if (memchr(rest, '@', auth_len))
        return bad(errbuf, errlen, spec, "user info is not supported");
    if (auth_len >= sizeof(t->authority))
        return bad(errbuf, errlen, spec, "authority too long");

    const char *port = NULL;
    size_t port_len = 0;
    int rc;
    if (auth_len > 0 && rest[0] == '[') {
        rc = parse_bracketed(spec, rest, auth_len, t, &port, &port_len, errbuf, errlen);
        if (rc)
            return rc;
    } else {
        const char *colon = memchr(rest, ':', auth_len);
        size_t host_len = colon ? (size_t)(colon - rest) : auth_len;
        if (colon) {
            port = colon + 1;
            port_len = (size_t)(rest + auth_len - port);
        }
        if (host_len == 0)
            return bad(errbuf, errlen, spec, "no host");
        if (host_len >= sizeof(t->host))
            return bad(errbuf, errlen, spec, "host too long");
        for (size_t i = 0; i < host_len; i++)
            if (!is_host_char(rest[i]))
                return bad(errbuf, errlen, spec, "bad character in host");
        memcpy(t->host, rest, host_len);
        t->host[host_len] = '\0';
        struct in_addr a4;
        t->host_ip = inet_pton(AF_INET, t->host, &a4) == 1;
    }
    if (port && parse_port(port, port_len, &t->port))
        return bad(errbuf, errlen, spec, "bad port");

    /* The authority as written: a default port stays implicit, as a browser sends it. */
    memcpy(t->authority, rest, auth_len);
    t->authority[auth_len] = '\0';
    snprintf(t->url, sizeof(t->url), "%s%s://%s", t->ts2021 ? "ts2021+" : "", t->scheme,
             t->authority);
    if (!t->name[0])
        snprintf(t->name, sizeof(t->name), "%s", t->url);
    return 0;
}

int rp_target_resolve(const struct rp_target *t, struct sockaddr_storage *ss, socklen_t *len,
                      char *err, size_t errlen)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)t->port);
    int rc = getaddrinfo(t->host, port, &hints, &ai);
    if (rc != 0 || !ai) {
        snprintf(err, errlen, "resolving %s: %s", t->host, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}
