# TS2021 (Tailscale control protocol) core, included by core/CMakeLists.txt:
#   h2r_ts  Noise IK, record framing, the HTTP/1.1 upgrade, the map stream, request
#           bodies and keys; I/O-free push parsers (core/ts/ts2021.h). Capture uses it
#           to recognise and identify TS2021 sessions, replay to speak them, so it sits
#           beside h2r_core rather than inside either stage.
# Sources are named relative to this file; tests and fuzz targets relative to the project.
set(H2R_TS_TOP ${PROJECT_SOURCE_DIR})

find_library(HTTP_PARSER_LIB http_parser REQUIRED)
find_path(HTTP_PARSER_INCLUDE_DIR http_parser.h REQUIRED)

add_library(h2r_ts STATIC
  ${CMAKE_CURRENT_LIST_DIR}/ts_noise.c
  ${CMAKE_CURRENT_LIST_DIR}/ts_frame.c
  ${CMAKE_CURRENT_LIST_DIR}/ts_upgrade.c
  ${CMAKE_CURRENT_LIST_DIR}/ts_map.c)
target_include_directories(h2r_ts PUBLIC ${CMAKE_CURRENT_LIST_DIR}
                           PRIVATE ${HTTP_PARSER_INCLUDE_DIR})
target_link_libraries(h2r_ts PUBLIC h2r_core PkgConfig::OPENSSL PkgConfig::ZSTD
                      PkgConfig::JANSSON PRIVATE ${HTTP_PARSER_LIB})

foreach(t noise frame upgrade map)
  h2r_unit_test(test_ts_${t}
    SOURCES ${H2R_TS_TOP}/tests/unit/core/ts/test_ts_${t}.c
    LIBS h2r_ts)
endforeach()

foreach(t frame map upgrade)
  h2r_fuzz_target(fuzz_ts_${t}
    SOURCE ${H2R_TS_TOP}/tests/fuzz/fuzz_ts_${t}.c
    LIBS h2r_ts
    CORPUS ${H2R_TS_TOP}/tests/fuzz/corpus/ts_${t})
endforeach()
