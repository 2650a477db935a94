#!/usr/bin/env bash
# Builds the GPU programs on THIS machine and packs them with the non-system shared libraries
# they need (glog, gflags, OpenBLAS, ...) into build-gpu-bundle/bundle, for a GPU machine whose
# image cannot build the project (no glog/OpenBLAS there). CUDA's own libraries (cudart, cuBLAS)
# and the C/C++ runtime are taken from the GPU machine, which must have CUDA 13 like this one.
# The CPU reference kernels are compiled for x86-64-v3 (AVX2), not -march=native, and without
# oneDNN (~40 MB), so the bundle stays well under the device tool's 64 MiB.
#
#   bash tests/gpu/bundle.sh
#   device run: carry ["build-gpu-bundle/bundle"], command "bash tests/gpu/run.sh --prebuilt
#   build-gpu-bundle/bundle"
#
#   bash tests/gpu/bundle.sh --full
# builds the WHOLE project instead (generic x86-64, no oneDNN, CUDA + NCCL) and packs `roformer`,
# the model parity test and benchmarks too, with protobuf, glog, Open MPI's libraries, OpenBLAS
# and LAPACK, into build-gpu-bundle/roformer-gpu.tar.xz (xz: about a third of the folder). NCCL
# is not packed (hundreds of MB): run.sh takes it from the GPU image's Python wheel. Single-rank
# runs only (no mpirun on the image).
#   device run: carry ["build-gpu-bundle/roformer-gpu.tar.xz"], command "bash tests/gpu/run.sh
#   --prebuilt build-gpu-bundle/roformer-gpu.tar.xz"
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
full=0
[ "${1:-}" = --full ] && full=1
build=$root/build-gpu-bundle
dest=$build/bundle
mkdir -p "$build"
if [ $full -eq 1 ]; then
  build=$root/build-gpu-bundle-full
  dest=$build/bundle
  mkdir -p "$build"
  # DNNL=OFF: a set, non-NOTFOUND value stops find_library, and if(DNNL) is false.
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DROFORMER_NATIVE=OFF -DDNNL=OFF >"$build/configure.log" 2>&1 ||
    { tail -n 20 "$build/configure.log"; exit 2; }
  grep -q "CUDA backend ON" "$build/configure.log" || { echo "no CUDA in this build"; exit 2; }
  targets=(roformer model_parity model_bench op_parity gpu_bench cuda_host_test)
else
  cmake -S "$root/tests/gpu" -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DROFORMER_GPU_CPU_ARCH=x86-64-v3 \
    -DROFORMER_GPU_USE_DNNL=OFF >"$build/configure.log" 2>&1 ||
    { tail -n 20 "$build/configure.log"; exit 2; }
  grep -q "op_parity ON" "$build/configure.log" ||
    echo "warning: op_parity is not part of this bundle (CPU reference dependencies missing here)"
  targets=(gpu_bench)
  grep -q "op_parity ON" "$build/configure.log" && targets+=(op_parity cuda_host_test)
fi
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"
rm -rf "$dest"
mkdir -p "$dest/bin" "$dest/lib"
for t in "${targets[@]}"; do
  cp "$build/$t" "$dest/bin/"
  # Every resolved library except glibc, the C++ runtime and CUDA's (the GPU machine has those).
  ldd "$build/$t" | awk '/=> \// {print $3}' |
    { grep -vE '/(libc|libm|libdl|libpthread|librt|libmvec|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' || true; } |
    { grep -vE '/lib(cudart|cublas|cublasLt|cuda|nccl)\.so' || true; } | while read -r lib; do
      cp -Ln "$lib" "$dest/lib/" 2>/dev/null || true
    done
done
git -C "$root" rev-parse --short HEAD >"$dest/REVISION" 2>/dev/null || true
du -sh "$dest"
ls "$dest/bin" "$dest/lib"
if [ $full -eq 1 ]; then
  tar -C "$dest" -cJf "$root/build-gpu-bundle/roformer-gpu.tar.xz" .
  ls -la "$root/build-gpu-bundle/roformer-gpu.tar.xz"
fi
