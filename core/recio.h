/*
 * Record streams: the container shared by trace and run files.
 *
 * Uncompressed layout: 8-byte magic, varint format version, then records
 * (varint kind, varint payload length, payload). The whole byte stream is
 * zstd-compressed as a sequence of frames with content checksums; writers end
 * a frame every `frame_bytes` of input and on flush, so a reader of a file
 * whose writer was killed still gets every record of the finished frames.
 * Readers hold one zstd window plus one record (capped), whatever the file size.
 */
#ifndef H2R_CORE_RECIO_H
#define H2R_CORE_RECIO_H

#include <stddef.h>
#include <stdint.h>

#define RECIO_MAGIC_LEN 8

struct recio_writer;
struct recio_reader;

/* Opens PATH ("-" = stdout) and writes magic + version. level 0 = 3; frame_bytes 0 = 4 MiB. */
int recio_writer_open(struct recio_writer **out, const char *path, const char magic[8],
                      uint32_t version, int level, uint64_t frame_bytes, char *errbuf,
                      size_t errlen);
/* Appends one record. Returns 0 or a negative code (details in recio_writer_errmsg). */
int recio_write(struct recio_writer *w, uint32_t kind, const void *payload, size_t len);
int recio_writer_flush(struct recio_writer *w);
uint64_t recio_writer_bytes(const struct recio_writer *w);
const char *recio_writer_errmsg(const struct recio_writer *w);
/* Ends the last frame, closes, frees; returns the first error seen. NULL is a no-op. */
int recio_writer_close(struct recio_writer *w);

/*
 * Opens PATH ("-" = stdin) or a memory buffer and checks magic and version
 * (versions above max_version are refused with H2R_ERR_VERSION).
 */
int recio_reader_open(struct recio_reader **out, const char *path, const char magic[8],
                      uint32_t max_version, char *errbuf, size_t errlen);
int recio_reader_open_mem(struct recio_reader **out, const void *buf, size_t len,
                          const char magic[8], uint32_t max_version, char *errbuf,
                          size_t errlen);
uint32_t recio_reader_version(const struct recio_reader *r);
/*
 * Next record: returns 1 with kind/payload/len set (payload borrowed until the
 * next call), 0 at a clean end, negative on error with the compressed offset
 * and record number in recio_reader_errmsg().
 */
int recio_next(struct recio_reader *r, uint32_t *kind, const uint8_t **payload, size_t *len);
/* Compressed bytes consumed so far, and records returned so far. */
uint64_t recio_reader_offset(const struct recio_reader *r);
uint64_t recio_reader_records(const struct recio_reader *r);
const char *recio_reader_errmsg(const struct recio_reader *r);
void recio_reader_free(struct recio_reader *r);

#endif
