"""llamba: an OpenAI-compatible inference server that runs GGUF language models on the CPU, with numba.

Installed (`pip install -e .` from a source tree), the source folders are its subpackages:
`llamba.engine` (engine/: the model, no web code), `llamba.app` (app/: the HTTP server) and
`llamba.configs` (configs/: the default configuration); pyproject.toml maps them. Everything
outside a package imports it by that name. `python -m llamba` is the `llamba` command."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llamba")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"
