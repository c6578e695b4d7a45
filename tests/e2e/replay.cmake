# Replay end-to-end tests (label e2e), included from replay/CMakeLists.txt when H2R_E2E is ON.
# Each script starts its own peers on free loopback ports, bounds every wait,
# and exits 77 (skipped) when a peer it needs (nghttpd, openssl...) is missing.
#
#   e2e_replay_h2c      nghttpd h2c: 1x, 10x and max; every exchange gets its recorded status
#   e2e_replay_tls      nghttpd TLS (self-signed): verify failure -> tls; --cacert and --insecure ok
#   e2e_replay_faults   h2stub / killed servers: refused, stream_reset, goaway, deadline_exceeded,
#                       conn_closed, http_status; SIGINT -> cancelled/skipped; --between
#   e2e_replay_capture  tcpdump + nghttp/h2load -> h2replay capture -> replay (needs root)
set(rp_e2e_tools
    H2REPLAY=$<TARGET_FILE:h2replay> H2STUB=$<TARGET_FILE:h2stub>
    RP_MKTRACE=$<TARGET_FILE:rp_mktrace> RP_RUNCAT=$<TARGET_FILE:rp_runcat>)
foreach(t h2c tls faults capture)
  add_test(NAME e2e_replay_${t}
           COMMAND ${CMAKE_COMMAND} -E env ${rp_e2e_tools}
                   bash ${PROJECT_SOURCE_DIR}/tests/e2e/replay_${t}.sh
                   ${CMAKE_CURRENT_BINARY_DIR}/e2e-replay-${t})
  set_tests_properties(e2e_replay_${t} PROPERTIES LABELS e2e TIMEOUT 120 SKIP_RETURN_CODE 77)
endforeach()
set_tests_properties(e2e_replay_capture PROPERTIES RESOURCE_LOCK h2r_loopback_capture)
