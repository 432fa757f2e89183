# Helpers shared by every module, test and tool.

# Warnings and sanitizers for one of our own targets.
function(omni_target_options target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
  # clang checks the locking that core/thread_annotations.h declares (GUARDED_BY & co.).
  if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    target_compile_options(${target} PRIVATE -Wthread-safety)
  endif()
  if(OMNI_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

if(OMNI_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
elseif(OMNI_SANITIZE STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
elseif(NOT OMNI_SANITIZE STREQUAL "")
  message(FATAL_ERROR "OMNI_SANITIZE must be '', 'address' or 'thread', not '${OMNI_SANITIZE}'")
endif()

# omni_add_module(NAME <module> SOURCES ... [DEPS <module>...] [EXTERNAL <target>...])
#
# Declares library omniplacement_<module> with alias omniplacement::<module>.
# DEPS name other modules (without prefix); they must come earlier in the
# layering order of the top-level CMakeLists.txt. EXTERNAL are third-party
# targets linked privately (they never appear in our public headers).
# Include paths: include/ (public, every module's headers) and the module's own
# src/<module>/ (private headers, included by bare name: "file_util.h"); never
# another module's src/ folder. scripts/check_includes.py (ctest include_rules)
# checks the includes against these rules and the layering.
function(omni_add_module)
  cmake_parse_arguments(ARG "" "NAME" "SOURCES;DEPS;EXTERNAL" ${ARGN})
  set(target omniplacement_${ARG_NAME})
  add_library(${target} ${ARG_SOURCES})
  add_library(omniplacement::${ARG_NAME} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${ARG_NAME} OUTPUT_NAME omniplacement_${ARG_NAME})
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    PRIVATE ${PROJECT_SOURCE_DIR}/src/${ARG_NAME})
  target_compile_features(${target} PUBLIC cxx_std_20)
  # Layering check: a dependency must come before this module.
  list(FIND OMNI_ALL_MODULES ${ARG_NAME} self_index)
  foreach(dep IN LISTS ARG_DEPS)
    list(FIND OMNI_ALL_MODULES ${dep} dep_index)
    if(dep_index LESS 0 OR NOT dep_index LESS self_index)
      message(FATAL_ERROR "module '${ARG_NAME}' may not depend on '${dep}' (layering: ${OMNI_ALL_MODULES})")
    endif()
    target_link_libraries(${target} PUBLIC omniplacement::${dep})
  endforeach()
  if(ARG_EXTERNAL)
    target_link_libraries(${target} PRIVATE ${ARG_EXTERNAL})
  endif()
  omni_target_options(${target})
  set_property(GLOBAL APPEND PROPERTY OMNI_INSTALLED_TARGETS ${target})
endfunction()

# omni_add_private_includes(<target> <module>): lets a module's own tests and
# benchmarks include that module's private headers (src/<module>/, by bare name).
function(omni_add_private_includes target module)
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/src/${module})
endfunction()

# omni_add_test(NAME <name> SOURCES ... LIBS ... LABELS ... [MODULE m] [TIMEOUT s])
# One executable in build/bin and one ctest entry per suite. Include paths:
# tests/ (shared helpers such as common/random_placement.h) and the private
# headers of the module under test: MODULE, by default the folder's name when
# it is a module (tests/<module>/); tests of anything else get none.
function(omni_add_test)
  cmake_parse_arguments(ARG "" "NAME;TIMEOUT;MODULE" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SOURCES})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main)
  target_include_directories(${ARG_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  if(NOT ARG_MODULE)
    get_filename_component(folder ${CMAKE_CURRENT_SOURCE_DIR} NAME)
    if(folder IN_LIST OMNI_ALL_MODULES)
      set(ARG_MODULE ${folder})
    endif()
  endif()
  if(ARG_MODULE)
    omni_add_private_includes(${ARG_NAME} ${ARG_MODULE})
  endif()
  target_compile_definitions(${ARG_NAME} PRIVATE OMNI_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  omni_target_options(${ARG_NAME})
  add_test(NAME ${ARG_NAME} COMMAND ${ARG_NAME} ${ARG_ARGS})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  set_tests_properties(${ARG_NAME} PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT})
endfunction()

# Install rules and the exported CMake package (find_package(OmniPlacement)).
function(omni_install_package)
  include(CMakePackageConfigHelpers)
  get_property(targets GLOBAL PROPERTY OMNI_INSTALLED_TARGETS)
  # Modules append the packages consumers must find (e.g. yaml-cpp) with
  # set_property(GLOBAL APPEND PROPERTY OMNI_PACKAGE_DEPENDENCIES <pkg>).
  get_property(OMNI_PACKAGE_DEPENDENCIES GLOBAL PROPERTY OMNI_PACKAGE_DEPENDENCIES)
  if(OMNI_PACKAGE_DEPENDENCIES)
    list(REMOVE_DUPLICATES OMNI_PACKAGE_DEPENDENCIES)
  endif()
  install(TARGETS ${targets} EXPORT OmniPlacementTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/omniplacement DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(EXPORT OmniPlacementTargets NAMESPACE omniplacement::
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/OmniPlacement)
  configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/OmniPlacementConfig.cmake.in
    ${PROJECT_BINARY_DIR}/OmniPlacementConfig.cmake
    INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/OmniPlacement)
  write_basic_package_version_file(${PROJECT_BINARY_DIR}/OmniPlacementConfigVersion.cmake
    COMPATIBILITY SameMinorVersion)
  install(FILES ${PROJECT_BINARY_DIR}/OmniPlacementConfig.cmake
    ${PROJECT_BINARY_DIR}/OmniPlacementConfigVersion.cmake
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/OmniPlacement)
  # pkg-config: lib/pkgconfig/omniplacement.pc beside the CMake package. Modules add
  # what static linking needs with set_property(GLOBAL APPEND PROPERTY
  # OMNI_PKGCONFIG_REQUIRES <pkg>) or OMNI_PKGCONFIG_LIBS <link flags or library paths>.
  set(OMNI_PC_LIBS "")
  foreach(m IN LISTS OMNI_ENABLED_MODULES)
    list(PREPEND OMNI_PC_LIBS -lomniplacement_${m})  # dependants before their dependencies
  endforeach()
  get_property(extra_libs GLOBAL PROPERTY OMNI_PKGCONFIG_LIBS)
  get_property(requires GLOBAL PROPERTY OMNI_PKGCONFIG_REQUIRES)
  list(APPEND OMNI_PC_LIBS ${extra_libs} -pthread)
  list(REMOVE_DUPLICATES requires)
  list(JOIN OMNI_PC_LIBS " " OMNI_PC_LIBS)
  list(JOIN requires ", " OMNI_PC_REQUIRES)
  list(JOIN OMNI_ENABLED_MODULES " " OMNI_PC_MODULES)
  if(IS_ABSOLUTE ${CMAKE_INSTALL_LIBDIR})
    file(RELATIVE_PATH OMNI_PC_PREFIX_REL ${CMAKE_INSTALL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
  else()
    file(RELATIVE_PATH OMNI_PC_PREFIX_REL /omni_prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /omni_prefix)
  endif()
  configure_file(${PROJECT_SOURCE_DIR}/cmake/omniplacement.pc.in ${PROJECT_BINARY_DIR}/omniplacement.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/omniplacement.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endfunction()

# omni_mpirun_prefix(<out_var> <num_ranks> [flags...]): the command prefix that
# launches num_ranks MPI processes for a ctest entry: mpiexec --oversubscribe
# (ranks may outnumber cores), plus --allow-run-as-root when configured as root
# (CI), plus any extra flags (e.g. --enable-recovery: the death of one process
# does not end the job). Requires find_package(MPI) to have run.
function(omni_mpirun_prefix out_var num_ranks)
  execute_process(COMMAND id -u OUTPUT_VARIABLE uid OUTPUT_STRIP_TRAILING_WHITESPACE)
  set(flags --oversubscribe ${ARGN})
  if(uid STREQUAL "0")
    list(PREPEND flags --allow-run-as-root)
  endif()
  set(${out_var} ${MPIEXEC_EXECUTABLE} ${flags} ${MPIEXEC_NUMPROC_FLAG} ${num_ranks} PARENT_SCOPE)
endfunction()
