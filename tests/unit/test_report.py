"""python -m benchmarks report: REPORT.md from result JSON files (tests/fixtures/results, a trimmed copy
of the real files' shape)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.report import build, main

FIXTURE = Path(__file__).parent.parent / "fixtures" / "results"


def row(report: str, *cells: str) -> str:
    """The one table row that holds every cell."""
    rows = [line for line in report.splitlines() if line.startswith("|") and all(c in line for c in cells)]
    assert len(rows) == 1, (cells, rows)
    return rows[0]


def test_each_technique_gets_its_ratio_machine_and_command() -> None:
    report = build(FIXTURE)
    assert "**1.430x**" in row(report, "llm_techniques_h200.json", "fp8 (quantization=fp8)", "rate=inf")
    assert "1x NVIDIA H200" in row(report, "fp8 (quantization=fp8)", "concurrency=1")
    # the command writes to the committed file, not to the GPU machine's output folder
    assert "--out benchmarks/results/llm_techniques_h200.json" in report and "/root/out" not in report


def test_claims_are_judged_from_the_measured_ratio() -> None:
    report = build(FIXTURE)
    fp8 = row(report, "FP8 weights: 1.8-2.5x", "raw bf16")
    assert "1.43x" in fp8 and fp8.endswith("| no |")  # measured below the claimed 1.8x
    assert "not measured in a committed run" in row(report, "Prefix caching")
    batching = row(report, "Continuous batching: 2-3x")
    assert "1.28x at rate=8" in batching and batching.endswith("| no |")  # judged at the heaviest rate
    semantic = row(report, "Semantic cache: >= 80%")
    assert "84% answered, 0 wrong" in semantic and "0.96" in semantic and semantic.endswith("| yes |")
    zipf = row(report, "Zipf-popular")
    assert "3.40x requests/s" in zipf and zipf.endswith("| yes |")  # >= 3x and TTFT p50 lower


def test_overhead_roofline_and_soak_rows() -> None:
    report = build(FIXTURE)
    assert "**0.975x**" in row(report, "llm_overhead_h200.json", "gateway", "rate=inf")
    roof = row(report, "llm_techniques_h200.json", "16.06 GB")
    assert ("4.30 TB/s" in roof and "3.73" in roof and "**1.28x**" in roof) or "**1.29x**" in roof
    assert "56,486" in row(report, "soak_cpu.json")
    zipf = row(report, "llm_zipf_h200.json", "120 distinct")
    assert "**3.40x**" in zipf and zipf.endswith("| 3.43x | - |")  # measured, the zero-cost ceiling, no split
    litserve = row(report, "classic_vs_litserve_cpu.json", "concurrency=64")
    assert "**0.99x**" in litserve and "595.7 (litserve-on)" in litserve and "CPU, 2 cores" in litserve


def test_litserve_rows_per_model_carry_each_stacks_share_of_its_own_no_op_ceiling() -> None:
    report = build(FIXTURE)
    text = row(report, "classic_peers_cpu.json", "| text |", "concurrency=64")
    assert "**0.50x**" in text and "130.0 (litserve-on)" in text and text.endswith("| 2 | 8% / 14% | - |")
    tabular = row(report, "classic_peers_cpu.json", "| tabular |", "concurrency=64")
    assert tabular.endswith("| 74% / 67% | 450.0, **0.75x**, 310.0 |")  # the same cell at the public port
    ceiling = row(report, "classic_peers_cpu.json", "800.0")  # the no-op table, judged at the top load
    assert "900.0" in ceiling and "120.0 / 95.0" in ceiling and ceiling.endswith("| 74%: **no** |")
    assert row(report, "classic_peers_cpu.json", "520.0").endswith("| - |")  # judged at concurrency 64 only
    old = row(report, "classic_vs_litserve_cpu.json", "concurrency=64")  # written before the text peer
    assert "| tabular |" in old and old.endswith("| - / - | - |")


def test_embedding_peer_rows_carry_the_public_port_where_the_run_measured_it() -> None:
    report = build(FIXTURE)
    with_gateway = row(report, "embedding_peers_gpu.json", "| 1x8 |")
    assert "**2.12x**" in with_gateway and "1x NVIDIA H200" in with_gateway
    assert with_gateway.endswith("| 0 / 0 | 454.0, **2.34x**, 22.9 |")
    assert row(report, "embedding_peers_gpu.json", "| 32x32 |").endswith("| 0 / 0 | - |")


def test_the_command_writes_the_report_and_skips_what_is_not_a_result(tmp_path: Path) -> None:
    out = tmp_path / "REPORT.md"
    main(["--results", str(FIXTURE), "--out", str(out)])
    text = out.read_text()
    assert text == build(FIXTURE) and "not_a_result" not in text


def test_layouts_and_routing_are_compared_within_their_own_run() -> None:
    report = build(FIXTURE)
    tp2 = row(report, "llm_parallel_h200x2.json", "tp2 (TP2 x PP1 x DP1)", "concurrency=1")
    assert "**1.37x**" in tp2 and "2x NVIDIA H200" in tp2 and "3.51" in tp2
    bound = row(
        report, "llm_affinity_h200x2.json", "affinity_cache_bound vs round_robin_cache_bound", "rate=inf"
    )
    assert "**-55%**" in bound and "1.61x" in bound and "16 x 2048" in bound
    assert row(report, "Prefix-aware routing", "affinity at rate=inf").endswith(
        "| no |"
    )  # -21%: short of -40%
    assert row(report, "Prefix-aware routing", "affinity_cache_bound at rate=inf").endswith("| yes |")
    assert "--targets '' --baseline round_robin" in report  # an empty argument survives a copy-paste


def test_static_batching_semantic_cache_and_hit_rate_sweep_sections() -> None:
    report = build(FIXTURE)
    static = row(report, "llm_static_batching_cpu.json", "rate=2", "B=16, 50 ms")
    assert "1.99 / 1.39" in static and "**1.43x**" in static and "1.31x" in static  # relay / static too
    assert "TTFT <= 500.0 ms, TPOT <= 25.0 ms" in static and "98% / 74%" in static
    assert "**84%**" in row(report, "semantic_cache_cpu.json", "| semantic |", "0.95")
    assert "off (exact only)" in row(report, "semantic_cache_cpu.json", "| exact |")
    assert "0.8: 98% (wrong 4)" in report  # the replayed sweep counts answers from another prompt
    full = row(report, "embedding_cache_sweep_cpu.json", "| 4 |", "| 100% |")
    assert "**42.78x**" in full and "10.9" in full


def test_quantized_checkpoints_against_bf16_in_their_own_section() -> None:
    report = build(FIXTURE)
    section = report[report.index("## 2e.") : report.index("## 3.")]
    fp8 = row(section, "llm_quant_h200.json", "fp8_dynamic (fp8-dynamic)", "rate=inf")
    assert "**1.35x**" in fp8 and "949,552" in fp8 and "1.06x" in fp8  # throughput and KV tokens vs bf16
    assert "3.48" in row(section, "fp8_dynamic (fp8-dynamic)", "concurrency=1")  # batch-1 TPOT ms
    assert "**1.12x**" in row(section, "w4a16_awq (w4a16-awq)", "rate=inf")
    assert "**1.00x**" in row(section, "gateway (bf16)", "rate=inf")
    assert "llm_quant_h200.json" not in report[report.index("## 7.") :]  # not a multi-GPU layout
    claim = row(report, "FP8 weights: 1.8-2.5x", "FP8 checkpoint through the Bento")
    assert "1.35x" in claim and claim.endswith("| no |")


def test_zipf_answers_by_cache_outcome() -> None:
    """The Zipf section reads a run's hits, coalesced answers and generations from the cache header split."""
    from benchmarks.report_caches import _outcomes

    ours = {"by_cache": {"hit": {"count": 405, "p50_ttft_ms": 29.81}, "coalesced": {"count": 93, "p50_ttft_ms": 281.0},
                         "miss": {"count": 102, "p50_ttft_ms": 282.5}}}  # fmt: skip
    assert _outcomes(ours) == "405 / 93 / 102 (29.8 ms)"
    assert _outcomes({}) == "-"
