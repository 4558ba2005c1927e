#!/usr/bin/env bash
# One-shot GPU check for issue #9 (`make bench-gpu`). NOT RUN YET: it was written in a session without a GPU.
# Prints the card, the CUDA tests of the cores, the cores benchmark on CUDA (UntiedLSTM vs the naive loop, target
# >= 3x; vs cuDNN nn.LSTM; share_every=5 vs nn.LSTM) and training tokens/s of lrnn fit vs the plain loops on CUDA.
# ~5 minutes on one GPU. Paste the whole output into the README's GPU section, with the card's name.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export WANDB_MODE=${WANDB_MODE:-offline}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
"$PY" -m pytest -q tests/cores -k cuda
"$PY" benchmarks/bench_cores.py --device cuda --repeats 50 --shapes small,small-1layer,medium,medium-1layer
"$PY" benchmarks/bench_lightning.py --device cuda --batches 200 --rounds 3 --threads 1
