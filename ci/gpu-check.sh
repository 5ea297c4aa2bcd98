#!/usr/bin/env bash
# The prepared GPU check: finishes within 5 minutes on one H100 (install + a cold BPE cache included).
# Prints tokens/s, the SAS-P / Pre-LN throughput ratio, MFU and peak memory of pre_ln and sas_p at the paper's
# width (L=18, d=768, H=12, T=128, batch 128, bf16), and the peak memory of shaped vs softmax attention at T=2048.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import blockbench" 2>/dev/null || python3 -m pip install -q -e .
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 ci/gpu_check.py --device cuda "$@"
