# Request rewriting and placeholder filling (rw_*): included by
# replay/CMakeLists.txt. CMAKE_CURRENT_LIST_DIR is this folder whoever includes it.
add_library(h2r_replay_rw STATIC
  ${CMAKE_CURRENT_LIST_DIR}/rw_rules.c
  ${CMAKE_CURRENT_LIST_DIR}/rw_apply.c
  ${CMAKE_CURRENT_LIST_DIR}/rw_json.c
  ${CMAKE_CURRENT_LIST_DIR}/rw_tmpl.c
  ${CMAKE_CURRENT_LIST_DIR}/rw_util.c
)
target_include_directories(h2r_replay_rw PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(h2r_replay_rw PUBLIC h2r_core PkgConfig::JANSSON)

h2r_unit_test(test_rw_rules SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/replay/test_rw_rules.c
              LIBS h2r_replay_rw)
h2r_fuzz_target(fuzz_rw_rules SOURCE ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_rw_rules.c
                LIBS h2r_replay_rw CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/rw_rules)
