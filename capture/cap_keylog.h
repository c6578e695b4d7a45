/*
 * NSS key log (SSLKEYLOGFILE) for TLS decryption in the capture stage.
 *
 * The parser is a push parser over bytes (cap_keylog_feed) so tests and
 * fuzzers drive it from memory; cap_keylog_open/cap_keylog_reload are the thin
 * file reader on top, used by the capture driver. Secrets are looked up by the
 * 32-byte client_random of the ClientHello, which every line is keyed by.
 *
 * Format (one line per secret, fields separated by one or more spaces/tabs):
 *     LABEL <client_random: 64 hex digits> <secret: hex>
 * '#' starts a comment line; blank lines are ignored; CRLF is accepted.
 */
#ifndef H2R_CAP_KEYLOG_H
#define H2R_CAP_KEYLOG_H

#include <stddef.h>
#include <stdint.h>

#include "cap_stats.h"

#define CAP_KEYLOG_RANDOM_LEN 32 /* client_random, RFC 8446 §4.1.2 / RFC 5246 §7.4.1.2 */
#define CAP_KEYLOG_MAX_SECRET 48 /* SHA-384 output; the TLS 1.2 master secret is 48 too */
/* Misses look at the file again after 1 ms, doubling while nothing new appears, up to this. */
#define CAP_KEYLOG_RELOAD_NS 500000000ll

/* The secrets a key log line can carry that decryption uses. */
enum cap_keylog_label {
    CAP_KL_MASTER = 0,    /* CLIENT_RANDOM: TLS 1.2 master secret (48 bytes) */
    CAP_KL_CLIENT_HS = 1, /* CLIENT_HANDSHAKE_TRAFFIC_SECRET */
    CAP_KL_SERVER_HS = 2, /* SERVER_HANDSHAKE_TRAFFIC_SECRET */
    CAP_KL_CLIENT_AP = 3, /* CLIENT_TRAFFIC_SECRET_0 */
    CAP_KL_SERVER_AP = 4, /* SERVER_TRAFFIC_SECRET_0 */
    CAP_KL_N = 5
};

struct cap_keylog_stats {
    uint64_t lines;          /* valid key lines (known labels, including ignored ones) */
    uint64_t bad_lines;      /* truncated or garbled lines (bad hex, wrong lengths, too long) */
    uint64_t unknown_labels; /* well-formed lines with a label we do not know (skipped) */
    uint64_t ignored_lines;  /* EXPORTER_SECRET, *_EARLY_*, *_TRAFFIC_SECRET_N, RSA: not needed */
    uint64_t conflicts;      /* same client_random and label, different secret: last one wins */
    uint64_t table_full;     /* lines dropped because the table reached its cap */
    uint64_t entries;        /* distinct client_randoms stored */
    uint64_t reloads;        /* times the file was re-read for appended lines */
    uint64_t reload_checks;  /* times a miss looked at the file (stat) */
    uint64_t first_bad_line; /* 1-based line number of the first bad line, 0 when none */
    uint64_t last_bad_line;
};

struct cap_keylog;

/* Results of cap_keylog_lookup(). */
#define CAP_KEYLOG_FOUND 1
#define CAP_KEYLOG_MISSING 0

/* An empty in-memory key log (feed it with cap_keylog_feed). NULL on allocation failure. */
struct cap_keylog *cap_keylog_new(void);

/*
 * Opens and parses the key log at path. Fails (NULL, errbuf filled) when the
 * file is missing or unreadable, or when it has lines but none of them is a
 * valid key line (not a key log at all). A file without any line (a live
 * capture's key log that is still empty) is accepted: stats lines == 0.
 */
struct cap_keylog *cap_keylog_open(const char *path, char *errbuf, size_t errlen);

/*
 * Parses len more bytes. Complete lines are processed; a partial last line is
 * kept until the rest arrives (or cap_keylog_end). Garbled lines are counted,
 * never fatal. Returns 0 or H2R_ERR_NOMEM.
 */
int cap_keylog_feed(struct cap_keylog *kl, const uint8_t *buf, size_t len);

/*
 * Parses the pending unterminated last line, if any, provisionally: when more
 * bytes of that line arrive later (a file still being written) its result is
 * undone and the completed line is parsed instead. Returns 0 or H2R_ERR_NOMEM.
 */
int cap_keylog_end(struct cap_keylog *kl);

/*
 * Re-reads the file from the offset already parsed (key logs only grow). A
 * shrunk or replaced file is re-read from the start. No-op for in-memory key
 * logs. Returns 0, or H2R_ERR_IO / H2R_ERR_NOMEM (the table stays usable).
 */
int cap_keylog_reload(struct cap_keylog *kl);

/*
 * Live captures: the file may still be appended to, so a miss is not final
 * (see cap_keylog_lookup's reload and cap_keylog_following()).
 */
void cap_keylog_set_follow(struct cap_keylog *kl, int follow);

/* 1 when misses may still be filled by lines appended later. */
int cap_keylog_following(const struct cap_keylog *kl);

/*
 * Copies the secret for (client_random, label) into out (CAP_KEYLOG_MAX_SECRET
 * bytes) and its length into *out_len. On a miss, a file-backed key log reads
 * what was appended first, paced: 1 ms after the previous look, doubling while
 * looks find nothing new, at most CAP_KEYLOG_RELOAD_NS apart (force looks
 * now). Returns CAP_KEYLOG_FOUND, CAP_KEYLOG_MISSING, or H2R_ERR_NOMEM.
 */
int cap_keylog_lookup(struct cap_keylog *kl, const uint8_t client_random[CAP_KEYLOG_RANDOM_LEN],
                      enum cap_keylog_label label, uint8_t out[CAP_KEYLOG_MAX_SECRET],
                      size_t *out_len, int force);

const struct cap_keylog_stats *cap_keylog_stats(const struct cap_keylog *kl);

/* Why the first bad line was rejected ("line 3: bad hex in the secret"), "" when none. */
const char *cap_keylog_first_error(const struct cap_keylog *kl);

/*
 * Appends keylog.* counters to l (NULL kl: nothing). "keylog.empty" is 1 when
 * the key log has no valid line, so an empty key log is visible in the trace.
 */
int cap_keylog_stats_export(const struct cap_keylog *kl, struct cap_counter_list *l);

void cap_keylog_free(struct cap_keylog *kl);

#endif
