#!/usr/bin/env bash
# One-shot GPU check for issue #9 (`make bench-gpu`): the card; the CUDA tests (the cores' CPU parity and CUDA graphs,
# training with graphs vs eager); the training loss's two paths (bench_nll.py: lrnn's buffers vs F.cross_entropy);
# the cores benchmark on CUDA (UntiedLSTM vs the naive loop, target >= 3x, eager and with cuda_graphs=True; vs cuDNN
# nn.LSTM; share_every=5 vs nn.LSTM); training tokens/s of `lrnn fit` vs the plain loops on CUDA (untied also with
# cuda_graphs=True). A step that fails is reported and the next one runs; the exit status says whether all passed.
# ROUNDS=1: 3 min 50 s on one H100 (session 10); each further round repeats the training runs (fresh processes).
# The training step needs PTB through $LRNN_DATA_MIRROR (or the hub).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export WANDB_MODE=${WANDB_MODE:-offline}
status=0
step() {
    echo
    echo "### $*"
    "$@" || { echo "### FAILED (rc $?): $*"; status=1; }
}
step nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
step "$PY" -m pytest -q -p no:cacheprovider tests/cores tests/lightning -k cuda
step "$PY" benchmarks/bench_nll.py --device cuda
step "$PY" benchmarks/bench_cores.py --device cuda --repeats 50 --shapes small,small-1layer,medium,medium-1layer
step "$PY" benchmarks/bench_lightning.py --device cuda --batches 200 --rounds "${ROUNDS:-3}" --threads 1
exit $status
