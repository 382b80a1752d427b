"""The long serve-replica tests (see test_serve_replica.py): 8 readers check
an invariant on every read of the follower while about 12,000 transactions
are shipped and applied, and kill -9 of serve-replica mid-apply. Set
WALSHIP_SERVE_TX to change the number of transactions."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from test_serve_replica import SLOW  # noqa: E402
from walship_test import run_tests  # noqa: E402

if __name__ == "__main__":
    run_tests(SLOW)
