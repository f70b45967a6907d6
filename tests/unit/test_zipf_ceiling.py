"""benchmarks/llm_prompts.py: zipf_makespan_s, the ceiling a response cache can reach on a Zipf workload."""

from __future__ import annotations

from benchmarks.llm_prompts import zipf_makespan_s, zipf_sequence


def test_each_distinct_prompt_is_generated_once_and_repeats_wait_for_it() -> None:
    # two clients: "a" is generated 0-1 s; the repeat sent at 0 waits for it (coalesced), then "b" 1-2 s
    assert zipf_makespan_s(["a", "a", "b"], clients=2, generation_s=1.0) == 2.0
    # repeats after their generation cost only the hit time (both clients free at 1 s)
    assert zipf_makespan_s(["a", "b", "a", "a"], clients=2, generation_s=1.0, hit_s=0.1) == 1.1
    # one client: no overlap at all
    assert zipf_makespan_s(["a", "b", "c"], clients=1, generation_s=0.5) == 1.5


def test_no_cache_is_no_better_than_generating_every_request() -> None:
    sequence = zipf_sequence(range(120), 600, 1.0, seed=101)
    distinct = len(set(sequence))
    assert 60 < distinct < 120  # a long tail, but popular prompts repeat
    cached = zipf_makespan_s(sequence, clients=64, generation_s=1.0)
    uncached = zipf_makespan_s(range(600), clients=64, generation_s=1.0)  # every request distinct
    assert uncached == 10.0 and cached < uncached / 3  # the cache's room on this workload
    assert zipf_makespan_s(sequence, clients=64, generation_s=1.0, hit_s=0.05) > cached  # hits cost time


def test_summary_splits_latency_by_cache_outcome() -> None:
    """A Zipf run's hits and misses are read apart: the pooled p50 hides which one is slow."""
    from benchmarks.llm_load import RequestResult, summarize

    def done(cache: str, ttft: float) -> RequestResult:
        return RequestResult(ok=True, ttft=ttft, e2el=ttft + 1.0, output_tokens=2, cache=cache)

    summary = summarize(1.0, [done("hit", 0.001), done("hit", 0.003), done("miss", 0.2)], input_len=4)
    assert summary["by_cache"]["hit"]["count"] == 2
    assert summary["by_cache"]["miss"]["p50_ttft_ms"] == 200.0
    assert summary["by_cache"]["hit"]["p99_ttft_ms"] < 3.0 + 1e-9
    assert "by_cache" not in summarize(1.0, [done("", 0.1)], input_len=4)  # raw vLLM: no header
