/*
 * Replay targets: "[NAME=]URL" parsing.
 *
 * http:// means HTTP/2 over cleartext with prior knowledge, https:// means
 * TLS with ALPN "h2". ts2021+http:// and ts2021+https:// name a Tailscale
 * control server (Headscale): TS2021 node sessions instead of the trace. Only scheme, host and port matter: the captured path of
 * every request is kept, so a target URL has no path beyond "/".
 */
#ifndef H2R_RP_URL_H
#define H2R_RP_URL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define RP_URL_MAX_NAME 128
#define RP_URL_MAX_HOST 256
#define RP_URL_MAX_AUTHORITY (RP_URL_MAX_HOST + 8)

struct rp_target {
    char name[RP_URL_MAX_NAME];           /* NAME, or the URL when none was given */
    char url[RP_URL_MAX_AUTHORITY + 16];  /* normalized: scheme://authority */
    char host[RP_URL_MAX_HOST];           /* without IPv6 brackets */
    char authority[RP_URL_MAX_AUTHORITY]; /* host[:port] as it goes into :authority */
    const char *scheme;                   /* "http" or "https" (static) */
    uint16_t port;
    int tls;     /* 1 for https */
    int host_ip; /* 1 when host is an IP literal (no SNI, IP verification) */
    int ts2021;  /* 1 for ts2021+http(s)://: TS2021 node sessions (replay/rp_nodes.c) */
};

/*
 * Parses "[NAME=]URL" into *t. NAME is [A-Za-z0-9_.-]+ (so a URL is never
 * taken for a name). Returns 0, or H2R_ERR_ARG with errbuf naming what is wrong.
 */
int rp_target_parse(const char *spec, struct rp_target *t, char *errbuf, size_t errlen);

/*
 * Resolves the target's host and port (numeric service) into *ss. Returns 0, or
 * -1 with the resolver's message in err.
 */
int rp_target_resolve(const struct rp_target *t, struct sockaddr_storage *ss, socklen_t *len,
                      char *err, size_t errlen);

#endif
