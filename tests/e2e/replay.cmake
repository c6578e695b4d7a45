# Replay end-to-end tests (label e2e), included from replay/CMakeLists.txt when H2R_E2E is ON.
# Each script starts its own peers on free loopback ports, bounds every wait,
# and exits 77 (skipped) when a peer it needs (nghttpd, openssl...) is missing.
#
#   e2e_replay_h2c      nghttpd h2c: 1x, 10x and max; every exchange gets its recorded status
#   e2e_replay_tls      nghttpd TLS (self-signed): verify failure -> tls; --cacert and --insecure ok
#   e2e_replay_faults   h2stub / killed servers: refused, stream_reset, goaway, deadline_exceeded,
#                       conn_closed, http_status; SIGINT -> cancelled/skipped; --between
#   e2e_replay_capture  tcpdump + nghttp/h2load -> h2replay capture -> replay (needs root)
#   e2e_replay_shard    3 x --shard i/3 --start-at +2s, merged by analyze == one process
set(rp_e2e_tools
    H2REPLAY=$<TARGET_FILE:h2replay> H2STUB=$<TARGET_FILE:h2stub>
    RP_MKTRACE=$<TARGET_FILE:rp_mktrace> RP_RUNCAT=$<TARGET_FILE:rp_runcat>)
foreach(t h2c tls faults capture shard)
  add_test(NAME e2e_replay_${t}
           COMMAND ${CMAKE_COMMAND} -E env ${rp_e2e_tools}
                   bash ${PROJECT_SOURCE_DIR}/tests/e2e/replay_${t}.sh
                   ${CMAKE_CURRENT_BINARY_DIR}/e2e-replay-${t})
  set_tests_properties(e2e_replay_${t} PROPERTIES LABELS e2e TIMEOUT 120 SKIP_RETURN_CODE 77)
endforeach()
set_tests_properties(e2e_replay_capture PROPERTIES RESOURCE_LOCK h2r_loopback_capture)
#   e2e_replay_ts2021   TS2021 node sessions against Headscale v0.29.2 and v0.23.0, SQLite and
#                       PostgreSQL: 100 nodes register and see 99 peers; wrong key, low capver,
#                       wrong control key (skips unless a Headscale is installed or CI=true)
add_test(NAME e2e_replay_ts2021
         COMMAND ${CMAKE_COMMAND} -E env ${rp_e2e_tools}
                 bash ${PROJECT_SOURCE_DIR}/tests/e2e/replay_ts2021.sh
                 ${CMAKE_CURRENT_BINARY_DIR}/e2e-replay-ts2021)
set_tests_properties(e2e_replay_ts2021 PROPERTIES LABELS e2e TIMEOUT 300 SKIP_RETURN_CODE 77
                     RESOURCE_LOCK h2r_headscale)
#   e2e_ts_stub_smoke   tests/tools/ts_stub (the TS2021 control-server stub of
#                       scripts/bench-nodes.sh): 200 nodes all get a netmap with the stub's
#                       25 peers and keep-alives; a wrong control key is handshake_rejected
if(TARGET h2r_ts) # ts_stub is defined with it, after this file is included
  add_test(NAME e2e_ts_stub_smoke
           COMMAND ${CMAKE_COMMAND} -E env H2REPLAY=$<TARGET_FILE:h2replay>
                   TS_STUB=$<TARGET_FILE:ts_stub>
                   bash ${PROJECT_SOURCE_DIR}/tests/e2e/ts_stub_smoke.sh
                   ${CMAKE_CURRENT_BINARY_DIR}/e2e-ts-stub-smoke)
  set_tests_properties(e2e_ts_stub_smoke PROPERTIES LABELS e2e TIMEOUT 60 SKIP_RETURN_CODE 77)
endif()
