"""The measured table behind backend="auto" (read by fa_kernels/auto.py, whose docstring defines the
shape classes): for each GPU arch, the faster of the triton and cuda backends per op, direction and
shape class; DEFAULT where an arch or a class is not measured.

Written by benchmarks/sweep_auto.py (re-run it on a GPU to regenerate an arch's rows; the others are
kept). EVIDENCE holds the times behind each choice, SOURCES where they were measured.

The norm chooses each direction apart: both backends save the same state for the backward (the
pre-norm sum in the residual dtype, 1/rms as float32 [rows], the dropout mask regenerated from the seed
by the same Philox counters and threshold), so the forward may run on one and the backward on the
other. Attention does not mix: its "backward" entry is the backend of a whole training call (forward
and backward, measured together), its "forward" entry that of a call without gradients.
"""

DEFAULT: dict[str, str] = {
    "attention": "triton",
    "norm": "triton",
}

SOURCES: dict[str, str] = {
    "sm_90": "benchmarks/results/norm_h200.md and attention_h200.md (NVIDIA H200, torch 2.11.0+cu130, triton 3.6.0, 2026-11-22; the timing before benchmarks/timing.py: best of 3 do_bench medians, attention 'backward' = its fwd+bwd TFLOP/s); pending a benchmarks/sweep_auto.py run",
}

TABLE: dict[str, dict[str, str]] = {
    "sm_90": {
        "attention/backward/hd<=128/seqlen<=1k/causal": "triton",
        "attention/backward/hd<=128/seqlen<=1k/full": "triton",
        "attention/backward/hd<=128/seqlen<=4k/causal": "triton",
        "attention/backward/hd<=128/seqlen<=4k/full": "triton",
        "attention/backward/hd<=128/seqlen>4k/causal": "triton",
        "attention/backward/hd<=128/seqlen>4k/full": "triton",
        "attention/backward/hd<=64/seqlen<=1k/causal": "triton",
        "attention/backward/hd<=64/seqlen<=1k/full": "triton",
        "attention/backward/hd<=64/seqlen<=4k/causal": "triton",
        "attention/backward/hd<=64/seqlen<=4k/full": "triton",
        "attention/backward/hd<=64/seqlen>4k/causal": "triton",
        "attention/backward/hd<=64/seqlen>4k/full": "triton",
        "attention/forward/hd<=128/seqlen<=1k/causal": "triton",
        "attention/forward/hd<=128/seqlen<=1k/full": "triton",
        "attention/forward/hd<=128/seqlen<=4k/causal": "triton",
        "attention/forward/hd<=128/seqlen<=4k/full": "triton",
        "attention/forward/hd<=128/seqlen>4k/causal": "triton",
        "attention/forward/hd<=128/seqlen>4k/full": "triton",
        "attention/forward/hd<=64/seqlen<=1k/causal": "triton",
        "attention/forward/hd<=64/seqlen<=1k/full": "triton",
        "attention/forward/hd<=64/seqlen<=4k/causal": "triton",
        "attention/forward/hd<=64/seqlen<=4k/full": "triton",
        "attention/forward/hd<=64/seqlen>4k/causal": "triton",
        "attention/forward/hd<=64/seqlen>4k/full": "triton",
        "norm/backward/hidden<=2k/rows>32k/dropout": "triton",
        "norm/backward/hidden<=2k/rows>32k/p0": "triton",
        "norm/backward/hidden<=4k/rows<=32k/dropout": "cuda",
        "norm/backward/hidden<=4k/rows<=32k/p0": "cuda",
        "norm/backward/hidden<=8k/rows<=32k/dropout": "triton",
        "norm/backward/hidden<=8k/rows<=32k/p0": "triton",
        "norm/forward/hidden<=2k/rows>32k/dropout": "triton",
        "norm/forward/hidden<=2k/rows>32k/p0": "cuda",
        "norm/forward/hidden<=4k/rows<=32k/dropout": "triton",
        "norm/forward/hidden<=4k/rows<=32k/p0": "triton",
        "norm/forward/hidden<=8k/rows<=32k/dropout": "triton",
        "norm/forward/hidden<=8k/rows<=32k/p0": "triton",
    },
}

EVIDENCE: dict[str, dict[str, str]] = {
    "sm_90": {
        "attention/backward/hd<=128/seqlen<=1k/causal": "attention_h200.md TFLOP/s seqlen 512: cuda 92.3, triton 138.2, seqlen 1024: cuda 122.8, triton 222.2",
        "attention/backward/hd<=128/seqlen<=1k/full": "attention_h200.md TFLOP/s seqlen 512: cuda 131.2, triton 285.6, seqlen 1024: cuda 155.6, triton 350.1",
        "attention/backward/hd<=128/seqlen<=4k/causal": "attention_h200.md TFLOP/s seqlen 2048: cuda 147.8, triton 327.3, seqlen 4096: cuda 165.6, triton 369.9",
        "attention/backward/hd<=128/seqlen<=4k/full": "attention_h200.md TFLOP/s seqlen 2048: cuda 169.8, triton 394.4, seqlen 4096: cuda 181.8, triton 417.2",
        "attention/backward/hd<=128/seqlen>4k/causal": "attention_h200.md TFLOP/s seqlen 8192: cuda 175.7, triton 402.7, seqlen 16384: cuda 184.4, triton 428.8",
        "attention/backward/hd<=128/seqlen>4k/full": "attention_h200.md TFLOP/s seqlen 8192: cuda 186.9, triton 433.5, seqlen 16384: cuda 189.0, triton 437.8",
        "attention/backward/hd<=64/seqlen<=1k/causal": "attention_h200.md TFLOP/s seqlen 512: cuda 80.9, triton 164.3, seqlen 1024: cuda 109.7, triton 244.3",
        "attention/backward/hd<=64/seqlen<=1k/full": "attention_h200.md TFLOP/s seqlen 512: cuda 114.9, triton 280.4, seqlen 1024: cuda 129.3, triton 317.2",
        "attention/backward/hd<=64/seqlen<=4k/causal": "attention_h200.md TFLOP/s seqlen 2048: cuda 132.2, triton 294.0, seqlen 4096: cuda 147.3, triton 318.3",
        "attention/backward/hd<=64/seqlen<=4k/full": "attention_h200.md TFLOP/s seqlen 2048: cuda 150.3, triton 345.0, seqlen 4096: cuda 160.4, triton 356.9",
        "attention/backward/hd<=64/seqlen>4k/causal": "attention_h200.md TFLOP/s seqlen 8192: cuda 157.3, triton 335.5, seqlen 16384: cuda 163.6, triton 354.6",
        "attention/backward/hd<=64/seqlen>4k/full": "attention_h200.md TFLOP/s seqlen 8192: cuda 165.7, triton 365.2, seqlen 16384: cuda 169.8, triton 368.5",
        "attention/forward/hd<=128/seqlen<=1k/causal": "attention_h200.md TFLOP/s seqlen 512: cuda 153.8, triton 235.8, seqlen 1024: cuda 174.6, triton 316.0",
        "attention/forward/hd<=128/seqlen<=1k/full": "attention_h200.md TFLOP/s seqlen 512: cuda 199.9, triton 339.8, seqlen 1024: cuda 218.8, triton 394.4",
        "attention/forward/hd<=128/seqlen<=4k/causal": "attention_h200.md TFLOP/s seqlen 2048: cuda 191.9, triton 380.7, seqlen 4096: cuda 207.5, triton 414.5",
        "attention/forward/hd<=128/seqlen<=4k/full": "attention_h200.md TFLOP/s seqlen 2048: cuda 209.8, triton 430.9, seqlen 4096: cuda 219.0, triton 457.2",
        "attention/forward/hd<=128/seqlen>4k/causal": "attention_h200.md TFLOP/s seqlen 8192: cuda 217.1, triton 430.1, seqlen 16384: cuda 217.8, triton 443.7",
        "attention/forward/hd<=128/seqlen>4k/full": "attention_h200.md TFLOP/s seqlen 8192: cuda 222.9, triton 461.4, seqlen 16384: cuda 231.0, triton 463.9",
        "attention/forward/hd<=64/seqlen<=1k/causal": "attention_h200.md TFLOP/s seqlen 512: cuda 129.6, triton 228.6, seqlen 1024: cuda 152.1, triton 291.4",
        "attention/forward/hd<=64/seqlen<=1k/full": "attention_h200.md TFLOP/s seqlen 512: cuda 170.4, triton 324.1, seqlen 1024: cuda 177.0, triton 372.8",
        "attention/forward/hd<=64/seqlen<=4k/causal": "attention_h200.md TFLOP/s seqlen 2048: cuda 170.3, triton 341.3, seqlen 4096: cuda 180.5, triton 366.8",
        "attention/forward/hd<=64/seqlen<=4k/full": "attention_h200.md TFLOP/s seqlen 2048: cuda 174.9, triton 399.3, seqlen 4096: cuda 186.4, triton 413.0",
        "attention/forward/hd<=64/seqlen>4k/causal": "attention_h200.md TFLOP/s seqlen 8192: cuda 183.3, triton 382.7, seqlen 16384: cuda 184.4, triton 394.5",
        "attention/forward/hd<=64/seqlen>4k/full": "attention_h200.md TFLOP/s seqlen 8192: cuda 190.8, triton 424.9, seqlen 16384: cuda 196.6, triton 429.9",
        "norm/backward/hidden<=2k/rows>32k/dropout": "norm_h200.md 65536x2048 p=0.1: cuda 0.408 ms, triton 0.365 ms",
        "norm/backward/hidden<=2k/rows>32k/p0": "norm_h200.md 65536x2048 p=0.0: cuda 0.324 ms, triton 0.288 ms",
        "norm/backward/hidden<=4k/rows<=32k/dropout": "norm_h200.md 16384x4096 p=0.1: cuda 0.229 ms, triton 0.241 ms",
        "norm/backward/hidden<=4k/rows<=32k/p0": "norm_h200.md 16384x4096 p=0.0: cuda 0.191 ms, triton 0.197 ms",
        "norm/backward/hidden<=8k/rows<=32k/dropout": "norm_h200.md 32768x8192 p=0.1: cuda 0.908 ms, triton 0.838 ms",
        "norm/backward/hidden<=8k/rows<=32k/p0": "norm_h200.md 32768x8192 p=0.0: cuda 0.692 ms, triton 0.551 ms",
        "norm/forward/hidden<=2k/rows>32k/dropout": "norm_h200.md 65536x2048 p=0.1: cuda 0.268 ms, triton 0.261 ms",
        "norm/forward/hidden<=2k/rows>32k/p0": "norm_h200.md 65536x2048 p=0.0: cuda 0.260 ms, triton 0.263 ms",
        "norm/forward/hidden<=4k/rows<=32k/dropout": "norm_h200.md 16384x4096 p=0.1: cuda 0.141 ms, triton 0.134 ms",
        "norm/forward/hidden<=4k/rows<=32k/p0": "norm_h200.md 16384x4096 p=0.0: cuda 0.135 ms, triton 0.134 ms",
        "norm/forward/hidden<=8k/rows<=32k/dropout": "norm_h200.md 32768x8192 p=0.1: cuda 0.570 ms, triton 0.547 ms",
        "norm/forward/hidden<=8k/rows<=32k/p0": "norm_h200.md 32768x8192 p=0.0: cuda 0.544 ms, triton 0.525 ms",
    },
}
