/*
 * The TS2021 transport: one more layer in the replay's transport stack
 * (rp_transport.h), between TCP or TLS and the nghttp2 client session.
 *
 *   handshake()  lower layer's handshake, then "POST /ts2021" carrying Noise
 *                msg1, the 101, the server's msg2 (ts_session does the parsing)
 *   read()       ciphertext from below -> ts_session -> plaintext (HTTP/2 from
 *                the server, EarlyNoise already removed)
 *   write()      plaintext -> sealed records -> below; bytes count as written
 *                once their records are all below (as SSL_write does), so the
 *                caller retries with the same bytes after RP_IO_RETRY
 *
 * Failures during the upgrade are class handshake_rejected; EOF after OPEN is
 * closed_by_server; a record that fails to decrypt is protocol. The protocol
 * core (core/ts/ts2021.h) does all parsing; this file only moves bytes.
 *
 * Also here: the one-off "GET /key?v=CAPVER" fetch of the control key, which
 * the driver runs once per target before the loops start.
 */
#ifndef H2R_RP_TS_H
#define H2R_RP_TS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "rp_transport.h"
#include "ts2021.h"

struct ssl_ctx_st;

/*
 * Wraps lower (TCP, or TLS with an HTTP/1.1 context) in a TS2021 client layer
 * for capability version capver, the node's machine key and the server's
 * control key; host is the Host header ("name[:port]"). On success the new
 * layer owns lower; on failure lower is untouched. Returns 0, H2R_ERR_NOMEM or
 * a ts_session_client_init() error (errbuf says which).
 */
int rp_ts_wrap(struct rp_io **out, struct rp_io *lower, uint16_t capver,
               const uint8_t machine_priv[TS_KEY_LEN], const uint8_t control_pub[TS_KEY_LEN],
               const char *host, char *errbuf, size_t errlen);

/* 1 once the Noise session is open (handshake() returned RP_IO_OK). */
int rp_ts_is_open(const struct rp_io *io);

/* Bytes of the lowest layers: plaintext and records exchanged so far (diagnostics). */
void rp_ts_counters(const struct rp_io *io, uint64_t *records_in, uint64_t *records_out);

/*
 * Fetches the control key with "GET /key?v=capver" on a new connection to addr
 * (TLS when ssl_ctx is not NULL: an rp_tls_ctx_new_alpn(.., http1 = 1, ..)
 * context, host / host_ip as for rp_tls_wrap). Blocks the calling thread for
 * at most timeout_ns. authority is the Host header. Returns 0 with
 * control_pub set, or a negative code with errbuf saying what failed
 * (connection, HTTP status, JSON, a server too old for Noise) and *cls its
 * run-file class (refused, connect_timeout, tls, io; handshake_rejected when
 * the server answered but gave no usable key).
 */
int rp_ts_fetch_key(const struct sockaddr *addr, socklen_t addr_len, struct ssl_ctx_st *ssl_ctx,
                    const char *host, int host_ip, const char *authority, uint16_t capver,
                    int64_t timeout_ns, uint8_t control_pub[TS_KEY_LEN], uint32_t *cls,
                    char *errbuf, size_t errlen);

#endif
