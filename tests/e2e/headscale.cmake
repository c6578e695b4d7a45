# Real Headscale end-to-end tests (label e2e), included from tests/e2e/e2e.cmake.
#
#   e2e_headscale_replay_<release>_<db>
#       tests/e2e/headscale_replay.sh: the committed gRPC registration trace
#       (traces/headscale-grpc*.h2rt) replayed with --db against Headscale v0.29.2 and v0.23.0
#       on SQLite and PostgreSQL: recorded gRPC status at 1x and 10x, snapshot -> replay ->
#       restore -> replay gives the same row counts, verify finds a row deleted behind the
#       server's back, restore refuses a non-local DSN before connecting.
#       Skipped (77) when the release is not in .cache/bin (scripts/install-headscale.sh) or
#       PostgreSQL is missing, unless CI=true. One at a time (RESOURCE_LOCK h2r_headscale).
if(NOT TARGET h2replay)
  return()
endif()
#   e2e_headscale_acks_<release>_<db>
#       tests/e2e/headscale_acks.sh: the same trace replayed with --db records an ack per
#       creation the server confirmed and a verify record with 0 lost (analyze shows it, with
#       the replay client's resources); `db verify --run` agrees, and reports a user deleted
#       behind the server's back as lost.
foreach(hs_version v0.29.2 v0.23.0)
  foreach(hs_db sqlite postgres)
    set(name e2e_headscale_acks_${hs_version}_${hs_db})
    add_test(NAME ${name}
             COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/headscale_acks.sh $<TARGET_FILE:h2replay>
                     ${hs_version} ${hs_db} ${CMAKE_CURRENT_BINARY_DIR}/${name})
    set_tests_properties(${name} PROPERTIES LABELS e2e TIMEOUT 300 SKIP_RETURN_CODE 77
                         RESOURCE_LOCK h2r_headscale)
  endforeach()
endforeach()
foreach(hs_version v0.29.2 v0.23.0)
  foreach(hs_db sqlite postgres)
    set(name e2e_headscale_replay_${hs_version}_${hs_db})
    add_test(NAME ${name}
             COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/headscale_replay.sh $<TARGET_FILE:h2replay>
                     ${hs_version} ${hs_db} ${CMAKE_CURRENT_BINARY_DIR}/${name})
    set_tests_properties(${name} PROPERTIES LABELS e2e TIMEOUT 300 SKIP_RETURN_CODE 77
                         RESOURCE_LOCK h2r_headscale)
  endforeach()
endforeach()

# e2e_matrix_quick
#     tests/e2e/matrix_quick.sh: scripts/matrix.sh --quick (v0.29.2 x SQLite, PostgreSQL x 20
#     TS2021 nodes) exits 0 and writes report.md/report.html with both cells and every column.
#     40 s (synthetic sessions) to ~2 min (captured sessions); skipped (77) without Headscale
#     v0.29.2 or PostgreSQL unless CI=true.
add_test(NAME e2e_matrix_quick
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/matrix_quick.sh $<TARGET_FILE:h2replay>
                 ${CMAKE_CURRENT_BINARY_DIR}/e2e_matrix_quick)
set_tests_properties(e2e_matrix_quick PROPERTIES LABELS e2e TIMEOUT 300 SKIP_RETURN_CODE 77
                     RUN_SERIAL TRUE RESOURCE_LOCK h2r_headscale)

#   e2e_replay_ts2021_trace
#       tests/e2e/replay_ts2021_trace.sh: captured TS2021 sessions (traces/tailscale-sample.h2rt,
#       else a trace made with rp_mktrace) replayed against Headscale v0.29.2 (SQLite and
#       PostgreSQL) and v0.23.0 (SQLite): at 10x every handshaken session registers and gets a
#       netmap, the others are one skipped result each, every identity is one node (reconnects
#       reuse it); ~1x gives the same outcomes; --clone 10 gives ten times the sessions and
#       identities. 140-250 s with the sample (quiet or busy box).
#   e2e_replay_shard_ts2021
#       tests/e2e/replay_shard_ts2021.sh: 3 x --shard i/3 with one --start-at against one
#       Headscale v0.29.2 (SQLite), merged by analyze == one process against a fresh one.
if(TARGET rp_mktrace)
  foreach(t ts2021_trace shard_ts2021)
    add_test(NAME e2e_replay_${t}
             COMMAND ${CMAKE_COMMAND} -E env H2REPLAY=$<TARGET_FILE:h2replay>
                     RP_MKTRACE=$<TARGET_FILE:rp_mktrace>
                     bash ${CMAKE_CURRENT_LIST_DIR}/replay_${t}.sh
                     ${CMAKE_CURRENT_BINARY_DIR}/e2e-replay-${t})
    set_tests_properties(e2e_replay_${t} PROPERTIES LABELS e2e TIMEOUT 480 SKIP_RETURN_CODE 77
                         RESOURCE_LOCK h2r_headscale)
  endforeach()
endif()

# e2e_fault_<mode>: tests/e2e/fault_replay.sh, one bounded fault (scripts/fault.sh) ~5 s into a
# TS2021 replay (80 nodes over 20 s; 60 over 25 s for hs-sigstop) against Headscale v0.29.2: pg-restart (PostgreSQL down 3 s), hs-kill
# (SIGKILL, 3 s down, restart), sqlite-full (the SQLite database on a 4 MiB tmpfs, filled for 4 s;
# private mount namespace), hs-sigstop (SIGSTOP 6 s > the 3 s deadlines). Checks: named failures
# only from the fault on, sessions after recovery ok, run file complete, db verify 0 lost,
# analyze onset in the window and a recovery. 25-35 s each; exit 77 (skip) when the release,
# PostgreSQL or mounts are unavailable, unless CI=true. docs/headscale.md "Faults".
foreach(fault_mode pg-restart hs-kill sqlite-full hs-sigstop)
  string(REPLACE "-" "_" fault_name ${fault_mode})
  set(name e2e_fault_${fault_name})
  add_test(NAME ${name}
           COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/fault_replay.sh $<TARGET_FILE:h2replay>
                   ${fault_mode} ${CMAKE_CURRENT_BINARY_DIR}/${name})
  set_tests_properties(${name} PROPERTIES LABELS e2e TIMEOUT 120 SKIP_RETURN_CODE 77
                       RUN_SERIAL TRUE RESOURCE_LOCK h2r_headscale)
endforeach()
