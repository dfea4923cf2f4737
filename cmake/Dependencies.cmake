# Finds bitfleet's dependencies and reports what was found. Included before CMAKE_CXX_STANDARD is
# set, because LibTorch's package derives CUDA settings from it.

# --- LibTorch: the torch wheel's (python -c 'import torch; print(torch.utils.cmake_prefix_path)').
if(BITFLEET_PYTHON)
  execute_process(
    COMMAND "${BITFLEET_PYTHON}" -c "import torch, sys; sys.stdout.write(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE _torch_prefix RESULT_VARIABLE _torch_rc ERROR_QUIET)
  if(_torch_rc EQUAL 0)
    list(APPEND CMAKE_PREFIX_PATH "${_torch_prefix}")
  endif()
endif()
# No GPU is probed at configure time (build machines have none); these are the architectures the
# GPU path is built for: Hopper (H100/H200) and Ampere.
if(NOT TORCH_CUDA_ARCH_LIST)
  set(TORCH_CUDA_ARCH_LIST "8.0;9.0")
endif()
find_package(Torch REQUIRED)
get_filename_component(BITFLEET_TORCH_LIB_DIR "${TORCH_LIBRARY}" DIRECTORY)

set(BITFLEET_WITH_CUDA OFF)
if(TARGET torch_cuda AND TARGET CUDA::cudart)
  set(BITFLEET_WITH_CUDA ON)
endif()

# --- nlohmann-json (header-only).
find_package(nlohmann_json 3.10 QUIET)
if(NOT nlohmann_json_FOUND)
  find_path(BITFLEET_NLOHMANN_INCLUDE nlohmann/json.hpp
            HINTS "${BITFLEET_THIRD_PARTY_DIR}" "${BITFLEET_THIRD_PARTY_DIR}/include" REQUIRED)
  add_library(nlohmann_json INTERFACE)
  target_include_directories(nlohmann_json SYSTEM INTERFACE "${BITFLEET_NLOHMANN_INCLUDE}")
  add_library(nlohmann_json::nlohmann_json ALIAS nlohmann_json)
endif()

# --- GoogleTest: the installed package, else its sources (Debian ships them in /usr/src).
find_package(GTest QUIET)
if(NOT GTest_FOUND)
  find_path(BITFLEET_GTEST_SOURCE CMakeLists.txt
            HINTS "${BITFLEET_THIRD_PARTY_DIR}/googletest" /usr/src/googletest NO_DEFAULT_PATH REQUIRED)
  set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
  add_subdirectory("${BITFLEET_GTEST_SOURCE}" "${CMAKE_BINARY_DIR}/googletest" EXCLUDE_FROM_ALL)
  add_library(GTest::gtest ALIAS gtest)
  add_library(GTest::gtest_main ALIAS gtest_main)
endif()

find_package(Threads REQUIRED)

# --- MPI (optional): the CPU data-parallel path and NCCL's bootstrap.
find_package(MPI COMPONENTS C QUIET)
set(BITFLEET_WITH_MPI ${MPI_C_FOUND})
find_program(BITFLEET_MPIEXEC NAMES mpirun mpiexec)

# --- NCCL (optional, GPU builds): the CUDA toolkit's, else the copy the torch wheel loads. Without
# MPI it is single-rank only (the collective's cost on one GPU); groups bootstrap over MPI.
set(BITFLEET_WITH_NCCL OFF)
if(BITFLEET_WITH_CUDA)
  get_filename_component(_site "${BITFLEET_TORCH_LIB_DIR}/../.." ABSOLUTE)
  find_path(BITFLEET_NCCL_INCLUDE nccl.h
            HINTS /usr/local/cuda/include "${_site}/nvidia/nccl/include" NO_DEFAULT_PATH)
  find_library(BITFLEET_NCCL_LIBRARY NAMES nccl libnccl.so.2
               HINTS /usr/local/cuda/lib64 "${_site}/nvidia/nccl/lib" NO_DEFAULT_PATH)
  if(BITFLEET_NCCL_INCLUDE AND BITFLEET_NCCL_LIBRARY)
    set(BITFLEET_WITH_NCCL ON)
  endif()
endif()

# --- The control plane's dependencies (never needed by the engine).
if(NOT BITFLEET_ENGINE_ONLY)
  find_package(Boost 1.74 REQUIRED)  # Asio and Beast are header-only
  find_package(OpenSSL REQUIRED)
  find_package(SQLite3 REQUIRED)
  find_package(prometheus-cpp CONFIG REQUIRED COMPONENTS core)
  find_program(BITFLEET_PROMTOOL promtool)
  find_program(BITFLEET_PROMETHEUS prometheus)
endif()

message(STATUS "bitfleet: LibTorch ${Torch_VERSION} at ${BITFLEET_TORCH_LIB_DIR}")
message(STATUS "bitfleet: CUDA ${BITFLEET_WITH_CUDA}, MPI ${BITFLEET_WITH_MPI}, NCCL ${BITFLEET_WITH_NCCL} "
               "(${BITFLEET_NCCL_INCLUDE}), engine only ${BITFLEET_ENGINE_ONLY}")
if(BITFLEET_MINILM_DIR)
  message(STATUS "bitfleet: real backbone all-MiniLM-L6-v2 at ${BITFLEET_MINILM_DIR}")
else()
  message(STATUS "bitfleet: no real backbone given (BITFLEET_MINILM_DIR); tests that need it skip")
endif()
