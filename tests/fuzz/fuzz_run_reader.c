/*
 * libFuzzer target for the run reader (core/run.c) and what analyze does
 * with its records (endpoint folding, per-run aggregation, windows, onset):
 * arbitrary bytes must give records or a clean error, never a crash, and
 * whatever times and strings a damaged file holds must aggregate safely.
 *
 * Run files are zstd frames with checksums, so random mutations of a file
 * rarely get past the decompressor. An input whose first byte is odd is
 * therefore taken as the *uncompressed* stream (magic, version, records) and
 * compressed here first: mutations then reach the record decoder.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "an_fold.h"
#include "an_run.h"
#include "h2replay/run.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct h2r_run_reader *rd = NULL;
    struct an_run *run = NULL, *ref = NULL;
    struct an_folder *folder = NULL;
    const char *rules[] = {"/v[0-9]+/=/v{n}/"};
    char err[256];
    static const uint8_t none[1];
    uint8_t *packed = NULL;
    if (size > 0 && (data[0] & 1)) {
        size_t cap = ZSTD_compressBound(size - 1);
        ZSTD_CCtx *cc = ZSTD_createCCtx();
        packed = malloc(cap);
        if (!cc || !packed) {
            ZSTD_freeCCtx(cc);
            free(packed);
            return 0;
        }
        ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
        size_t n = ZSTD_compress2(cc, packed, cap, data + 1, size - 1);
        ZSTD_freeCCtx(cc);
        if (ZSTD_isError(n)) {
            free(packed);
            return 0;
        }
        data = packed;
        size = n;
    }
    if (h2r_run_reader_open_mem(&rd, size ? data : none, size, err, sizeof(err)) != 0) {
        free(packed);
        return 0;
    }
    if (an_folder_new(&folder, rules, 1, err, sizeof(err)) != 0 ||
        an_run_new(&run, "fuzz", AN_KIND_RUN, 1000000000) != 0 ||
        an_run_new(&ref, "ref", AN_KIND_RUN, 1000000000) != 0)
        goto out;
    /* bounded: a fuzz input cannot hold more records than bytes */
    for (size_t n = 0; n <= size; n++) {
        struct h2r_run_record rec;
        int rc = h2r_run_reader_next(rd, &rec);
        if (rc <= 0)
            break;
        if (rec.kind != H2R_RUN_REC_RESULT)
            continue;
        const struct h2r_run_result *r = &rec.u.result;
        struct an_obs x;
        memset(&x, 0, sizeof(x));
        x.id = r->exchange_id;
        x.method = r->method;
        x.path = r->path;
        x.grpc = (r->flags & H2R_RES_F_GRPC) != 0;
        x.conn = r->conn_index;
        x.t_intended = r->t_intended_ns;
        x.t_sent = r->t_sent_ns ? r->t_sent_ns : -1;
        x.t_done = r->t_done_ns;
        x.cls = r->err_class;
        x.status = r->status;
        x.detail = r->err_detail;
        if (an_run_add(run, &x, folder, (int)(r->flags % 3)) != 0)
            break;
        x.cls = r->exchange_id & 1;
        if (an_run_add(ref, &x, folder, AN_GROUP_ENDPOINT) != 0)
            break;
    }
    (void)h2r_run_reader_skipped(rd);
    an_run_finish(run, 0.05, 3);
    an_run_finish(ref, 0.05, 3);
    an_run_compare(run, ref);
out:
    an_run_free(run);
    an_run_free(ref);
    an_folder_free(folder);
    h2r_run_reader_free(rd);
    free(packed);
    return 0;
}
