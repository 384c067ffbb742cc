#!/usr/bin/env bash
# Probity's forward pass against PyTorch (transformers) on the same model
# folder, the same token ids and the same thread count, in one run:
#
#   scripts/bench/forward_vs_torch.sh MODEL_DIR [THREADS]
#
# MODEL_DIR is a Hugging Face folder (e.g. the real zoo's base). PYTHON must
# have torch and transformers (default: the real zoo's venv). Prints the best
# of three for a batched forward of 8 x 64 tokens (all logits) and the time
# per greedy step with the key/value cache, both sides, and the ratios;
# then Probity's batched answers with and without the shared template head.
set -euo pipefail
cd "$(dirname "$0")/../.."
model=$1
threads=${2:-$(nproc)}
py=${PYTHON:-${REALZOO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/probity/realzoo-venv}/bin/python}
cargo build --release --quiet -p probity-zoo --example forward_bench
ours=$(RAYON_NUM_THREADS=$threads target/release/examples/forward_bench "$model")
theirs=$(OMP_NUM_THREADS=$threads "$py" - "$model" "$threads" <<'PY'
import sys, time, torch
from transformers import AutoModelForCausalLM
path, threads = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(threads)
m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
v = m.config.vocab_size
def ids(rows, n):
    return torch.tensor([[((r * n + j) * 7919 + 13) % (v - 200) + 100 for j in range(n)] for r in range(rows)])
x = ids(8, 64)
with torch.inference_mode():
    m(x)
    best = min((lambda t0: (m(x), time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(3))
    print(f"pytorch batched_forward_8x64_s {best:.3f}")
    p = ids(1, 32)
    steps = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = m.generate(p, max_new_tokens=32, min_new_tokens=32, do_sample=False, pad_token_id=0)
        steps.append((time.perf_counter() - t0) / (out.shape[1] - p.shape[1]))
    print(f"pytorch decode_step_s {min(steps):.4f}")
PY
)
echo "$ours"
echo "$theirs"
python3 - "$ours" "$theirs" <<'PY'
import sys
a = dict((l.split()[1], float(l.split()[2])) for l in sys.argv[1].splitlines())
b = dict((l.split()[1], float(l.split()[2])) for l in sys.argv[2].splitlines())
for k in a:
    if k in b:
        print(f"{k}: probity/pytorch = {a[k] / b[k]:.2f}")
a_s, a_w = a.get("answers_32_prompts_shared_prefix_s"), a.get("answers_32_prompts_whole_rows_s")
if a_s and a_w:
    print(f"answers_32_prompts: whole rows / shared prefix = {a_w / a_s:.2f}")
PY
