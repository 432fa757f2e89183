# Shared by scripts/run.sh and scripts/test.sh: install what is missing, then
# configure and build into build/. Source it from the repository root.
set -euo pipefail

# Every Debian package the project needs to build, run and test.
OMNI_PACKAGES=(
  cmake ninja-build g++ clang libclang-rt-14-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev libyaml-cpp-dev
  libopenmpi-dev openmpi-bin libucx-dev libxxhash-dev
  python3 python3-dev pybind11-dev python3-numpy python3-pytest python3-matplotlib python3-torch python3-yaml
  python3-setuptools python3-wheel python3-venv pkgconf
)

omni_ensure_packages() {
  local missing=()
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]})); then
    echo "== installing Debian packages: ${missing[*]}"
    local sudo=""
    if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# omni_build [extra cmake args...]: Release build in build/ with warnings as errors.
omni_build() {
  local jobs
  jobs=$(nproc)
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DOMNI_WERROR=ON \
    -DPython3_EXECUTABLE=/usr/bin/python3 -DOMNI_BUILD_PYTHON=ON -DOMNI_WITH_MPI=ON "$@" >build-configure.log 2>&1 ||
    { cat build-configure.log; return 1; }
  cmake --build build -j"$jobs"
}
