"""Prometheus metrics for /metrics: what each model runner reports, on a registry per app; beside
llamba's own, vLLM's names for the gauges that routers and schedulers read (the Gateway API
Inference Extension's endpoint picker, llm-d and KServe read `vllm:num_requests_waiting`,
`vllm:num_requests_running`, `vllm:kv_cache_usage_perc` and `vllm:cache_config_info`; the
production-stack router the older `vllm:gpu_cache_usage_perc` and `vllm:gpu_prefix_cache_*`),
labelled `model_name` as vLLM labels them."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from llamba.engine.job import Job, Observer

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self):
        self.registry = r = CollectorRegistry()
        labels = ["model"]
        self.running = Gauge("llamba_requests_running", "Requests being generated", labels, registry=r)
        self.waiting = Gauge("llamba_requests_waiting", "Requests queued for a model", labels, registry=r)
        self.busy_slots = Gauge("llamba_kv_slots_busy", "KV-cache slots held by running requests", labels, registry=r)
        self.requests = Counter("llamba_requests", "Requests admitted to a model", labels, registry=r)
        self.rejected = Counter("llamba_requests_rejected", "Requests refused with 429 (queue full)", labels, registry=r)
        self.prompt_tokens = Counter("llamba_prompt_tokens", "Prompt tokens of admitted requests", labels, registry=r)
        self.cached_tokens = Counter("llamba_prompt_tokens_cached", "Prompt tokens served from the prefix cache",
                                     labels, registry=r)
        self.cache_hits = Counter("llamba_prefix_cache_hits", "Requests that reused a cached prefix", labels, registry=r)
        self.generated = Counter("llamba_generated_tokens", "Tokens generated", labels, registry=r)
        self.drafted = Counter("llamba_draft_tokens", "Tokens drafted from requests' contexts (speculation)",
                               labels, registry=r)
        self.accepted = Counter("llamba_draft_tokens_accepted", "Drafted tokens the model generated too",
                                labels, registry=r)
        self.ttft = Histogram("llamba_time_to_first_token_seconds", "From submission to the first token",
                              labels, buckets=LATENCY_BUCKETS, registry=r)
        self.loaded = Gauge("llamba_model_loaded", "1 while the model is loaded", labels, registry=r)
        self.compiling = Gauge("llamba_kernels_compiling", "1 while the model's faster kernels compile in the "
                               "background (it serves meanwhile, on slower ones)", labels, registry=r)
        self.load_seconds = Histogram("llamba_model_load_seconds", "From a model's load starting to its kernels ready",
                                      labels, buckets=LATENCY_BUCKETS, registry=r)
        self.per_token = Histogram("llamba_time_per_output_token_seconds", "Between consecutive tokens",
                                   labels, buckets=LATENCY_BUCKETS, registry=r)
        self.load: dict[str, int] = {}  # requests running + waiting per model (GET /get_load)
        self.cache_config: dict[str, tuple[str, str]] = {}  # a loaded model's (block_size, num_gpu_blocks)
        vllm = ["model_name"]
        self.vllm_running = Gauge("vllm:num_requests_running", "Requests being generated", vllm, registry=r)
        self.vllm_waiting = Gauge("vllm:num_requests_waiting", "Requests queued", vllm, registry=r)
        self.vllm_kv_usage = [Gauge(name, "Fraction of the KV pool's blocks in use (1 = full)", vllm, registry=r)
                              for name in ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")]
        self.vllm_cache_config = Gauge("vllm:cache_config_info", "The KV pool: positions per block, blocks",
                                       vllm + ["block_size", "num_gpu_blocks"], registry=r)
        self.vllm_drafted = Counter("vllm:spec_decode_num_draft_tokens", "Tokens drafted", vllm, registry=r)
        self.vllm_accepted = Counter("vllm:spec_decode_num_accepted_tokens", "Drafted tokens accepted", vllm, registry=r)
        self.vllm_prefix_queries = [Counter(name, "Prompt tokens looked up in the prefix cache", vllm, registry=r)
                                    for name in ("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries")]
        self.vllm_prefix_hits = [Counter(name, "Prompt tokens found in the prefix cache", vllm, registry=r)
                                 for name in ("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits")]

    def model_loaded(self, model: str, seconds: float, block_size: int, blocks: int) -> None:
        self.loaded.labels(model).set(1)
        self.load_seconds.labels(model).observe(seconds)
        self.cache_config[model] = (str(block_size), str(blocks))
        self.vllm_cache_config.labels(model, *self.cache_config[model]).set(1)

    def model_unloaded(self, model: str) -> None:
        self.loaded.labels(model).set(0)
        self.compiling.labels(model).set(0)
        self.load.pop(model, None)
        if model in self.cache_config:
            self.vllm_cache_config.remove(model, *self.cache_config.pop(model))

    def observer(self, model: str) -> Observer:
        return _ModelObserver(self, model)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ModelObserver(Observer):
    def __init__(self, m: Metrics, model: str):
        self.m, self.model = m, model

    def queue(self, running: int, waiting: int, busy_slots: int, kv_usage: float) -> None:
        self.m.running.labels(self.model).set(running)
        self.m.waiting.labels(self.model).set(waiting)
        self.m.busy_slots.labels(self.model).set(busy_slots)
        self.m.load[self.model] = running + waiting
        self.m.vllm_running.labels(self.model).set(running)
        self.m.vllm_waiting.labels(self.model).set(waiting)
        for gauge in self.m.vllm_kv_usage:
            gauge.labels(self.model).set(kv_usage)

    def admitted(self, job: Job) -> None:
        self.m.requests.labels(self.model).inc()
        self.m.prompt_tokens.labels(self.model).inc(job.prompt_tokens)
        for queries, hits in zip(self.m.vllm_prefix_queries, self.m.vllm_prefix_hits):
            queries.labels(self.model).inc(job.prompt_tokens)
            hits.labels(self.model).inc(job.cached_tokens)
        if job.cached_tokens:
            self.m.cached_tokens.labels(self.model).inc(job.cached_tokens)
            self.m.cache_hits.labels(self.model).inc()

    def token(self, job: Job, seconds: float, first: bool) -> None:
        self.m.generated.labels(self.model).inc()
        (self.m.ttft if first else self.m.per_token).labels(self.model).observe(seconds)

    def drafted(self, job: Job, drafted: int, accepted: int) -> None:
        for counter, n in ((self.m.drafted, drafted), (self.m.accepted, accepted),
                           (self.m.vllm_drafted, drafted), (self.m.vllm_accepted, accepted)):
            counter.labels(self.model).inc(n)

    def rejected(self) -> None:
        self.m.rejected.labels(self.model).inc()

    def compiling(self, busy: bool) -> None:
        self.m.compiling.labels(self.model).set(int(busy))
