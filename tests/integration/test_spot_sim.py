"""scripts/spot-sim, short: 5 preemptions (mixed) on the file backend with a
reader, 2 split-brain ones, and 3 hard ones each with an AWS and a GCE
preemption notice served 2 s ahead. The run fails (and so does this test) if a restore is corrupt, a
graceful drain loses an acknowledged commit, or a hard power-off loses one
acknowledged more than the sync interval (+ slack) before the kill (with a
notice: the notice sync interval, 100 ms, + slack, though the sync interval
is 10 s). With --durable-ack (the app acknowledges only what `walship sync`
said is durable), 4 mixed preemptions lose no acknowledged commit at all.
The fault hooks prove that a lost commit (also with --durable-ack), and a
notice not acted on, do fail it; bad input is one line and exit 2."""
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from walship_test import run_tests  # noqa: E402

SPOT_SIM = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "spot-sim")


def spot_sim(*args, env=None):
    proc = subprocess.run([sys.executable, SPOT_SIM, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})
    return proc


def test_five_mixed_preemptions_lose_nothing_older_than_the_sync_interval(tmp):
    r = spot_sim("--preemptions", "5", "--mode", "mixed", "--backend", "file", "--db-size", "4MiB", "--reader",
                 "--seed", "7", "--out", f"{tmp}/out")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    with open(f"{tmp}/out/results.json") as f:
        results = json.load(f)
    rows = results["preemptions"]
    assert len(rows) == 5 and results["problems"] == [], results
    assert {row["mode"] for row in rows} == {"graceful", "hard"}, rows
    for row in rows:
        assert row["integrity"] == "ok", row
        assert row["oldest_lost_age_s"] <= 1.5, row  # the sync interval + the default slack
        if row["mode"] == "graceful":
            assert row["lost"] == 0 and row["restored_n"] >= row["acked_max"], row
        assert row["reads"] > 0 and row["reads_ok"] == row["reads"], row
    assert "| hard power-off" in r.stdout and "| graceful drain" in r.stdout, r.stdout
    assert os.path.exists(f"{tmp}/out/results.csv")


def test_split_brain_the_resumed_node_is_fenced_and_the_replacement_keeps_the_replica(tmp):
    """Each preempted node is paused, not killed, and resumed once its
    replacement acknowledged a commit: it exits 4 (fenced), and the final
    check (every commit of the last app restored, verify) passes."""
    r = spot_sim("--split-brain", "--preemptions", "2", "--lease-ttl", "3s", "--db-size", "1MiB", "--seed", "3",
                 "--out", f"{tmp}/out")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    with open(f"{tmp}/out/results.json") as f:
        results = json.load(f)
    rows = results["preemptions"]
    assert len(rows) == 2 and results["problems"] == [], results
    for row in rows:
        assert row["mode"] == "split-brain" and row["old_exit"] == 4 and row["integrity"] == "ok", row
        assert row["oldest_lost_age_s"] <= 1.5, row
    assert "| split brain" in r.stdout, r.stdout


def test_with_durable_acks_no_preemption_loses_an_acknowledged_commit(tmp):
    """The app acknowledges a commit only after `sync` on replicate's control
    socket answered ok: hard kills lose none of them (a bound of 0 that the run
    itself checks), and the app still acknowledged commits at about --rate."""
    r = spot_sim("--durable-ack", "--preemptions", "4", "--mode", "mixed", "--db-size", "1MiB", "--seed", "11",
                 "--out", f"{tmp}/out")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    with open(f"{tmp}/out/results.json") as f:
        results = json.load(f)
    rows = results["preemptions"]
    assert len(rows) == 4 and results["problems"] == [] and results["settings"]["durable_ack"] is True, results
    assert {row["mode"] for row in rows} == {"graceful", "hard"}, rows
    for row in rows:
        assert row["integrity"] == "ok" and row["lost"] == 0 and row["restored_n"] >= row["acked_max"], row
        assert row["acked"] > 0 and row["ack_p99_ms"] is not None and row["syncs_not_ok"] == 0, row
        assert row["commits_per_s"] >= 50, row  # --rate 100: syncs batch commits, they do not serialise them
    assert "| hard power-off (SIGKILL, disk wiped, durable acks)" in r.stdout, r.stdout
    assert "durable acks: commit -> ok" in r.stdout, r.stdout


def failed_run(*args, env):
    """A run that must fail (exit 1): it keeps its folder for a person to look at, which this removes."""
    r = spot_sim(*args, env=env)
    kept = re.search(r"nodes, replica and logs kept in (\S+)", r.stderr)
    if kept:
        shutil.rmtree(kept[1])
    assert r.returncode == 1 and kept, f"{r.stdout}\n{r.stderr}"
    return r


def notice_run(tmp, cloud):
    """3 hard preemptions with a 10 s sync interval: without the notice each
    would lose the 2-5 s since the node started."""
    r = spot_sim("--notice", cloud, "--mode", "hard", "--preemptions", "3", "--sync-interval", "10s",
                 "--db-size", "1MiB", "--seed", "5", "--out", f"{tmp}/out")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    with open(f"{tmp}/out/results.json") as f:
        results = json.load(f)
    rows = results["preemptions"]
    assert len(rows) == 3 and results["problems"] == [], results
    assert results["settings"]["notice"] == cloud, results["settings"]
    for row in rows:
        assert row["mode"] == "hard" and row["integrity"] == "ok" and row["noticed"] is True, row
        assert 1.9 <= row["notice_s"] <= 2.5, row
        assert row["oldest_lost_age_s"] <= 0.6 and row["loss_window_ms"] <= 600, row  # 100 ms + the slack
    assert f"{cloud} notice 2 s ahead" in r.stdout and f"notices: 3 served ({cloud}), 3 logged" in r.stdout, r.stdout


def test_with_an_aws_notice_a_hard_preemption_loses_nothing_older_than_the_notice_interval(tmp):
    notice_run(tmp, "aws")


def test_with_a_gce_notice_a_hard_preemption_loses_nothing_older_than_the_notice_interval(tmp):
    notice_run(tmp, "gce")


def test_a_notice_not_acted_on_fails_the_run(tmp):
    """The notice is served but replicate runs with --preemption-notice off:
    the commits of the whole uptime (2 s at least) are lost, past the 0.6 s bound."""
    r = failed_run("--notice", "aws", "--mode", "hard", "--preemptions", "1", "--sync-interval", "10s",
                   "--db-size", "0", "--out", f"{tmp}/out", env={"WALSHIP_SPOT_SIM_FAULT": "ignore-notice"})
    assert re.search(r"FAILED: preemption 1 \(hard, node0 -> node1\): lost \d+ acknowledged commits, the oldest "
                     r"acknowledged \d+\.\d\ds before the kill \(bound 0\.60s: notice sync interval 100ms \+ "
                     r"slack 500ms\)", r.stdout), r.stdout
    assert "FAILED: preemption 1 (hard, node0 -> node1): walship did not log the aws notice" in r.stdout, r.stdout


def test_a_lost_acknowledged_commit_fails_the_run(tmp):
    r = failed_run("--preemptions", "1", "--mode", "graceful", "--db-size", "0", "--out", f"{tmp}/out",
                   env={"WALSHIP_SPOT_SIM_FAULT": "drop-newest-delta"})
    assert "FAILED: preemption 1 (graceful, node0 -> node1): a graceful drain lost" in r.stdout, r.stdout


def test_with_durable_acks_a_lost_acknowledged_commit_fails_the_run(tmp):
    """The newest delta of the replica dropped before the restore: the commits
    `sync` said were durable are gone, and the run says so."""
    r = failed_run("--durable-ack", "--preemptions", "1", "--mode", "graceful", "--db-size", "0",
                   "--out", f"{tmp}/out", env={"WALSHIP_SPOT_SIM_FAULT": "drop-newest-delta"})
    assert re.search(r"FAILED: preemption 1 \(graceful, node0 -> node1\): lost \d+ acknowledged commits, each "
                     r"acknowledged after `sync` said ok \(--durable-ack: none may be lost", r.stdout), r.stdout


def test_bad_input_is_one_line_and_exit_2(tmp):
    cases = [(["--backend", "nfs"], {}, "invalid choice: 'nfs'"),
             (["--preemptions", "-3"], {}, "'-3' is not a whole number >= 1"),
             (["--soak", "0"], {}, "'0' is not a whole number >= 1"),
             (["--db-size", "lots"], {}, "'lots' is not a size"),
             (["--sync-interval", "1 hour"], {}, "is not a duration"),
             (["--notice", "azure"], {}, "invalid choice: 'azure'"),
             (["--notice", "aws", "--split-brain"], {}, "not with --split-brain"),
             (["--notice", "gce", "--notice-ahead", "0"], {}, "'0' is not a positive number"),
             ([], {"WALSHIP": f"{tmp}/nowhere/walship"}, "no walship binary at")]
    for args, env, message in cases:
        r = spot_sim(*args, "--out", f"{tmp}/out", env=env)
        assert r.returncode == 2, f"{args}: {r.stdout}\n{r.stderr}"
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("spot-sim: ") and message in lines[0], (args, r.stderr)
    assert not os.path.exists(f"{tmp}/out")


if __name__ == "__main__":
    run_tests([test_five_mixed_preemptions_lose_nothing_older_than_the_sync_interval,
               test_split_brain_the_resumed_node_is_fenced_and_the_replacement_keeps_the_replica,
               test_with_an_aws_notice_a_hard_preemption_loses_nothing_older_than_the_notice_interval,
               test_with_a_gce_notice_a_hard_preemption_loses_nothing_older_than_the_notice_interval,
               test_a_notice_not_acted_on_fails_the_run,
               test_with_durable_acks_no_preemption_loses_an_acknowledged_commit,
               test_a_lost_acknowledged_commit_fails_the_run,
               test_with_durable_acks_a_lost_acknowledged_commit_fails_the_run,
               test_bad_input_is_one_line_and_exit_2])
