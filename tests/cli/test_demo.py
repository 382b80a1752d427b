"""README's first command ends with scripts/demo: it must succeed (exit 0,
both restores checked) and leave no temp folder behind."""
import glob
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from walship_test import WALSHIP, run_tests  # noqa: E402

DEMO = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "demo")


def test_the_demo_succeeds_and_cleans_up(tmp):
    env = {**os.environ, "WALSHIP": os.path.abspath(WALSHIP), "TMPDIR": tmp}
    r = subprocess.run([DEMO], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "ok: both restores reproduce the source database" in r.stdout, r.stdout
    assert glob.glob(f"{tmp}/walship-demo.*") == [], os.listdir(tmp)


if __name__ == "__main__":
    run_tests([test_the_demo_succeeds_and_cleans_up])
