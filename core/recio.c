/*
 * zstd-framed record streams (see recio.h for the layout).
 *
 * The writer feeds every record through one ZSTD_CCtx with the content
 * checksum on and ends a frame every frame_bytes of input, so damage is
 * detected per frame and a killed writer loses at most its last frame. The
 * reader is a pull parser over ZSTD_decompressStream: a sliding window of
 * decompressed bytes from which whole records are cut; a record larger than
 * H2R_TRACE_MAX_RECORD is refused rather than buffered.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "h2replay/error.h"
#include "h2replay/trace.h"
#include "h2replay/fields.h"
#include "recio.h"

struct recio_writer {
    FILE *f;
    int own_file;
    ZSTD_CCtx *cctx;
    uint8_t *out;
    size_t out_cap;
    uint64_t frame_bytes;
    uint64_t in_frame; /* uncompressed bytes in the current frame */
    uint64_t written;  /* compressed bytes written */
    struct h2r_buf hdr;
    int error;
    char errmsg[256];
    char path[256];
};

static int writer_fail(struct recio_writer *w, int err, const char *what)
{
    if (!w->error) {
        w->error = err;
        snprintf(w->errmsg, sizeof(w->errmsg), "%s: %s", w->path, what);
    }
    return w->error;
}

/* Runs the compressor over in[0..n) with the given end directive and writes all output. */
static int writer_pump(struct recio_writer *w, const void *in, size_t n, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer ib = {in, n, 0};
    for (;;) {
        ZSTD_outBuffer ob = {w->out, w->out_cap, 0};
        size_t rem = ZSTD_compressStream2(w->cctx, &ob, &ib, mode);
        if (ZSTD_isError(rem))
            return writer_fail(w, H2R_ERR_COMPRESS, ZSTD_getErrorName(rem));
        if (ob.pos && fwrite(w->out, 1, ob.pos, w->f) != ob.pos)
            return writer_fail(w, H2R_ERR_IO, strerror(errno));
        w->written += ob.pos;
        if (mode == ZSTD_e_continue ? ib.pos == ib.size : rem == 0)
            return 0;
    }
}

static int writer_end_frame(struct recio_writer *w)
{
    if (w->in_frame == 0)
        return 0;
    int rc = writer_pump(w, NULL, 0, ZSTD_e_end);
    w->in_frame = 0;
    return rc;
}

static int writer_feed(struct recio_writer *w, const void *p, size_t n)
{
    int rc = writer_pump(w, p, n, ZSTD_e_continue);
    if (rc)
        return rc;
    w->in_frame += n;
    return 0;
}

int recio_writer_open(struct recio_writer **out, const char *path, const char magic[8],
                      uint32_t version, int level, uint64_t frame_bytes, char *errbuf,
                      size_t errlen)
{
    int err;
    struct recio_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    snprintf(w->path, sizeof(w->path), "%s", path);
    if (strcmp(path, "-") == 0) {
        w->f = stdout;
    } else {
        w->f = fopen(path, "wb");
        w->own_file = 1;
    }
    if (!w->f) {
        err = h2r_seterr(errbuf, errlen, H2R_ERR_IO, "%s: cannot create: %s", path,
                         strerror(errno));
        goto fail_file;
    }
    w->cctx = ZSTD_createCCtx();
    w->out_cap = ZSTD_CStreamOutSize();
    w->out = malloc(w->out_cap);
    if (!w->cctx || !w->out) {
        err = h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
        goto fail_zstd;
    }
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level ? level : 3);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
    w->frame_bytes = frame_bytes ? frame_bytes : 4u * 1024u * 1024u;
    h2r_buf_init(&w->hdr, 32);

    h2r_buf_append(&w->hdr, magic, RECIO_MAGIC_LEN);
    h2r_buf_put_varint(&w->hdr, version);
    if (w->hdr.failed) {
        err = h2r_seterr(errbuf, errlen, w->hdr.failed, "out of memory");
        goto fail_header;
    }
    if (writer_feed(w, w->hdr.p, w->hdr.len) != 0) {
        err = h2r_seterr(errbuf, errlen, w->error, "%s", w->errmsg);
        goto fail_header;
    }
    *out = w;
    return 0;

fail_header:
    h2r_buf_free(&w->hdr);
fail_zstd:
    free(w->out);
    ZSTD_freeCCtx(w->cctx);
    if (w->own_file)
        fclose(w->f);
fail_file:
    free(w);
    return err;
}

int recio_write(struct recio_writer *w, uint32_t kind, const void *payload, size_t len)
{
    if (w->error)
        return w->error;
    if (len > H2R_TRACE_MAX_RECORD)
        return writer_fail(w, H2R_ERR_LIMIT, "record larger than the format's limit");
    h2r_buf_reset(&w->hdr);
    h2r_buf_put_varint(&w->hdr, kind);
    h2r_buf_put_varint(&w->hdr, len);
    if (w->hdr.failed)
        return writer_fail(w, w->hdr.failed, "out of memory");
    int rc = writer_feed(w, w->hdr.p, w->hdr.len);
    if (!rc && len)
        rc = writer_feed(w, payload, len);
    if (!rc && w->in_frame >= w->frame_bytes)
        rc = writer_end_frame(w);
    return rc;
}

int recio_writer_flush(struct recio_writer *w)
{
    int rc = writer_end_frame(w);
    if (!rc && fflush(w->f) != 0)
        rc = writer_fail(w, H2R_ERR_IO, strerror(errno));
    return rc;
}

uint64_t recio_writer_bytes(const struct recio_writer *w)
{
    return w->written;
}

const char *recio_writer_errmsg(const struct recio_writer *w)
{
    return w->errmsg;
}

int recio_writer_close(struct recio_writer *w)
{
    if (!w)
        return 0;
    int rc = w->error;
    if (!rc)
        rc = writer_end_frame(w);
    if (w->own_file) {
        if (fclose(w->f) != 0 && !rc)
            rc = writer_fail(w, H2R_ERR_IO, strerror(errno));
    } else if (fflush(w->f) != 0 && !rc) {
        rc = writer_fail(w, H2R_ERR_IO, strerror(errno));
    }
    ZSTD_freeCCtx(w->cctx);
    free(w->out);
    h2r_buf_free(&w->hdr);
    free(w);
    return rc;
}

/* ------------------------------------------------------------------ reader */

struct recio_reader {
    FILE *f;
    int own_file;
    const uint8_t *mem; /* memory source, or NULL */
    size_t mem_len;
    ZSTD_DCtx *dctx;
    uint8_t *in;
    size_t in_cap;
    ZSTD_inBuffer ib;
    uint64_t consumed;   /* compressed bytes consumed by zstd */
    int src_eof;
    size_t frame_rem;    /* last ZSTD_decompressStream hint: 0 = at a frame boundary */
    int any_frame;
    int zstd_magic; /* the source starts with a zstd frame magic number */
    /* decompressed window: win[pos..len) not yet parsed */
    uint8_t *win;
    size_t win_pos, win_len, win_cap;
    uint32_t version;
    uint64_t records;
    int error;
    char errmsg[320];
    char name[200];
};

static int reader_fail(struct recio_reader *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int reader_fail(struct recio_reader *r, int err, const char *fmt, ...)
{
    if (r->error)
        return r->error;
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    r->error = err;
    snprintf(r->errmsg, sizeof(r->errmsg),
             "%s: %s (compressed offset %" PRIu64 ", after %" PRIu64 " records)", r->name, what,
             r->consumed, r->records);
    return err;
}

/* Refills the compressed input buffer. Returns 0, or sets src_eof. */
static int reader_refill_input(struct recio_reader *r)
{
    if (r->ib.pos < r->ib.size || r->src_eof)
        return 0;
    if (r->mem) {
        size_t off = (size_t)r->consumed;
        if (off >= r->mem_len) {
            r->src_eof = 1;
            return 0;
        }
        if (off == 0)
            r->zstd_magic = r->mem_len >= 4 && r->mem[0] == 0x28 && r->mem[1] == 0xb5 &&
                            r->mem[2] == 0x2f && r->mem[3] == 0xfd;
        r->ib.src = r->mem + off;
        r->ib.size = r->mem_len - off;
        r->ib.pos = 0;
        return 0;
    }
    size_t n = fread(r->in, 1, r->in_cap, r->f);
    if (n == 0) {
        if (ferror(r->f))
            return reader_fail(r, H2R_ERR_IO, "read error: %s", strerror(errno));
        r->src_eof = 1;
        return 0;
    }
    if (r->consumed == 0)
        r->zstd_magic = n >= 4 && r->in[0] == 0x28 && r->in[1] == 0xb5 && r->in[2] == 0x2f &&
                        r->in[3] == 0xfd;
    r->ib.src = r->in;
    r->ib.size = n;
    r->ib.pos = 0;
    return 0;
}

/*
 * Decompresses until at least `need` bytes wait in the window or the input
 * ends. Returns the number of bytes available (fewer than `need` only at the
 * end of the input, at a frame boundary), or a negative code.
 */
static int64_t reader_fill(struct recio_reader *r, size_t need)
{
    if (need > H2R_TRACE_MAX_RECORD + 32)
        return reader_fail(r, H2R_ERR_LIMIT, "record of %zu bytes exceeds the limit", need);
    while (r->win_len - r->win_pos < need) {
        /* make room: slide, then grow */
        if (r->win_pos > 0) {
            memmove(r->win, r->win + r->win_pos, r->win_len - r->win_pos);
            r->win_len -= r->win_pos;
            r->win_pos = 0;
        }
        size_t want = need + ZSTD_DStreamOutSize();
        if (r->win_cap < want) {
            uint8_t *nw = realloc(r->win, want);
            if (!nw)
                return reader_fail(r, H2R_ERR_NOMEM, "out of memory");
            r->win = nw;
            r->win_cap = want;
        }
        int rc = reader_refill_input(r);
        if (rc)
            return rc;
        if (r->src_eof && r->ib.pos >= r->ib.size) {
            if (r->frame_rem != 0)
                return reader_fail(r, H2R_ERR_TRUNCATED,
                                   "file ends inside a zstd frame (writer killed?)");
            break;
        }
        ZSTD_outBuffer ob = {r->win, r->win_cap, r->win_len};
        size_t before = r->ib.pos;
        size_t rem = ZSTD_decompressStream(r->dctx, &ob, &r->ib);
        r->consumed += r->ib.pos - before;
        if (ZSTD_isError(rem))
            return reader_fail(r, H2R_ERR_COMPRESS, "corrupt data: %s", ZSTD_getErrorName(rem));
        r->frame_rem = rem;
        r->any_frame = 1;
        r->win_len = ob.pos;
    }
    return (int64_t)(r->win_len - r->win_pos);
}

/* Reads a varint. Returns 1, 0 on a clean end (only when at_boundary), or a negative code. */
static int reader_varint(struct recio_reader *r, uint64_t *v, int at_boundary)
{
    int64_t avail = reader_fill(r, 10);
    if (avail < 0)
        return (int)avail;
    if (avail == 0) {
        if (at_boundary)
            return 0;
        return reader_fail(r, H2R_ERR_TRUNCATED, "file ends inside a record");
    }
    struct fld_cursor c = {r->win + r->win_pos, (size_t)(avail < 10 ? avail : 10)};
    int rc = fld_get_varint(&c, v);
    if (rc == H2R_ERR_TRUNCATED)
        return reader_fail(r, H2R_ERR_TRUNCATED, "file ends inside a record");
    if (rc)
        return reader_fail(r, H2R_ERR_FORMAT, "bad varint");
    r->win_pos += (size_t)(c.p - (r->win + r->win_pos));
    return 1;
}

static int reader_init(struct recio_reader *r, const char magic[8], uint32_t max_version,
                       char *errbuf, size_t errlen)
{
    r->dctx = ZSTD_createDCtx();
    if (!r->dctx)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    /* bound the decoder's window: our writers never use long-distance windows */
    ZSTD_DCtx_setParameter(r->dctx, ZSTD_d_windowLogMax, 27);
    if (!r->mem) {
        r->in_cap = ZSTD_DStreamInSize();
        r->in = malloc(r->in_cap);
        if (!r->in)
            return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    }
    int64_t avail = reader_fill(r, RECIO_MAGIC_LEN);
    if (avail == 0 && !r->any_frame)
        return h2r_seterr(errbuf, errlen, H2R_ERR_FORMAT, "%s: empty file", r->name);
    if (avail < 0 && r->error == H2R_ERR_COMPRESS && r->win_len == 0 && !r->zstd_magic)
        return h2r_seterr(errbuf, errlen, H2R_ERR_FORMAT,
                          "%s: not an h2replay file (not zstd-compressed)", r->name);
    if (avail < 0 && r->error == H2R_ERR_COMPRESS && r->win_len == 0)
        return h2r_seterr(errbuf, errlen, H2R_ERR_FORMAT,
                          "%s; the file is damaged in its first zstd block", r->errmsg);
    if (avail < 0)
        return h2r_seterr(errbuf, errlen, (int)avail, "%s", r->errmsg);
    if (avail < RECIO_MAGIC_LEN)
        return h2r_seterr(errbuf, errlen, H2R_ERR_TRUNCATED, "%s: truncated file header",
                          r->name);
    if (memcmp(r->win + r->win_pos, magic, RECIO_MAGIC_LEN) != 0)
        return h2r_seterr(errbuf, errlen, H2R_ERR_FORMAT,
                          "%s: wrong magic: expected \"%.8s\" (is this the right kind of file?)",
                          r->name, magic);
    r->win_pos += RECIO_MAGIC_LEN;
    uint64_t v;
    int rc = reader_varint(r, &v, 0);
    if (rc < 0)
        return h2r_seterr(errbuf, errlen, rc, "%s", r->errmsg);
    if (v == 0 || v > max_version)
        return h2r_seterr(errbuf, errlen, H2R_ERR_VERSION,
                          "%s: format version %" PRIu64 " (this build reads up to %u)", r->name,
                          v, max_version);
    r->version = (uint32_t)v;
    return 0;
}

int recio_reader_open(struct recio_reader **out, const char *path, const char magic[8],
                      uint32_t max_version, char *errbuf, size_t errlen)
{
    struct recio_reader *r = calloc(1, sizeof(*r));
    if (!r)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    snprintf(r->name, sizeof(r->name), "%s", path);
    if (strcmp(path, "-") == 0) {
        r->f = stdin;
    } else {
        r->f = fopen(path, "rb");
        r->own_file = 1;
        if (!r->f) {
            int err = h2r_seterr(errbuf, errlen, H2R_ERR_IO, "%s: cannot open: %s", path,
                                 strerror(errno));
            free(r);
            return err;
        }
    }
    int rc = reader_init(r, magic, max_version, errbuf, errlen);
    if (rc) {
        recio_reader_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int recio_reader_open_mem(struct recio_reader **out, const void *buf, size_t len,
                          const char magic[8], uint32_t max_version, char *errbuf,
                          size_t errlen)
{
    struct recio_reader *r = calloc(1, sizeof(*r));
    if (!r)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    snprintf(r->name, sizeof(r->name), "(memory)");
    static const uint8_t empty[1];
    r->mem = len ? buf : empty;
    r->mem_len = len;
    int rc = reader_init(r, magic, max_version, errbuf, errlen);
    if (rc) {
        recio_reader_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

uint32_t recio_reader_version(const struct recio_reader *r)
{
    return r->version;
}

int recio_next(struct recio_reader *r, uint32_t *kind, const uint8_t **payload, size_t *len)
{
    if (r->error)
        return r->error;
    uint64_t k, n;
    int rc = reader_varint(r, &k, 1);
    if (rc <= 0)
        return rc;
    rc = reader_varint(r, &n, 0);
    if (rc < 0)
        return rc;
    if (k > UINT32_MAX)
        return reader_fail(r, H2R_ERR_FORMAT, "bad record kind %" PRIu64, k);
    if (n > H2R_TRACE_MAX_RECORD)
        return reader_fail(r, H2R_ERR_LIMIT, "record of %" PRIu64 " bytes exceeds the limit", n);
    int64_t avail = reader_fill(r, (size_t)n);
    if (avail < 0)
        return (int)avail;
    if ((uint64_t)avail < n)
        return reader_fail(r, H2R_ERR_TRUNCATED, "file ends inside a record");
    *kind = (uint32_t)k;
    *payload = r->win + r->win_pos;
    *len = (size_t)n;
    r->win_pos += (size_t)n;
    r->records++;
    return 1;
}

uint64_t recio_reader_offset(const struct recio_reader *r)
{
    return r->consumed;
}

uint64_t recio_reader_records(const struct recio_reader *r)
{
    return r->records;
}

const char *recio_reader_errmsg(const struct recio_reader *r)
{
    return r->errmsg;
}

void recio_reader_free(struct recio_reader *r)
{
    if (!r)
        return;
    if (r->own_file && r->f)
        fclose(r->f);
    ZSTD_freeDCtx(r->dctx);
    free(r->in);
    free(r->win);
    free(r);
}
