"""The test tiers: `slow` marks every test that starts a real server or a fresh Python process
(most of whose time goes to compiling kernels), by module, here in one place; `pytest -m "not
slow"` is the fast tier for working locally, CI runs all."""
import pytest

from tests.support import background

SLOW = {
    # a real `llamba serve` (or nginx in front of one)
    "test_agents_sdk", "test_anthropic_sdk", "test_batching", "test_concurrency", "test_defaults",
    "test_deployment", "test_embeddings", "test_fuzz_api", "test_models_dir", "test_openai_sdk",
    "test_readme_examples", "test_reliability", "test_responses", "test_soak", "test_threads", "test_tool_loops",
    "test_family_tools", "test_chat_page", "test_router_hooks", "test_router",
    # fresh processes: forced kernel paths, a wheel installed in a new venv, memory and warm-up probes, the CLI
    "test_kernel_paths", "test_install", "test_memory", "test_warmup", "test_cli", "test_fuzz_gguf",
    # every reference model's perplexity over a long text, greedy decoding against the references,
    # hundreds of constrained answers
    "test_perplexity", "test_greedy", "test_structured", "test_promises", "test_family_quants",
}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: starts a server or a fresh process (pytest -m 'not slow' skips it)")


def pytest_collection_modifyitems(items):
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in SLOW:
            item.add_marker(pytest.mark.slow)
    # the modules with background work last, so that it has the whole session to run in
    items.sort(key=lambda item: hasattr(item.module, "start_in_background"))


def pytest_collection_finish(session):
    """Start the background work of each module with tests to run (tests/support/background.py),
    in the order the modules run."""
    if session.config.option.collectonly:
        return
    for module in dict.fromkeys(item.module for item in session.items):
        if hasattr(module, "start_in_background"):
            module.start_in_background()


def pytest_sessionfinish(session):
    background.stop()
