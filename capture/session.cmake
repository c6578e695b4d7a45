# Session half of the capture stage (included by capture/CMakeLists.txt).
#   h2r_capture_session  transport detection, TLS decryption with a key log, passive
#                        HTTP/2 + HPACK decoding, exchange assembly, redaction, TS2021
#                        session shapes (cap_ts.c over core/ts); pure push parsers writing
#                        through a sink (cap_keylog.c also reads its file)
add_library(h2r_capture_session STATIC
  ${CMAKE_CURRENT_SOURCE_DIR}/cap_session.c
  ${CMAKE_CURRENT_SOURCE_DIR}/cap_h2.c
  ${CMAKE_CURRENT_SOURCE_DIR}/cap_exchange.c
  ${CMAKE_CURRENT_SOURCE_DIR}/cap_redact.c
  ${CMAKE_CURRENT_SOURCE_DIR}/cap_keylog.c
  ${CMAKE_CURRENT_SOURCE_DIR}/cap_tls.c
  ${CMAKE_CURRENT_SOURCE_DIR}/cap_ts.c)
target_include_directories(h2r_capture_session PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
# libcrypto: SHA-256 for the salted placeholder table in cap_redact.c; EVP AEAD ciphers,
# HKDF and the TLS 1.2 PRF for TLS decryption in cap_tls.c.
# h2r_ts: TS2021 framing, base64 and the Noise responder that reads the machine key.
target_link_libraries(h2r_capture_session PUBLIC h2r_capture_stats h2r_core h2r_ts
                      PkgConfig::NGHTTP2 PkgConfig::JANSSON PkgConfig::OPENSSL)

set(_h2r_sess_tests ${PROJECT_SOURCE_DIR}/tests/unit/capture)
h2r_unit_test(test_cap_h2_passive
  SOURCES ${_h2r_sess_tests}/test_h2_passive.c
  LIBS h2r_capture_session)
h2r_unit_test(test_cap_session
  SOURCES ${_h2r_sess_tests}/test_session.c
  LIBS h2r_capture_session)
h2r_unit_test(test_cap_redact
  SOURCES ${_h2r_sess_tests}/test_redact.c
  LIBS h2r_capture_session)
h2r_unit_test(test_cap_tls
  SOURCES ${_h2r_sess_tests}/test_tls.c
  LIBS h2r_capture_session)
h2r_unit_test(test_cap_ts
  SOURCES ${_h2r_sess_tests}/test_ts.c
  LIBS h2r_capture_session)

set(_h2r_sess_fuzz ${PROJECT_SOURCE_DIR}/tests/fuzz)
h2r_fuzz_target(fuzz_h2_frames
  SOURCE ${_h2r_sess_fuzz}/fuzz_h2_frames.c
  LIBS h2r_capture_session
  CORPUS ${_h2r_sess_fuzz}/corpus/h2_frames)
h2r_fuzz_target(fuzz_redact
  SOURCE ${_h2r_sess_fuzz}/fuzz_redact.c
  LIBS h2r_capture_session
  CORPUS ${_h2r_sess_fuzz}/corpus/redact)

h2r_fuzz_target(fuzz_tls_records
  SOURCE ${_h2r_sess_fuzz}/fuzz_tls_records.c
  LIBS h2r_capture_session
  CORPUS ${_h2r_sess_fuzz}/corpus/tls_records)
# TS2021 recognition through the whole session layer (corpus: see its README).
h2r_fuzz_target(fuzz_cap_ts
  SOURCE ${_h2r_sess_fuzz}/fuzz_cap_ts.c
  LIBS h2r_capture_session
  CORPUS ${_h2r_sess_fuzz}/corpus/cap_ts)
h2r_fuzz_target(fuzz_keylog
  SOURCE ${_h2r_sess_fuzz}/fuzz_keylog.c
  LIBS h2r_capture_session
  CORPUS ${_h2r_sess_fuzz}/corpus/keylog)

# Regenerates the committed corpora: gen_h2_corpus <corpus/h2_frames> <corpus/redact>
add_executable(gen_h2_corpus ${_h2r_sess_fuzz}/gen/gen_h2_corpus.c)
target_include_directories(gen_h2_corpus PRIVATE ${PROJECT_SOURCE_DIR}/tests)
target_link_libraries(gen_h2_corpus PRIVATE PkgConfig::NGHTTP2)

# Regenerates the TLS corpora: gen_tls_corpus <corpus/tls_records> <corpus/keylog>
add_executable(gen_tls_corpus ${_h2r_sess_fuzz}/gen/gen_tls_corpus.c)
target_include_directories(gen_tls_corpus PRIVATE ${PROJECT_SOURCE_DIR}/tests)
target_link_libraries(gen_tls_corpus PRIVATE h2r_capture_session)
