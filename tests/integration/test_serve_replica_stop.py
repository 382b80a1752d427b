"""SIGTERM at every moment of a resuming serve-replica's start-up (issue 18's
flake: after kill -9s, test_serve_replica_slow stopped the restarted
serve-replica before it had started, and it died of SIGTERM with no
"stopping" line; under load the start-up takes long enough for that).

The rule it checks: once serve-replica has logged "following", a SIGTERM is
a graceful stop (exit 0, "stopping", "stopped"); before, the process either
stops gracefully all the same or, still starting (before it catches
signals), dies of the signal. Either way the follower's database is whole
and unchanged, and the next start resumes it. Stopping a process before it
says it is ready and expecting exit 0 is the race the slow test had."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from test_serve_replica import WRITER, init_source, integrity, log_tail, read_n, start  # noqa: E402
from walship_test import run_tests, stop, wait_for, walship  # noqa: E402


def log_text(tmp, name):
    try:
        with open(f"{tmp}/{name}.log") as f:
            return f.read()
    except OSError:
        return ""


def kill_9_and_restart(tmp, replica, follow):
    """A follower that was killed -9 after catching up, as in the slow test."""
    serve = start(tmp, "killed", "serve-replica", f"file://{replica}", follow, "--poll-interval", "20ms")
    wait_for(lambda: 'msg="following"' in log_text(tmp, "killed"), "serve-replica to follow")
    serve.kill()
    serve.wait()


def test_a_stop_at_any_moment_of_a_resume_is_graceful_once_following(tmp):
    src, replica, follow = f"{tmp}/src.db", f"{tmp}/replica", f"{tmp}/follow.db"
    init_source(src)
    subprocess.run([sys.executable, "-c", WRITER, src, "50", "0", "2000"], check=True, capture_output=True)
    walship("snapshot", src, f"file://{replica}", check=0)
    n = read_n(src)
    kill_9_and_restart(tmp, replica, follow)
    assert read_n(follow) == n
    # How long a start takes here, to spread the signals over it.
    began = time.monotonic()
    probe = start(tmp, "probe", "serve-replica", f"file://{replica}", follow)
    wait_for(lambda: 'msg="following"' in log_text(tmp, "probe"), "serve-replica to follow")
    ready = time.monotonic() - began
    assert stop(probe) == 0, log_tail(tmp, "probe")
    moments = [0.0] * 4 + [ready * i / 16 for i in range(1, 25)]
    graceful, died = 0, []
    for i, moment in enumerate(moments):
        name = f"serve{i}"
        proc = start(tmp, name, "serve-replica", f"file://{replica}", follow, "--poll-interval", "20ms")
        time.sleep(moment)
        said_following = 'msg="following"' in log_text(tmp, name)
        code = stop(proc)
        log = log_text(tmp, name)
        if said_following:
            # The contract the slow test relies on.
            assert code == 0, (moment, code, log_tail(tmp, name))
        assert code in (0, -signal.SIGTERM), (moment, code, log_tail(tmp, name))
        if code == 0:
            assert 'msg="stopping"' in log and 'msg="stopped"' in log, log_tail(tmp, name)
            graceful += 1
        else:
            assert 'msg="following"' not in log, log_tail(tmp, name)
            died.append(moment)
        assert integrity(follow) == "ok" and read_n(follow) == n, log_tail(tmp, name)
        assert not [f for f in os.listdir(tmp) if ".walship-tmp-" in f]
    print(f"    start-up took {ready * 1000:.0f} ms; {graceful} graceful stops, {len(died)} died of SIGTERM "
          f"while starting (signalled up to {max(died, default=0) * 1000:.0f} ms after the start)")
    # The slow test's sequence, done right: wait until it follows, then stop.
    serve = start(tmp, "again", "serve-replica", f"file://{replica}", follow)
    wait_for(lambda: 'msg="following"' in log_text(tmp, "again"), "serve-replica to follow")
    assert stop(serve) == 0, log_tail(tmp, "again")


if __name__ == "__main__":
    run_tests([test_a_stop_at_any_moment_of_a_resume_is_graceful_once_following])
