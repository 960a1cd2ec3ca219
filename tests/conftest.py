import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # for `support` and `serving`, the shared helpers
sys.path.insert(1, str(TESTS.parent))  # for `bench`, whose server starter and fuzzers the tests reuse
