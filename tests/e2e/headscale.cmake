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
