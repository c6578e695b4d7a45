/*
 * Capture stage: packets (pcap file or live interface) -> trace.
 *
 * The stage library does the work; cli/cmd_capture.c only parses flags.
 */
#ifndef H2REPLAY_CAPTURE_H
#define H2REPLAY_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/error.h"

#ifdef __cplusplus
extern "C" {
#endif

struct h2r_capture_opts {
    const char *read_file; /* -r: pcap or pcapng; exactly one of read_file/iface */
    const char *iface;     /* -i: live interface */
    const char *filter;    /* -f: BPF expression, NULL for none */
    const char *out_path;  /* -o: trace path */
    int redact;            /* 1 (default): replace secrets by placeholders */
    const char *redact_fields;  /* comma list of JSON body field names; NULL: default list */
    const char *redact_headers; /* comma list of header names; NULL: default list */
    size_t max_req_body;   /* bytes of request body stored per exchange (0: default 1 MiB) */
    size_t max_resp_body;  /* bytes of response body stored per exchange (0: default 4 KiB) */
    int progress;          /* 1: progress line on stderr about once a second */
    uint64_t max_packets;  /* live/file: stop after this many packets, 0 = no limit */
    int64_t duration_ns;   /* live: stop after this long, 0 = until SIGINT/SIGTERM */
    int snaplen;           /* live: 0 = 262144 */
    const char *keylog;    /* TLS key log (NSS format), NULL: none */
    const char *noise_key; /* Headscale noise_private.key ("privkey:<hex>"): identifies the
                            * machine key of TS2021 sessions; NULL: none. Never written out. */
};

struct h2r_capture_result {
    uint64_t packets;
    uint64_t bytes;
    uint64_t flows;
    uint64_t exchanges;
    uint64_t gaps;
    uint64_t undecodable_flows;
    uint64_t trace_bytes;
    uint64_t ts_sessions;   /* TS2021 upgrades recognised */
    uint64_t ts_identified; /* of those, machine key read with the noise key */
    uint64_t ts_nodes;      /* distinct machine keys */
};

/* Fills opts with defaults (redact on, default caps). */
void h2r_capture_opts_init(struct h2r_capture_opts *o);

/*
 * Runs a capture to completion (end of file, packet/duration limit, or
 * SIGINT/SIGTERM for live captures). res may be NULL. Returns 0, or a negative
 * code with errbuf naming the file, byte offset or flag at fault. A trace is
 * always finished with a summary record, also after a read error mid-file.
 */
int h2r_capture_run(const struct h2r_capture_opts *o, struct h2r_capture_result *res, char *errbuf,
                    size_t errlen);

/* Asks a running capture to stop (async-signal-safe). */
void h2r_capture_request_stop(void);

#ifdef __cplusplus
}
#endif

#endif
