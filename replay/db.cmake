# Database adapters of the replay stage (snapshot/restore/sample/verify the
# database behind a Headscale target): included by replay/CMakeLists.txt with
# include(db.cmake OPTIONAL). CMAKE_CURRENT_LIST_DIR is this folder whoever
# includes it.
#
#   h2r_replay_db   db.c (DSN dispatch, catalogue), db_sqlite.c, db_pg.c, db_verify.c,
#                   db_guard.c (restore refused before connecting to a non-local server)
#   test_db_sqlite  unit test against real SQLite files (label unit)
#   test_db_guard   the pre-connection restore guard (label unit; connects to nothing)
#   e2e_db_pg       the PostgreSQL adapter against a throwaway cluster started by
#                   tests/e2e/pg_cluster.sh (label e2e; skipped, exit 77, without
#                   PostgreSQL server binaries)
#   e2e_headscale_db_<release>_<db>
#                   tests/e2e/headscale_db.sh: h2replay db watch/verify/snapshot/restore
#                   against Headscale v0.29.2 and v0.23.0 on SQLite and PostgreSQL
#                   (label e2e; skipped unless the release is in .cache/bin)
if(NOT TARGET PkgConfig::SQLITE3)
  pkg_check_modules(SQLITE3 REQUIRED IMPORTED_TARGET sqlite3)
endif()
if(NOT TARGET PkgConfig::LIBPQ)
  pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET libpq)
endif()
if(NOT TARGET PkgConfig::JANSSON)
  pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
endif()

add_library(h2r_replay_db STATIC
  ${CMAKE_CURRENT_LIST_DIR}/db.c
  ${CMAKE_CURRENT_LIST_DIR}/db_sqlite.c
  ${CMAKE_CURRENT_LIST_DIR}/db_pg.c
  ${CMAKE_CURRENT_LIST_DIR}/db_verify.c
  ${CMAKE_CURRENT_LIST_DIR}/db_guard.c
)
target_include_directories(h2r_replay_db PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(h2r_replay_db PUBLIC h2r_core PkgConfig::SQLITE3 PkgConfig::LIBPQ
                      PkgConfig::JANSSON)

h2r_unit_test(test_db_sqlite
              SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/replay/test_db_sqlite.c
              LIBS h2r_replay_db)
h2r_unit_test(test_db_guard
              SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/replay/test_db_guard.c
              LIBS h2r_replay_db)

if(H2R_E2E)
  add_executable(test_db_pg ${PROJECT_SOURCE_DIR}/tests/unit/replay/test_db_pg.c)
  target_include_directories(test_db_pg PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(test_db_pg PRIVATE h2r_replay_db)
  add_test(NAME e2e_db_pg
           COMMAND bash ${PROJECT_SOURCE_DIR}/tests/e2e/pg_cluster.sh run
                   --dir ${CMAKE_CURRENT_BINARY_DIR}/e2e_db_pg -- $<TARGET_FILE:test_db_pg>)
  set_tests_properties(e2e_db_pg PROPERTIES LABELS e2e TIMEOUT 300 SKIP_RETURN_CODE 77)

  # `h2replay db` against real Headscale releases (skipped, exit 77, when the release is not
  # in .cache/bin -- scripts/install-headscale.sh -- or h2replay has no db command).
  # The h2replay target is defined later (cli/): a generator expression resolves it.
  foreach(hs_version v0.29.2 v0.23.0)
    foreach(hs_db sqlite postgres)
      set(name e2e_headscale_db_${hs_version}_${hs_db})
      add_test(NAME ${name}
               COMMAND bash ${PROJECT_SOURCE_DIR}/tests/e2e/headscale_db.sh $<TARGET_FILE:h2replay>
                       ${hs_version} ${hs_db} ${CMAKE_CURRENT_BINARY_DIR}/${name})
      set_tests_properties(${name} PROPERTIES LABELS e2e TIMEOUT 300 SKIP_RETURN_CODE 77
                           RESOURCE_LOCK h2r_headscale)
    endforeach()
  endforeach()
endif()
