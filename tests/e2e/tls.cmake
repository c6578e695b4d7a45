# TLS end-to-end tests (label e2e), included from tests/CMakeLists.txt when
# H2R_E2E is ON. Each test exits 77 (ctest SKIP) while the h2replay build does
# not take --keylog yet.
#
#   e2e_tls_compare_<pcap>   every tests/data/tls/*.pcap against tshark, both
#                            decrypting with the capture's NAME.keys
#   e2e_tls_keylog_cases     missing, wrong, empty, truncated and CRLF key logs:
#                            exit status, messages, counters, conn-end reasons
#   e2e_tls_fresh_capture    make_tls_captures.sh now (root, nghttpd, curl,
#                            openssl, tcpdump), then the comparison on each pcap

if(NOT TARGET h2replay)
  return()
endif()

set(H2R_TLS_E2E_DIR ${CMAKE_CURRENT_LIST_DIR})
set(H2R_TLS_DATA ${PROJECT_SOURCE_DIR}/tests/data/tls)
set(H2R_TLS_WORK ${CMAKE_CURRENT_BINARY_DIR}/e2e/tls)

file(GLOB h2r_tls_pcaps CONFIGURE_DEPENDS ${H2R_TLS_DATA}/*.pcap)
foreach(pcap ${h2r_tls_pcaps})
  get_filename_component(name ${pcap} NAME_WE)
  add_test(NAME e2e_tls_compare_${name}
           COMMAND bash ${H2R_TLS_E2E_DIR}/tls_compare.sh $<TARGET_FILE:h2replay>
                   ${H2R_TLS_WORK}/compare ${pcap})
  set_tests_properties(e2e_tls_compare_${name} PROPERTIES LABELS e2e TIMEOUT 300
                       SKIP_RETURN_CODE 77)
endforeach()

add_test(NAME e2e_tls_keylog_cases
         COMMAND bash ${H2R_TLS_E2E_DIR}/tls_keylog_cases.sh $<TARGET_FILE:h2replay>
                 ${H2R_TLS_DATA} ${H2R_TLS_WORK}/keylog_cases)
set_tests_properties(e2e_tls_keylog_cases PROPERTIES LABELS e2e TIMEOUT 300 SKIP_RETURN_CODE 77)

add_test(NAME e2e_tls_fresh_capture
         COMMAND bash ${H2R_TLS_E2E_DIR}/tls_fresh_capture.sh $<TARGET_FILE:h2replay>
                 ${H2R_TLS_WORK}/fresh)
set_tests_properties(e2e_tls_fresh_capture PROPERTIES LABELS e2e TIMEOUT 600 SKIP_RETURN_CODE 77
                     RESOURCE_LOCK h2r_loopback_capture)
