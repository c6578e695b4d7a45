# Fuzz targets owned by core. Each stage registers its own targets from its
# cmake fragment with h2r_fuzz_target(); non-fuzz builds replay the corpus.
h2r_fuzz_target(fuzz_trace_reader SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_trace_reader.c
                LIBS h2r_core CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/trace_reader)
add_executable(gen_trace_corpus ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/gen/gen_trace_corpus.c)
target_link_libraries(gen_trace_corpus PRIVATE h2r_core)
h2r_fuzz_target(fuzz_trace_records SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_trace_records.c
                LIBS h2r_core CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/trace_records)
h2r_fuzz_target(fuzz_hist SOURCE ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_hist.c
                LIBS h2r_core CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/hist)
