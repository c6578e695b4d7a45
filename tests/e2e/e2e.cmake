# End-to-end tests (label e2e): h2replay against real captures, checked by
# tshark as an independent oracle. Included from tests/CMakeLists.txt when
# H2R_E2E is ON. Needs python3, tshark; the live and fresh-capture tests also
# need root, tcpdump, nghttpd/nghttpx/nghttp/h2load/curl (scripts/setup.sh).
#
#   e2e_oracle_selftest        tshark extractor vs. what the scenarios sent
#   e2e_compare_<pcap>         h2replay vs. tshark on each tests/data/*.pcap
#   e2e_fresh_capture          make_captures.sh now, then compare every scenario
#   e2e_mangled                reordered + duplicated segments (pcap_mangle)
#   e2e_live_capture           h2replay capture -i lo while nghttp runs
#   e2e_bad_input              empty/truncated/random/non-HTTP inputs, corrupt traces

set(H2R_E2E_DIR ${CMAKE_CURRENT_LIST_DIR})
set(H2R_E2E_DATA ${PROJECT_SOURCE_DIR}/tests/data)
set(H2R_E2E_WORK ${CMAKE_CURRENT_BINARY_DIR}/e2e)

find_program(H2R_PYTHON3 NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT H2R_PYTHON3)
  find_program(H2R_PYTHON3 NAMES python3 REQUIRED)
endif()

# Test tool: rewrites a pcap with reordered and duplicated TCP segments.
add_executable(pcap_mangle ${PROJECT_SOURCE_DIR}/tests/tools/pcap_mangle.c)
target_link_libraries(pcap_mangle PRIVATE PkgConfig::PCAP)

# The oracle itself needs no h2replay: check it against what the scenarios sent.
add_test(NAME e2e_oracle_selftest
         COMMAND ${H2R_PYTHON3} ${H2R_E2E_DIR}/oracle_selftest.py ${H2R_E2E_DATA})
set_tests_properties(e2e_oracle_selftest PROPERTIES LABELS e2e TIMEOUT 300)

if(NOT TARGET h2replay)
  message(STATUS "e2e: no h2replay target; only the oracle self-test is registered")
  return()
endif()

# (a) every committed capture, compared with tshark (fast: no servers).
file(GLOB h2r_e2e_pcaps CONFIGURE_DEPENDS ${H2R_E2E_DATA}/*.pcap)
foreach(pcap ${h2r_e2e_pcaps})
  get_filename_component(name ${pcap} NAME_WE)
  set(extra "")
  if(name MATCHES "^non-h2")
    set(extra --allow-empty)
  endif()
  add_test(NAME e2e_compare_${name}
           COMMAND ${H2R_PYTHON3} ${H2R_E2E_DIR}/compare_tshark.py ${pcap} $<TARGET_FILE:h2replay>
                   --workdir ${H2R_E2E_WORK}/compare ${extra})
  set_tests_properties(e2e_compare_${name} PROPERTIES LABELS e2e TIMEOUT 300)
endforeach()

# (b) fresh captures from real programs, every scenario compared.
add_test(NAME e2e_fresh_capture
         COMMAND bash ${H2R_E2E_DIR}/fresh_capture.sh $<TARGET_FILE:h2replay> ${H2R_E2E_WORK}/fresh)
set_tests_properties(e2e_fresh_capture PROPERTIES LABELS e2e TIMEOUT 600 SKIP_RETURN_CODE 77
                     RESOURCE_LOCK h2r_loopback_capture)

# (c) reordered and duplicated segments.
add_test(NAME e2e_mangled
         COMMAND bash ${H2R_E2E_DIR}/mangle_compare.sh $<TARGET_FILE:h2replay>
                 $<TARGET_FILE:pcap_mangle> ${H2R_E2E_DATA} ${H2R_E2E_WORK}/mangled)
set_tests_properties(e2e_mangled PROPERTIES LABELS e2e TIMEOUT 600)

# (d) live capture on lo.
add_test(NAME e2e_live_capture
         COMMAND bash ${H2R_E2E_DIR}/live_capture.sh $<TARGET_FILE:h2replay> ${H2R_E2E_WORK}/live)
set_tests_properties(e2e_live_capture PROPERTIES LABELS e2e TIMEOUT 300 SKIP_RETURN_CODE 77
                     RESOURCE_LOCK h2r_loopback_capture)

# (e) bad input never crashes or hangs.
add_test(NAME e2e_bad_input
         COMMAND bash ${H2R_E2E_DIR}/bad_input.sh $<TARGET_FILE:h2replay> ${H2R_E2E_DATA}
                 ${H2R_E2E_WORK}/bad)
set_tests_properties(e2e_bad_input PROPERTIES LABELS e2e TIMEOUT 600)
include(${CMAKE_CURRENT_LIST_DIR}/headscale.cmake) # real Headscale: replay --db, restore, verify

# (f) TS2021: the committed Tailscale capture (TLS with its key log, and plain) with
# Headscale's noise key: sessions, machine keys, nodes and reconnects against the
# manifest and headscale's node list, frame/byte counts against tshark's streams.
foreach(variant tls plain)
  add_test(NAME e2e_capture_ts2021_${variant}
           COMMAND bash ${H2R_E2E_DIR}/capture_ts2021.sh $<TARGET_FILE:h2replay>
                   ${H2R_E2E_DATA}/tailscale ${H2R_E2E_WORK}/ts2021_${variant} ${variant})
  set_tests_properties(e2e_capture_ts2021_${variant} PROPERTIES LABELS e2e TIMEOUT 300
                       SKIP_RETURN_CODE 77)
endforeach()
