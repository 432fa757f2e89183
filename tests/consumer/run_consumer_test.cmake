# cmake -P script: install BUILD_DIR into WORK_DIR/prefix, then configure,
# build and run the consumer project in SOURCE_DIR against that prefix,
# including the first ```cpp block of README (when README is given); build and
# run pkgconfig_main.cc with pkg-config alone; and run the installed omniplace
# from WORK_DIR to show that the install finds its own sample data and plot script
# (nothing of the source tree PROJECT_SOURCE is compiled in or needed).
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix
  RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "install into ${WORK_DIR}/prefix failed (${rc})")
endif()
set(example_arg "")
if(README)
  file(READ ${README} readme)
  string(FIND "${readme}" "```cpp\n" begin)
  if(begin LESS 0)
    message(FATAL_ERROR "${README} has no ```cpp example")
  endif()
  math(EXPR begin "${begin} + 7")
  string(SUBSTRING "${readme}" ${begin} -1 rest)
  string(FIND "${rest}" "```" end)
  string(SUBSTRING "${rest}" 0 ${end} example)
  file(WRITE ${WORK_DIR}/readme_example.cc "${example}")
  set(example_arg -DREADME_EXAMPLE=${WORK_DIR}/readme_example.cc)
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build
  -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=Release ${example_arg}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the consumer project failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the consumer project failed (${rc})")
endif()
foreach(program consumer readme_example)
  if(EXISTS ${WORK_DIR}/build/${program})
    execute_process(COMMAND ${WORK_DIR}/build/${program} RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "${program} failed (${rc})")
    endif()
  endif()
endforeach()

# pkg-config: the .pc file beside the CMake package is enough to compile and link.
find_program(PKG_CONFIG NAMES pkg-config pkgconf REQUIRED)
set(pc_env ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${WORK_DIR}/prefix/lib/pkgconfig)
execute_process(COMMAND ${pc_env} ${PKG_CONFIG} --cflags --libs omniplacement
  OUTPUT_VARIABLE pc_flags OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc ERROR_VARIABLE pc_err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config --cflags --libs omniplacement failed (${rc}): ${pc_err}")
endif()
if(NOT pc_flags MATCHES "-I${WORK_DIR}/prefix/lib/pkgconfig/../../include")
  message(FATAL_ERROR "pkg-config flags do not point into the install prefix: ${pc_flags}")
endif()
separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")
execute_process(COMMAND ${CXX} -std=c++20 ${SOURCE_DIR}/pkgconfig_main.cc ${pc_flags}
  -o ${WORK_DIR}/pkgconfig_consumer RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building pkgconfig_main.cc with pkg-config's flags failed (${rc})")
endif()
execute_process(COMMAND ${WORK_DIR}/pkgconfig_consumer RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkgconfig_consumer failed (${rc})")
endif()

# The installed CLI, run from WORK_DIR with no OMNI_DATA_DIR: sample data and the
# plot script come from <prefix>/share/omniplacement.
set(cli ${WORK_DIR}/prefix/bin/omniplace)
if(NOT EXISTS ${cli})
  return()
endif()
file(STRINGS ${cli} source_paths REGEX "${PROJECT_SOURCE}/(data|scripts)")
if(source_paths)
  message(FATAL_ERROR "the installed omniplace has source-tree paths compiled in: ${source_paths}")
endif()
set(clean_env ${CMAKE_COMMAND} -E env --unset=OMNI_DATA_DIR --unset=PYTHONPATH)
execute_process(COMMAND ${clean_env} ${cli} info WORKING_DIRECTORY ${WORK_DIR}
  OUTPUT_VARIABLE info RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT info MATCHES "sample data: ${WORK_DIR}/prefix/bin/../share/omniplacement/data|sample data: ${WORK_DIR}/prefix/share/omniplacement/data"
   OR NOT info MATCHES "traces/qwen15moe_expert_freq_by_iteration.csv")
  message(FATAL_ERROR "installed omniplace info does not find the installed data (${rc}):\n${info}")
endif()
execute_process(COMMAND ${clean_env} ${cli} demo --ranks 4 --steps 8 --steps-per-window 4 --interval 4 --tokens 8
  --json WORKING_DIRECTORY ${WORK_DIR} OUTPUT_VARIABLE demo RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT demo MATCHES "\"wrong_outputs\": *0")
  message(FATAL_ERROR "installed omniplace demo on its default (installed) trace failed (${rc}):\n${demo}")
endif()
execute_process(COMMAND ${clean_env} OMNI_DATA_DIR=${WORK_DIR}/no_such_dir ${cli} demo --steps 4
  WORKING_DIRECTORY ${WORK_DIR} ERROR_VARIABLE err RESULT_VARIABLE rc)
if(rc EQUAL 0 OR NOT err MATCHES "OMNI_DATA_DIR")
  message(FATAL_ERROR "a wrong OMNI_DATA_DIR is not reported (${rc}): ${err}")
endif()
file(GLOB installed_python ${WORK_DIR}/prefix/lib/python3*/*-packages/omniplacement/plot.py)
if(installed_python)
  execute_process(COMMAND ${clean_env} MPLBACKEND=Agg ${cli} simulate --steps 40 --interval 10 --layers 4
    --experts 32 --ranks 8 --ranks-per-host 4 --policies contiguous --no-progress --plot ${WORK_DIR}/installed_plot WORKING_DIRECTORY ${WORK_DIR}
    OUTPUT_QUIET ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0 OR NOT EXISTS ${WORK_DIR}/installed_plot_imbalance.png
     OR NOT EXISTS ${WORK_DIR}/installed_plot_step_time.png)
    message(FATAL_ERROR "installed omniplace simulate --plot failed (${rc}): ${err}")
  endif()
endif()
