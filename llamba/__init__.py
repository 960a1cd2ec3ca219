"""llamba: Llama 3.x on numba, an OpenAI-compatible inference server for GGUF models on the CPU.

Installed, the source folders are its subpackages: `llamba.engine` (engine/: the model, no web
code), `llamba.app` (app/: the HTTP server) and `llamba.configs` (configs/: the default
configuration). `python -m llamba` is the `llamba` command."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llamba")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"
