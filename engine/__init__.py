"""The inference engine. Importing it first chooses the kernels' instruction-set path
(kernels/isa.py), which must happen before numba compiles anything."""
from .kernels import isa  # noqa: F401
