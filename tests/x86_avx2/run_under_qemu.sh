#!/usr/bin/env bash
# The tests of tests/engine/test_kernel_paths.py on an AVX2-only CPU, on a machine with AVX-512:
# this environment's Python under qemu-user as a Haswell (Debian's qemu-user), where an AVX-512
# instruction stops the process with SIGILL as it does on a Zen 3. A wrapper venv makes every
# subprocess the tests start with sys.executable (the kernel probes) run under qemu too, so
# nothing executes natively. Not part of CI: qemu runs numba ~15x slower than the host (the
# compile-only tests take ~25 minutes, the bit-for-bit one as long again).
#
#     bash tests/x86_avx2/run_under_qemu.sh [pytest arguments]    # default: -k "not engine_checks and not 8bit"
set -euo pipefail
cd "$(dirname "$0")/../.."
export DEBIAN_FRONTEND=noninteractive
command -v qemu-x86_64 >/dev/null || { apt-get update -qq; apt-get install -y -qq qemu-user >/dev/null; }
python=$(python -c 'import os, sys; print(os.path.realpath(sys.executable))')
wrapper=$(mktemp -d)
trap 'rm -rf "$wrapper"' EXIT
python -m venv --system-site-packages --without-pip "$wrapper"
rm "$wrapper"/bin/python*
cat > "$wrapper/bin/python" <<SH
#!/usr/bin/env bash
exec qemu-x86_64 -cpu Haswell -0 "$wrapper/bin/python" "$python" "\$@" 2> >(grep -v "TCG doesn't support" >&2)
SH
chmod +x "$wrapper/bin/python"
"$wrapper/bin/python" -c 'from llamba.engine.kernels import isa; print("under qemu:", isa.describe()["cpu_name"], "runs", isa.runnable_paths())'
[ $# -gt 0 ] || set -- -k "not engine_checks and not 8bit"
NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$wrapper/numba-cache} \
    "$wrapper/bin/python" -m pytest -v -p no:cacheprovider --timeout=0 tests/engine/test_kernel_paths.py "$@"
