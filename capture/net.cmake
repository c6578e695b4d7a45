# Network half of the capture stage (included by capture/CMakeLists.txt).
#   h2r_capture_tcp  link/IP/TCP decoding and TCP reassembly: pure push parsers,
#                    no libpcap, no sessions; what the unit tests and fuzzers link
#   h2r_capture      flow table and the pcap driver (include/h2replay/capture.h)
add_library(h2r_capture_tcp STATIC cap_decode.c cap_reasm.c)
target_include_directories(h2r_capture_tcp PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(h2r_capture_tcp PUBLIC h2r_capture_stats h2r_core)

add_library(h2r_capture STATIC cap_flow.c capture.c)
target_include_directories(h2r_capture PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(h2r_capture PUBLIC h2r_capture_tcp h2r_capture_session h2r_capture_stats
                      h2r_core PkgConfig::PCAP)

h2r_unit_test(test_cap_decode
  SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/capture/test_decode.c
  LIBS h2r_capture_tcp)
h2r_unit_test(test_cap_reasm
  SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/capture/test_reasm.c
  LIBS h2r_capture_tcp)
# The flow table against a recording stand-in for the session layer (defined in the test).
h2r_unit_test(test_cap_flow
  SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/capture/test_flow.c ${CMAKE_CURRENT_SOURCE_DIR}/cap_flow.c
  LIBS h2r_capture_tcp)

h2r_fuzz_target(fuzz_tcp_reasm
  SOURCE ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_tcp_reasm.c
  LIBS h2r_capture_tcp
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/tcp_reasm)
h2r_fuzz_target(fuzz_cap_decode
  SOURCE ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_decode.c
  LIBS h2r_capture_tcp
  CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/decode)
