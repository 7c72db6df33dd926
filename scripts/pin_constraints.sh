#!/usr/bin/env sh
# Regenerate constraints.txt: every package (transitive ones included) of the tested CPU stack,
# Python 3.11, Linux x86_64. Needs uv (`pip install uv`) and the package registry. torch is the
# CPU build (installed first by `pip install torch==2.13.0`), so the CUDA wheels that PyPI's
# torch would pull (nvidia-*, triton) are left out. After regenerating: build a fresh venv with
# `-c constraints.txt`, run the tests and every suite at --scale tiny (tox -e py311), then commit.
set -eu
cd "$(dirname "$0")/.."
uv pip compile pyproject.toml --all-extras --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
    --no-emit-package triton \
    $(for p in cublas cuda-cupti cuda-nvrtc cuda-runtime cudnn-cu13 cufft cufile curand cusolver cusparse \
                cusparselt-cu13 nccl-cu13 nvjitlink nvshmem-cu13 nvtx; do printf -- '--no-emit-package nvidia-%s ' "$p"; done) \
    --custom-compile-command "sh scripts/pin_constraints.sh" -o constraints.txt "$@"
