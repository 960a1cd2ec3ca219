"""llamba: Llama 3.x on numba, an OpenAI-compatible inference server for GGUF models on the CPU.

Installed, the source folders are its subpackages: `llamba.engine` (engine/: the model, no web
code), `llamba.app` (app/: the HTTP server) and `llamba.configs` (configs/: the default
configuration). `python -m llamba` is the `llamba` command."""
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# In a source tree, engine/, app/ and configs/ sit beside this folder rather than inside it: let
# `llamba.engine` and the others find them there (installed, they are inside).
_source_tree = Path(__file__).resolve().parent.parent
if (_source_tree / "engine" / "kernels").is_dir() and (_source_tree / "app").is_dir():
    __path__.append(str(_source_tree))

try:
    __version__ = version("llamba")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"
