"""One entry point for every benchmark: ``python -m benchmarks <scenario> [its options]``.

python -m benchmarks llm_serving --help     # the whole Bento vs raw vLLM (TTFT, TPOT, ITL, E2EL, tok/s)
python -m benchmarks classic_batching ...   # adaptive batching on vs off
python -m benchmarks classic_after_peak ... # c=1 before and after a c=64 peak: our dispatcher wait vs BentoML's
python -m benchmarks embedding_cache ...    # cache hits vs misses vs raw encode (--hit-rates: a sweep)
python -m benchmarks semantic_cache ...     # near-duplicate prompts: semantic cache on vs exact only vs raw
python -m benchmarks embedding_peers ...    # embedding misses vs infinity-emb (make bench-embedding-peers)
python -m benchmarks embedding_passes ...   # one forward pass on a GPU: eager vs CUDA graphs
python -m benchmarks profile_trace ...      # a vLLM profiler trace and its top kernels
python -m benchmarks profile_workers --out D # py-spy and CPU per process: ClassicML alone vs the whole Bento
python -m benchmarks soak --minutes 10      # mixed load at 80% of peak: lost, corrupted, 5xx, RSS
python -m benchmarks report                 # benchmarks/results/REPORT.md from the committed JSON
"""

from __future__ import annotations

import importlib
import sys

SCENARIOS = {
    "llm_serving": "benchmarks.llm_serving",
    "classic_batching": "benchmarks.classic_batching",
    "classic_after_peak": "benchmarks.classic_after_peak",
    "embedding_cache": "benchmarks.embedding_cache",
    "semantic_cache": "benchmarks.semantic_cache",
    "embedding_peers": "benchmarks.embedding_peers",
    "embedding_passes": "benchmarks.embedding_passes",
    "profile_trace": "benchmarks.profile_trace",
    "profile_workers": "benchmarks.profile_workers",
    "soak": "benchmarks.soak",
    "report": "benchmarks.report",
}


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in SCENARIOS:
        print(__doc__)
        raise SystemExit(f"scenario: one of {', '.join(SCENARIOS)}" if argv else "")
    module = importlib.import_module(SCENARIOS[argv[0]])
    sys.argv = [f"python -m benchmarks {argv[0]}", *argv[1:]]
    module.main()


if __name__ == "__main__":
    main(sys.argv[1:])
