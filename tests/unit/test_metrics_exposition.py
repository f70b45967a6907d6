"""The public /metrics is one valid exposition: every family once, whatever the sources share."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from services.metrics_exposition import merge, only_engine_families, with_replica_label

OURS = """# HELP bentoml_service_request_total Total number of requests
# TYPE bentoml_service_request_total counter
bentoml_service_request_total{endpoint="/embed",service_name="gateway"} 3.0
# HELP infstack_cache_backend_up 1 while up
# TYPE infstack_cache_backend_up gauge
infstack_cache_backend_up{backend="disk",cache="embedding"} 1.0
"""
OTHER_SERVICE = """# HELP bentoml_service_request_total Total number of requests
# TYPE bentoml_service_request_total counter
bentoml_service_request_total{endpoint="/embed",service_name="gateway"} 3.0
bentoml_service_request_total{endpoint="/encode",service_name="embedding_cache"} 5.0
"""
ENGINE = """# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 100.0
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 2.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.01",model_name="m"} 1.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 2.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 2.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 0.5
"""


def test_only_the_engines_own_families_are_taken() -> None:
    kept = only_engine_families(ENGINE)
    assert "python_gc" not in kept
    assert {f.name for f in text_string_to_metric_families(kept)} == {
        "vllm:num_requests_running", "vllm:time_to_first_token_seconds",
    }  # fmt: skip


def test_merged_exposition_has_each_family_and_sample_once() -> None:
    text = merge([OURS, OTHER_SERVICE, only_engine_families(ENGINE)])
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(types) == len(set(types)) == 4
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(samples) == len(set(samples))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {s.labels["service_name"]: s.value for s in families["bentoml_service_request"].samples}
    assert requests == {"gateway": 3.0, "embedding_cache": 5.0}  # the duplicate sample counted once
    assert families["vllm:time_to_first_token_seconds"].type == "histogram"
    assert "bentoml_service_request_total{" in text  # counters keep their _total


def test_replicas_series_stay_apart_when_joined() -> None:
    unlabelled = "# TYPE vllm:up gauge\nvllm:up 1.0\n"
    texts = [with_replica_label(only_engine_families(ENGINE) + unlabelled, i) for i in (0, 1)]
    families = {f.name: f for f in text_string_to_metric_families(merge(texts))}
    running = families["vllm:num_requests_running"].samples
    assert sorted(s.labels["replica"] for s in running) == ["0", "1"]
    assert all(s.labels["engine"] == "0" for s in running)  # vLLM's own label is kept
    assert sorted(s.labels["replica"] for s in families["vllm:up"].samples) == ["0", "1"]
    ttft = families["vllm:time_to_first_token_seconds"].samples
    assert len(ttft) == 2 * 4  # two buckets, count and sum of each replica
