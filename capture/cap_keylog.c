/*
 * NSS key log reader: the secrets that let the capture decrypt TLS.
 *
 * Browsers, curl, Go's crypto/tls (KeyLogWriter) and OpenSSL's keylog callback
 * all write the NSS key log format: one "LABEL client_random secret" line per
 * secret, keyed by the ClientHello's 32-byte random. The TLS layer looks
 * secrets up by that random when a handshake needs them.
 *
 * Key logs are written by other programs, often while we read them, so this
 * parser is forgiving: a truncated or garbled line is counted with its line
 * number and skipped, an unknown label is skipped (the format grows), and
 * only a file with lines but not one valid key line is refused (it is most
 * likely not a key log at all). For live captures the file keeps growing as
 * clients connect; a lookup miss re-reads what was appended since the last
 * read, remembering the byte offset already parsed. Misses are paced: after
 * a look that found nothing new the next one waits 1 ms, then 2, 4 ... up to
 * CAP_KEYLOG_RELOAD_NS (500 ms), and a look that found new lines starts over
 * at 1 ms. A burst of misses for connections whose secrets never come costs
 * one stat() per 500 ms, while a secret written a moment after its handshake
 * was captured is picked up within a millisecond or two, not after half a
 * second of held traffic. A last line without its newline is parsed
 * provisionally and re-parsed once the rest of it arrives.
 *
 * The parser itself is a push parser over bytes; cap_keylog_open/_reload are
 * the only functions that touch the file system, the same way the pcap reader
 * is the only input for packets.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "h2replay/error.h"
#include "cap_keylog.h"

#define KL_LINE_MAX 512u          /* longest line kept; NSS lines are under 200 bytes */
#define KL_MAX_ENTRIES (1u << 20) /* distinct client_randoms (about 280 MB at the cap) */
#define KL_READ_CHUNK 65536u
#define KL_ERR_LEN 160
#define KL_RELOAD_MIN_NS 1000000ll /* first re-look after a fruitless one: 1 ms */

enum line_kind { LK_NONE, LK_BLANK, LK_GOOD, LK_IGNORED, LK_UNKNOWN, LK_BAD };

struct kl_entry {
    uint8_t random[CAP_KEYLOG_RANDOM_LEN];
    uint8_t used;
    uint8_t have; /* bit (1 << label) set when that secret is present */
    uint8_t len[CAP_KL_N];
    uint8_t secret[CAP_KL_N][CAP_KEYLOG_MAX_SECRET];
};

struct cap_keylog {
    struct kl_entry *tab;
    size_t cap; /* power of two; 0 before the first insert */
    uint64_t seed;
    struct cap_keylog_stats st;
    char first_error[KL_ERR_LEN];

    /* line assembly */
    char line[KL_LINE_MAX];
    size_t line_len;
    int line_overflow;
    uint64_t line_no; /* 1-based number of the line being assembled */

    /* provisional parse of an unterminated last line (cap_keylog_end) */
    int tail_parsed;
    struct cap_keylog_stats tail_saved;
    char tail_saved_error[KL_ERR_LEN];

    /* file backing (NULL path: in-memory) */
    char *path;
    uint64_t file_off;
    dev_t dev;
    ino_t ino;
    int follow;
    int64_t last_reload_ns;
    int64_t reload_gap_ns; /* wait before the next look after a miss */
};

static const struct {
    const char *name;
    int label;      /* enum cap_keylog_label, or -1: valid but not needed */
    size_t min_len; /* the two secret lengths allowed, in bytes */
    size_t max_len;
} labels[] = {
    /* RFC 5246 §8.1: the master secret is always 48 bytes. */
    {"CLIENT_RANDOM", CAP_KL_MASTER, 48, 48},
    /* RFC 8446 §7.1: traffic secrets are Hash.length long (SHA-256 or SHA-384). */
    {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", CAP_KL_CLIENT_HS, 32, 48},
    {"SERVER_HANDSHAKE_TRAFFIC_SECRET", CAP_KL_SERVER_HS, 32, 48},
    {"CLIENT_TRAFFIC_SECRET_0", CAP_KL_CLIENT_AP, 32, 48},
    {"SERVER_TRAFFIC_SECRET_0", CAP_KL_SERVER_AP, 32, 48},
    {"EXPORTER_SECRET", -1, 32, 48},
    {"EARLY_EXPORTER_SECRET", -1, 32, 48},
    {"EARLY_EXPORTER_MASTER_SECRET", -1, 32, 48},
    {"CLIENT_EARLY_TRAFFIC_SECRET", -1, 32, 48},
    /* OpenSSL logs the secret after each KeyUpdate; we derive those ourselves (§7.2). */
    {"CLIENT_TRAFFIC_SECRET_N", -1, 32, 48},
    {"SERVER_TRAFFIC_SECRET_N", -1, 32, 48},
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* ---- hash table ---- */

static uint64_t hash_random(const struct cap_keylog *kl, const uint8_t *r)
{
    uint64_t h = 0xcbf29ce484222325ull ^ kl->seed;
    for (size_t i = 0; i < CAP_KEYLOG_RANDOM_LEN; i++) {
        h ^= r[i];
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

static struct kl_entry *find(const struct cap_keylog *kl, const uint8_t *r)
{
    size_t mask, i;
    if (kl->cap == 0)
        return NULL;
    mask = kl->cap - 1;
    i = (size_t)hash_random(kl, r) & mask;
    while (kl->tab[i].used) {
        if (memcmp(kl->tab[i].random, r, CAP_KEYLOG_RANDOM_LEN) == 0)
            return &kl->tab[i];
        i = (i + 1) & mask;
    }
    return NULL;
}

static int grow(struct cap_keylog *kl)
{
    size_t ncap = kl->cap ? kl->cap * 2 : 256;
    struct kl_entry *old = kl->tab, *nt = calloc(ncap, sizeof(*nt));
    size_t ocap = kl->cap;
    if (!nt)
        return H2R_ERR_NOMEM;
    kl->tab = nt;
    kl->cap = ncap;
    for (size_t k = 0; k < ocap; k++) {
        size_t i;
        if (!old[k].used)
            continue;
        i = (size_t)hash_random(kl, old[k].random) & (ncap - 1);
        while (nt[i].used)
            i = (i + 1) & (ncap - 1);
        nt[i] = old[k];
    }
    free(old);
    return 0;
}

/* Stores one secret; a different value for the same key replaces the old one (counted). */
static int insert(struct cap_keylog *kl, const uint8_t *r, int label, const uint8_t *secret,
                  size_t len)
{
    struct kl_entry *e = find(kl, r);
    if (!e) {
        size_t i;
        int rc;
        if (kl->st.entries >= KL_MAX_ENTRIES) {
            kl->st.table_full++;
            return 0;
        }
        /* Load factor <= 1/2 keeps probe sequences short. */
        if ((kl->st.entries + 1) * 2 > kl->cap) {
            rc = grow(kl);
            if (rc != 0)
                return rc;
        }
        i = (size_t)hash_random(kl, r) & (kl->cap - 1);
        while (kl->tab[i].used)
            i = (i + 1) & (kl->cap - 1);
        e = &kl->tab[i];
        memcpy(e->random, r, CAP_KEYLOG_RANDOM_LEN);
        e->used = 1;
        kl->st.entries++;
    }
    if (e->have & (1u << label)) {
        if (e->len[label] == len && memcmp(e->secret[label], secret, len) == 0)
            return 0;
        kl->st.conflicts++;
    }
    memcpy(e->secret[label], secret, len);
    e->len[label] = (uint8_t)len;
    e->have |= (uint8_t)(1u << label);
    return 0;
}

/* ---- line parser ---- */

struct tok {
    const char *p;
    size_t len;
};

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Next whitespace-separated token of [*pos, end); 0 when none is left. */
static int next_tok(const char *s, size_t end, size_t *pos, struct tok *t)
{
    size_t i = *pos;
    while (i < end && is_space(s[i]))
        i++;
    if (i == end)
        return 0;
    t->p = s + i;
    while (i < end && !is_space(s[i]))
        i++;
    t->len = (size_t)(s + i - t->p);
    *pos = i;
    return 1;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes hex of exactly 2*min..2*max digits into out. 0, or -1 on bad hex / length. */
static int decode_hex(const struct tok *t, size_t min, size_t max, uint8_t *out, size_t *n)
{
    if (t->len % 2 != 0 || t->len < 2 * min || t->len > 2 * max)
        return -1;
    for (size_t i = 0; i < t->len; i += 2) {
        int hi = hex_val(t->p[i]), lo = hex_val(t->p[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    *n = t->len / 2;
    return 0;
}

static int only_hex(const struct tok *t)
{
    for (size_t i = 0; i < t->len; i++) {
        if (hex_val(t->p[i]) < 0)
            return 0;
    }
    return t->len > 0;
}

static enum line_kind bad_line(struct cap_keylog *kl, const char *why)
{
    kl->st.bad_lines++;
    if (kl->st.first_bad_line == 0) {
        kl->st.first_bad_line = kl->line_no;
        snprintf(kl->first_error, sizeof(kl->first_error), "line %llu: %s",
                 (unsigned long long)kl->line_no, why);
    }
    kl->st.last_bad_line = kl->line_no;
    return LK_BAD;
}

/* One line without its terminator. Returns what it was; *rc set on allocation failure. */
static enum line_kind parse_line(struct cap_keylog *kl, const char *s, size_t n, int *rc)
{
    struct tok label, rnd, sec, extra;
    uint8_t random[CAP_KEYLOG_RANDOM_LEN], secret[CAP_KEYLOG_MAX_SECRET];
    size_t pos = 0, rlen = 0, slen = 0, k;

    *rc = 0;
    if (n > 0 && s[n - 1] == '\r')
        n--; /* CRLF line ends (key logs written on Windows) */
    if (!next_tok(s, n, &pos, &label) || label.p[0] == '#')
        return LK_BLANK;
    for (size_t i = 0; i < label.len; i++) {
        char c = label.p[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return bad_line(kl, "not a key log line (the label is not a word)");
    }
    if (!next_tok(s, n, &pos, &rnd) || !next_tok(s, n, &pos, &sec))
        return bad_line(kl, "truncated: fewer than three fields");
    if (next_tok(s, n, &pos, &extra))
        return bad_line(kl, "more than three fields");

    /* Wireshark's "RSA <first 8 bytes of the encrypted premaster> <premaster>": no random. */
    if (label.len == 3 && memcmp(label.p, "RSA", 3) == 0) {
        if (rnd.len != 16 || !only_hex(&rnd) || !only_hex(&sec))
            return bad_line(kl, "bad hex in an RSA line");
        kl->st.lines++;
        kl->st.ignored_lines++;
        return LK_IGNORED;
    }
    if (decode_hex(&rnd, CAP_KEYLOG_RANDOM_LEN, CAP_KEYLOG_RANDOM_LEN, random, &rlen) != 0)
        return bad_line(kl, "the client random is not 64 hex digits");
    for (k = 0; k < sizeof(labels) / sizeof(labels[0]); k++) {
        if (strlen(labels[k].name) == label.len && memcmp(labels[k].name, label.p, label.len) == 0)
            break;
    }
    if (k == sizeof(labels) / sizeof(labels[0])) {
        if (!only_hex(&sec))
            return bad_line(kl, "bad hex in the secret");
        kl->st.unknown_labels++;
        return LK_UNKNOWN;
    }
    if (!only_hex(&sec))
        return bad_line(kl, "bad hex in the secret");
    /* Hash.length: exactly one of the two sizes, anything else was cut or mangled. */
    if ((sec.len != 2 * labels[k].min_len && sec.len != 2 * labels[k].max_len) ||
        decode_hex(&sec, labels[k].min_len, labels[k].max_len, secret, &slen) != 0)
        return bad_line(kl, "the secret has the wrong length (truncated?)");
    kl->st.lines++;
    if (labels[k].label < 0) {
        kl->st.ignored_lines++;
        return LK_IGNORED;
    }
    *rc = insert(kl, random, labels[k].label, secret, slen);
    return LK_GOOD;
}

/* The provisional parse of the last line is void: more bytes of that line arrived. */
static void undo_tail(struct cap_keylog *kl)
{
    uint64_t entries = kl->st.entries, reloads = kl->st.reloads, conflicts = kl->st.conflicts;
    if (!kl->tail_parsed)
        return;
    kl->tail_parsed = 0;
    kl->st = kl->tail_saved;
    kl->st.entries = entries; /* the table keeps what was inserted */
    kl->st.reloads = reloads;
    kl->st.conflicts = conflicts;
    memcpy(kl->first_error, kl->tail_saved_error, sizeof(kl->first_error));
}

static int end_line(struct cap_keylog *kl)
{
    int rc = 0;
    if (kl->line_overflow)
        bad_line(kl, "line too long");
    else
        parse_line(kl, kl->line, kl->line_len, &rc);
    kl->line_len = 0;
    kl->line_overflow = 0;
    kl->line_no++;
    return rc;
}

/* ---- public API ---- */

struct cap_keylog *cap_keylog_new(void)
{
    struct cap_keylog *kl = calloc(1, sizeof(*kl));
    if (!kl)
        return NULL;
    kl->line_no = 1;
    kl->seed = (uint64_t)(uintptr_t)kl ^ (uint64_t)mono_ns();
    return kl;
}

int cap_keylog_feed(struct cap_keylog *kl, const uint8_t *buf, size_t len)
{
    size_t i = 0;
    if (len == 0)
        return 0;
    undo_tail(kl);
    while (i < len) {
        const uint8_t *nl = memchr(buf + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (buf + i)) : len - i;
        int rc;
        if (!kl->line_overflow) {
            if (n > KL_LINE_MAX - kl->line_len) {
                kl->line_overflow = 1;
            } else {
                memcpy(kl->line + kl->line_len, buf + i, n);
                kl->line_len += n;
            }
        }
        i += n;
        if (!nl)
            break;
        i++; /* the '\n' */
        rc = end_line(kl);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int cap_keylog_end(struct cap_keylog *kl)
{
    int rc = 0;
    if (kl->tail_parsed || (kl->line_len == 0 && !kl->line_overflow))
        return 0;
    kl->tail_saved = kl->st;
    memcpy(kl->tail_saved_error, kl->first_error, sizeof(kl->first_error));
    if (kl->line_overflow)
        bad_line(kl, "line too long");
    else
        parse_line(kl, kl->line, kl->line_len, &rc);
    kl->tail_parsed = 1;
    return rc;
}

/* Reads the file from kl->file_off to its end into the parser. */
static int read_from(struct cap_keylog *kl, FILE *f)
{
    uint8_t *buf = malloc(KL_READ_CHUNK);
    int rc = 0;
    if (!buf)
        return H2R_ERR_NOMEM;
    if (kl->file_off > 0 && fseeko(f, (off_t)kl->file_off, SEEK_SET) != 0) {
        rc = H2R_ERR_IO;
        goto out;
    }
    for (;;) {
        size_t n = fread(buf, 1, KL_READ_CHUNK, f);
        if (n > 0) {
            rc = cap_keylog_feed(kl, buf, n);
            if (rc != 0)
                goto out;
            kl->file_off += n;
        }
        if (n < KL_READ_CHUNK) {
            if (ferror(f))
                rc = H2R_ERR_IO;
            break;
        }
    }
    if (rc == 0)
        rc = cap_keylog_end(kl);
out:
    free(buf);
    return rc;
}

struct cap_keylog *cap_keylog_open(const char *path, char *errbuf, size_t errlen)
{
    struct cap_keylog *kl = NULL;
    struct stat sb;
    FILE *f = NULL;
    int rc;

    f = fopen(path, "rb");
    if (!f) {
        h2r_seterr(errbuf, errlen, H2R_ERR_IO, "key log %s: %s", path, strerror(errno));
        goto fail;
    }
    if (fstat(fileno(f), &sb) != 0 || S_ISDIR(sb.st_mode)) {
        h2r_seterr(errbuf, errlen, H2R_ERR_IO, "key log %s: not a readable file", path);
        goto fail;
    }
    kl = cap_keylog_new();
    if (!kl)
        goto fail_nomem;
    kl->path = strdup(path);
    if (!kl->path)
        goto fail_nomem;
    kl->dev = sb.st_dev;
    kl->ino = sb.st_ino;
    kl->last_reload_ns = mono_ns();
    kl->reload_gap_ns = KL_RELOAD_MIN_NS;
    rc = read_from(kl, f);
    if (rc == H2R_ERR_NOMEM)
        goto fail_nomem;
    if (rc != 0) {
        h2r_seterr(errbuf, errlen, rc, "key log %s: read error: %s", path, strerror(errno));
        goto fail;
    }
    if (kl->st.lines == 0 && (kl->st.bad_lines > 0 || kl->st.unknown_labels > 0)) {
        h2r_seterr(errbuf, errlen, H2R_ERR_FORMAT,
                   "key log %s: no valid key line (%llu bad, %llu unknown labels; %s): not an NSS "
                   "key log (SSLKEYLOGFILE)?",
                   path, (unsigned long long)kl->st.bad_lines,
                   (unsigned long long)kl->st.unknown_labels,
                   kl->first_error[0] ? kl->first_error : "no known label");
        goto fail;
    }
    fclose(f);
    return kl;

fail_nomem:
    h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "key log %s: out of memory", path);
fail:
    if (f)
        fclose(f);
    cap_keylog_free(kl);
    return NULL;
}

int cap_keylog_reload(struct cap_keylog *kl)
{
    struct stat sb;
    FILE *f;
    int rc;

    if (!kl->path)
        return 0;
    kl->st.reload_checks++;
    if (stat(kl->path, &sb) != 0)
        return H2R_ERR_IO; /* removed for now: keep what we have */
    if (sb.st_dev != kl->dev || sb.st_ino != kl->ino || (uint64_t)sb.st_size < kl->file_off) {
        /* Replaced or truncated: parse it again from the start (known secrets stay). */
        undo_tail(kl);
        kl->dev = sb.st_dev;
        kl->ino = sb.st_ino;
        kl->file_off = 0;
        kl->line_len = 0;
        kl->line_overflow = 0;
        kl->line_no = 1;
    } else if ((uint64_t)sb.st_size == kl->file_off) {
        return 0;
    }
    f = fopen(kl->path, "rb");
    if (!f)
        return H2R_ERR_IO;
    kl->st.reloads++;
    rc = read_from(kl, f);
    fclose(f);
    return rc;
}

void cap_keylog_set_follow(struct cap_keylog *kl, int follow)
{
    kl->follow = follow ? 1 : 0;
}

int cap_keylog_following(const struct cap_keylog *kl)
{
    return kl->follow && kl->path != NULL;
}

int cap_keylog_lookup(struct cap_keylog *kl, const uint8_t client_random[CAP_KEYLOG_RANDOM_LEN],
                      enum cap_keylog_label label, uint8_t out[CAP_KEYLOG_MAX_SECRET],
                      size_t *out_len, int force)
{
    const struct kl_entry *e;
    int64_t now;
    int rc;

    if ((unsigned)label >= CAP_KL_N)
        return CAP_KEYLOG_MISSING;
    e = find(kl, client_random);
    if (!e || !(e->have & (1u << label))) {
        uint64_t seen;
        if (!kl->path)
            return CAP_KEYLOG_MISSING;
        now = mono_ns();
        if (!force && now - kl->last_reload_ns < kl->reload_gap_ns)
            return CAP_KEYLOG_MISSING;
        kl->last_reload_ns = now;
        seen = kl->file_off;
        rc = cap_keylog_reload(kl);
        if (rc == H2R_ERR_NOMEM)
            return rc;
        if (kl->file_off != seen)
            kl->reload_gap_ns = KL_RELOAD_MIN_NS;
        else if (kl->reload_gap_ns * 2 < CAP_KEYLOG_RELOAD_NS)
            kl->reload_gap_ns *= 2;
        else
            kl->reload_gap_ns = CAP_KEYLOG_RELOAD_NS;
        e = find(kl, client_random);
        if (!e || !(e->have & (1u << label)))
            return CAP_KEYLOG_MISSING;
    }
    memcpy(out, e->secret[label], e->len[label]);
    *out_len = e->len[label];
    return CAP_KEYLOG_FOUND;
}

const struct cap_keylog_stats *cap_keylog_stats(const struct cap_keylog *kl)
{
    return &kl->st;
}

const char *cap_keylog_first_error(const struct cap_keylog *kl)
{
    return kl->first_error;
}

int cap_keylog_stats_export(const struct cap_keylog *kl, struct cap_counter_list *l)
{
    if (!kl)
        return 0;
    const struct {
        const char *name;
        uint64_t value;
    } v[] = {
        {"keylog.lines", kl->st.lines},
        {"keylog.bad_lines", kl->st.bad_lines},
        {"keylog.first_bad_line", kl->st.first_bad_line},
        {"keylog.unknown_labels", kl->st.unknown_labels},
        {"keylog.ignored_lines", kl->st.ignored_lines},
        {"keylog.conflicts", kl->st.conflicts},
        {"keylog.table_full", kl->st.table_full},
        {"keylog.client_randoms", kl->st.entries},
        {"keylog.reloads", kl->st.reloads},
        {"keylog.reload_checks", kl->st.reload_checks},
        {"keylog.empty", kl->st.lines == 0 ? 1 : 0},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int rc = cap_counter_add(l, v[i].name, v[i].value);
        if (rc != 0)
            return rc;
    }
    return 0;
}

void cap_keylog_free(struct cap_keylog *kl)
{
    if (!kl)
        return;
    if (kl->tab) {
        /* Secrets do not outlive the capture in freed heap memory. */
        memset(kl->tab, 0, kl->cap * sizeof(*kl->tab));
        free(kl->tab);
    }
    free(kl->path);
    free(kl);
}
