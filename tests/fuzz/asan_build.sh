#!/usr/bin/env bash
# Build cxrfast._C with AddressSanitizer and UBSan into a throwaway copy of the package, so the
# fuzz harness can catch out-of-bounds reads that the optimised build survives silently.
#
#   tests/fuzz/asan_build.sh [DIR]          # default DIR: /tmp/cxrfast-asan
#   LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \
#   ASAN_OPTIONS=detect_leaks=0 PYTHONMALLOC=malloc PYTHONPATH=DIR \
#       .venv/bin/python tests/fuzz/fuzz_dicom_parser.py -max_total_time=60 -keep_seed=1 -rss_limit_mb=4096
#
# The harness imports the copy on PYTHONPATH in place of the editable install. Python itself is
# not instrumented, so the ASan runtime is preloaded, with libstdc++ (else ASan cannot intercept
# C++ throws and aborts on the first ParseError). PYTHONMALLOC=malloc puts every Python buffer
# in its own malloc block, so a read past the end of an input hits a redzone instead of the
# next object in a pymalloc arena. Leaks are off: the interpreter never frees everything.
# Undefined behaviour aborts (-fno-sanitize-recover) so libFuzzer reports it.
#
# Caveat: gcc's libasan exports the __sanitizer_cov_* hooks, so atheris' Python coverage goes to
# them instead of libFuzzer ("Coverage symbols are being provided by a library other than
# libFuzzer"): under ASan the run is blind. -keep_seed=1 keeps the corpus that the guided run
# (without ASan) found in build/fuzz-corpus/found as the inputs it mutates; -runs=0 replays it.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-/tmp/cxrfast-asan}
python=${PYTHON:-$repo/.venv/bin/python}
suffix=$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')

rm -rf "$out/cxrfast"
mkdir -p "$out"
cp -r "$repo/python/cxrfast" "$out/cxrfast"
find "$out/cxrfast" -name '__pycache__' -prune -exec rm -rf {} +
# shellcheck disable=SC2046  # pybind11 --includes is a list of flags
"${CXX:-g++}" -std=c++17 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined \
  -fno-omit-frame-pointer -fopenmp -shared -fPIC -fvisibility=hidden \
  $("$python" -m pybind11 --includes) -I"$repo/csrc" \
  "$repo"/csrc/dicom/*.cpp "$repo/csrc/bindings.cpp" -lz \
  -o "$out/cxrfast/_C$suffix"
echo "$out/cxrfast/_C$suffix"
