"""CLI golden tests: help text, error messages and exit codes (DESIGN.md:
0 ok, 1 failure, 2 usage/config error, 3 verification problem). Each bad input
must give one clear line naming what is wrong and what to do."""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from walship_test import WALSHIP, create_db, run_tests, walship  # noqa: E402


def expect(result, code, err=None, out=None):
    assert result.code == code, f"expected exit {code}: {result!r}"
    if err is not None:
        assert re.search(err, result.err), f"stderr does not match {err!r}: {result!r}"
        lines = [l for l in result.err.splitlines() if l.startswith("walship:")]
        assert len(lines) <= 1, f"more than one error line: {result!r}"
    if out is not None:
        assert re.search(out, result.out), f"stdout does not match {out!r}: {result!r}"


def test_help_lists_commands_and_examples(tmp):
    r = walship("--help")
    expect(r, 0, out=r"snapshot[\s\S]*restore[\s\S]*ls[\s\S]*Examples:[\s\S]*Exit codes")
    for cmd in ("replicate", "snapshot", "restore", "ls", "doctor", "version"):
        expect(walship(cmd, "--help"), 0, out=r"Usage|Examples|Print")
    expect(walship("restore", "--help"), 0, out=r"--timestamp[\s\S]*--if-replica-exists[\s\S]*Examples:")


def test_no_command_is_a_usage_error(tmp):
    expect(walship(), 2, err=r"^walship: .*subcommand.*--help")


def test_unknown_option_is_a_usage_error(tmp):
    expect(walship("snapshot", "--bogus", "a", "b"), 2, err=r"--bogus.*walship snapshot --help")


def test_version(tmp):
    expect(walship("version"), 0, out=r"^walship \d+\.\d+\.\d+ \(SQLite 3\.40\.1, zstd")
    expect(walship("--version"), 0, out=r"walship \d+\.\d+\.\d+")


def test_snapshot_of_missing_database(tmp):
    expect(walship("snapshot", f"{tmp}/nope.db", f"file://{tmp}/r"), 2,
           err=rf"database '{tmp}/nope.db' does not exist: check the path")
    assert not os.path.exists(f"{tmp}/r"), "a failed snapshot must not create the replica"


def test_snapshot_of_a_non_sqlite_file(tmp):
    with open(f"{tmp}/notes.txt", "w") as f:
        f.write("hello, this is not a database at all" * 10)
    expect(walship("snapshot", f"{tmp}/notes.txt", f"file://{tmp}/r"), 2, err=r"is not a SQLite database")


def test_snapshot_of_an_empty_file(tmp):
    open(f"{tmp}/empty.db", "w").close()
    expect(walship("snapshot", f"{tmp}/empty.db", f"file://{tmp}/r"), 2, err=r"is empty")


def test_snapshot_of_a_directory(tmp):
    expect(walship("snapshot", tmp, f"file://{tmp}/r"), 2, err=r"is a directory")


def test_unknown_url_scheme(tmp):
    create_db(f"{tmp}/a.db", rows=3)
    expect(walship("snapshot", f"{tmp}/a.db", "ftp://host/x"), 2, err=r"unsupported replica URL scheme 'ftp'")
    expect(walship("ls", "ftp://host/x"), 2, err=r"unsupported replica URL scheme 'ftp'")


def test_relative_replica_path_is_rejected(tmp):
    create_db(f"{tmp}/a.db", rows=3)
    expect(walship("snapshot", f"{tmp}/a.db", "backups/app"), 2, err=r"invalid replica URL 'backups/app'.*file:///")


def test_restore_from_an_empty_replica(tmp):
    expect(walship("restore", f"file://{tmp}/none", "-o", f"{tmp}/out.db"), 1,
           err=r"no replica at 'file://.*none'.*--if-replica-exists")
    assert not os.path.exists(f"{tmp}/out.db")
    expect(walship("restore", "--if-replica-exists", f"file://{tmp}/none", "-o", f"{tmp}/out.db"), 0)
    assert not os.path.exists(f"{tmp}/out.db")


def snapshot_of_three_rows(tmp):
    create_db(f"{tmp}/a.db", rows=3)
    walship("snapshot", f"{tmp}/a.db", f"file://{tmp}/r", check=0)


def test_bad_txid_and_timestamp(tmp):
    snapshot_of_three_rows(tmp)
    url = f"file://{tmp}/r"
    expect(walship("restore", url, "-o", f"{tmp}/o.db", "--txid", "xyz"), 2, err=r"invalid --txid 'xyz'.*hex")
    expect(walship("restore", url, "-o", f"{tmp}/o.db", "--txid", "0"), 2, err=r"invalid --txid '0'")
    expect(walship("restore", url, "-o", f"{tmp}/o.db", "--timestamp", "yesterday"), 2,
           err=r"invalid --timestamp 'yesterday'.*RFC 3339")
    expect(walship("restore", url, "-o", f"{tmp}/o.db", "--timestamp", "2026-01-01T00:00:00"), 2,
           err=r"invalid --timestamp.*with a zone")
    expect(walship("restore", url, "-o", f"{tmp}/o.db", "--txid", "1", "--timestamp", "2026-01-01T00:00:00Z"), 2,
           err=r"excludes")
    expect(walship("restore", url, "-o", f"{tmp}/o.db", "--txid", "5"), 1,
           err=r"TXID 0000000000000005 is not a restore point.*walship ls")
    expect(walship("restore", url, "-o", f"{tmp}/o.db", "--timestamp", "2001-01-01T00:00:00Z"), 1,
           err=r"no restore point at or before time 2001-01-01T00:00:00.000Z.*oldest snapshot is TXID 0000000000000001")
    assert not os.path.exists(f"{tmp}/o.db")


def test_restore_refuses_to_overwrite(tmp):
    snapshot_of_three_rows(tmp)
    with open(f"{tmp}/o.db", "w") as f:
        f.write("precious")
    expect(walship("restore", f"file://{tmp}/r", "-o", f"{tmp}/o.db"), 2, err=r"already exists: pass --force")
    assert open(f"{tmp}/o.db").read() == "precious"
    expect(walship("restore", "--if-db-not-exists", f"file://{tmp}/r", "-o", f"{tmp}/o.db"), 0)
    assert open(f"{tmp}/o.db").read() == "precious"


def test_restore_into_a_missing_directory(tmp):
    snapshot_of_three_rows(tmp)
    expect(walship("restore", f"file://{tmp}/r", "-o", f"{tmp}/no/such/dir/o.db"), 2,
           err=r"output directory '.*/no/such/dir' does not exist")


def test_restore_into_an_unwritable_place(tmp):
    snapshot_of_three_rows(tmp)
    expect(walship("restore", f"file://{tmp}/r", "-o", "/proc/walship-test.db"), 1, err=r"unable to .*'/proc")


def test_missing_required_arguments(tmp):
    expect(walship("restore", f"file://{tmp}/r"), 2, err=r"--output is required")
    expect(walship("snapshot", f"{tmp}/a.db"), 2, err=r"URL is required")


def test_ls_of_nothing_says_there_is_no_replica(tmp):
    # A typo in a prefix must not look like "no restore points yet".
    expect(walship("ls", f"file://{tmp}/none"), 1, err=r"^walship: no replica at 'file://.*none'.*check the URL")
    r = walship("ls", "--json", f"file://{tmp}/none")
    expect(r, 1, err=r"no replica at")
    assert r.out == "", r


def test_replicate_bad_inputs(tmp):
    url = f"file://{tmp}/replica"
    create_db(f"{tmp}/rollback.db", rows=1, wal=False)
    expect(walship("replicate", f"{tmp}/rollback.db", url), 2,
           err=r"(?m)^walship: database '.*rollback.db' is not in WAL mode \(journal_mode=delete\).*--enable-wal")
    expect(walship("replicate", f"{tmp}/missing.db", url), 2, err=r"(?m)^walship: .*missing.db")
    expect(walship("replicate", f"{tmp}/rollback.db"), 2, err=r"needs a database and a replica URL")
    expect(walship("replicate", "--sync-interval", "soon", f"{tmp}/rollback.db", url), 2,
           err=r"invalid --sync-interval 'soon'")
    expect(walship("replicate", "--exec", "'unterminated", f"{tmp}/rollback.db", url), 2,
           err=r"unterminated ' quote")
    create_db(f"{tmp}/a.db", rows=1)
    expect(walship("replicate", "--exec", "/nonexistent/app", f"{tmp}/a.db", url), 2,
           err=r"(?m)^walship: unable to run --exec command '/nonexistent/app': No such file")
    expect(walship("replicate", "--config", f"{tmp}/none.toml"), 2, err=r"unable to read the configuration")
    with open(f"{tmp}/w.toml", "w") as f:
        f.write(f'[[databases]]\npath = "{tmp}/a.db"\nreplicas = ["{url}"]\nsync_interval = 1\n')
    expect(walship("replicate", "--config", f"{tmp}/w.toml"), 2,
           err=r"(?m)^walship: .*w.toml:4: unknown key 'sync_interval' in \[\[databases\]\]")
    expect(walship("replicate", "--config", f"{tmp}/w.toml", f"{tmp}/a.db", url), 2,
           err=r"takes no DB or URL arguments")
    expect(walship("replicate", "--config", f"{tmp}/w.toml", "--sync-interval", "2s"), 2,
           err=r"--sync-interval excludes --config|excludes")
    expect(walship("replicate", f"{tmp}/a.db", "ftp://host/x"), 2, err=r"unsupported replica URL scheme 'ftp'")


def test_replicate_enable_wal_switches_and_exec_exits_with_the_app(tmp):
    create_db(f"{tmp}/a.db", rows=3, wal=False)
    r = walship("replicate", "--enable-wal", "--exec", "sh -c 'exit 5'", f"{tmp}/a.db", f"file://{tmp}/replica")
    expect(r, 5, err=r"switched the database to WAL mode[\s\S]*snapshot written")
    expect(walship("restore", f"file://{tmp}/replica", "-o", f"{tmp}/b.db"), 0)


def test_verify_and_prune_help(tmp):
    expect(walship("verify", "--help"), 0, out=r"--db[\s\S]*--point[\s\S]*--full[\s\S]*Exit codes: 0 healthy, 3[\s\S]*Examples:")
    expect(walship("prune", "--help"), 0,
           out=r"--keep-within[\s\S]*--dry-run[\s\S]*NEWEST point[\s\S]*never from now[\s\S]*Examples:")


def test_verify_bad_inputs(tmp):
    expect(walship("verify", f"file://{tmp}/none"), 1, err=r"^walship: no replica at 'file://.*none'.*check the URL")
    snapshot_of_three_rows(tmp)
    url = f"file://{tmp}/r"
    expect(walship("verify", "--point", "xyz", url), 2, err=r"^walship: invalid --point 'xyz'.*'all' or a TXID")
    expect(walship("verify", "--point", "5", url), 1, err=r"^walship: TXID 0000000000000005 is not a restore point")
    expect(walship("verify", "--db", f"{tmp}/missing.db", url), 2, err=r"^walship: database '.*missing.db' does not exist")
    expect(walship("verify", "ftp://host/x"), 2, err=r"unsupported replica URL scheme 'ftp'")


def test_verify_healthy_then_corrupt(tmp):
    snapshot_of_three_rows(tmp)
    url = f"file://{tmp}/r"
    r = walship("verify", url, "--db", f"{tmp}/a.db")
    expect(r, 0, out=r"points     1 restorable[\s\S]*database   .*a.db matches TXID 0000000000000001[\s\S]*result     OK")
    assert r.err == "", r
    snap = f"{tmp}/r/snapshots/0000000000000001.snap"
    data = bytearray(open(snap, "rb").read())
    data[len(data) // 2] ^= 0x10
    open(snap, "wb").write(bytes(data))
    r = walship("verify", url)
    expect(r, 3, out=r"result     PROBLEM[\s\S]*broken  snapshots/0000000000000001.snap[\s\S]*breaks 1 restore point: 0000000000000001")
    assert "walship:" not in r.err, r
    r = walship("verify", "--json", url)
    expect(r, 3)
    report = json.loads(r.out)
    assert not report["healthy"] and report["problems"][0]["object"] == "snapshots/0000000000000001.snap", report


def test_prune_bad_inputs(tmp):
    expect(walship("prune", f"file://{tmp}/none"), 1, err=r"^walship: no replica at 'file://.*none'.*check the URL")
    expect(walship("prune", "--keep-within", "soon", f"file://{tmp}/none"), 2,
           err=r"^walship: invalid --keep-within 'soon'.*1h")
    expect(walship("prune", "--keep-daily", "0", f"file://{tmp}/none"), 2, err=r"--keep-daily.*walship prune --help")
    expect(walship("prune"), 2, err=r"URL is required")


def test_prune_dry_run_then_prune_keeps_the_last_snapshots(tmp):
    create_db(f"{tmp}/a.db", rows=3)
    url = f"file://{tmp}/r"
    for _ in range(3):
        walship("snapshot", f"{tmp}/a.db", url, check=0)
    r = walship("prune", "--dry-run", "--keep-last", "1", url)
    expect(r, 0, out=r"2 to delete[\s\S]*would delete snapshots/0000000000000002.snap  \(ends at removed point")
    assert len(os.listdir(f"{tmp}/r/snapshots")) == 3
    expect(walship("prune", "--keep-last", "1", url), 0, out=r"2 deleted")
    assert os.listdir(f"{tmp}/r/snapshots") == ["0000000000000003.snap"]
    expect(walship("verify", url), 0)


def replicas_config(tmp, text):
    path = f"{tmp}/walship.toml"
    with open(path, "w") as f:
        f.write(text)
    return path


def test_global_options_work_after_the_command(tmp):
    create_db(f"{tmp}/a.db", rows=3)
    url = f"file://{tmp}/r"
    # What walship-snapshot@.service and snapshot --help's crontab line run.
    expect(walship("snapshot", "--quiet", f"{tmp}/a.db", url), 0, out=r"snapshot 0000000000000001")
    r = walship("snapshot", "-q", f"{tmp}/a.db", url)
    expect(r, 0, out=r"snapshot 0000000000000002")
    assert r.err == "", r
    r = walship("ls", url, "-v", "--log-level", "debug", "--log-format", "json")
    expect(r, 0, out=r"OBJECT    SIZE")
    r = walship("ls", url, "--log-level", "bogus")
    expect(r, 2, err=r"--log-level")
    r = walship("--log-level", "bogus", "ls", url)
    expect(r, 2, err=r"--log-level")
    assert "unknown command" not in r.err, r


def test_an_unknown_command_is_one_line(tmp):
    r = walship("frobnicate")
    expect(r, 2, err=r"^walship: unknown command 'frobnicate': run 'walship --help' for the commands\n$")
    expect(walship("-q", "--log-format", "text", "frobnicate", "x"), 2, err=r"unknown command 'frobnicate'")


def test_config_that_is_a_folder_says_so(tmp):
    for cmd in ("ls", "restore", "verify", "prune", "status", "replicate", "serve-replica", "doctor"):
        expect(walship(cmd, "--config", tmp), 2, err=rf"^walship: the configuration '{tmp}' is a folder: give the "
                                                     r"walship.toml file in it")


def test_commands_find_the_replica_in_walship_toml(tmp):
    create_db(f"{tmp}/a.db", rows=3)
    create_db(f"{tmp}/b.db", rows=5)
    config = replicas_config(tmp, f"""
[[databases]]
path = "{tmp}/a.db"
replicas = ["file://{tmp}/ra"]

[[databases]]
path = "{tmp}/b.db"
keep-last = 1
replicas = ["file://{tmp}/rb1", "file://{tmp}/rb2"]
""")
    expect(walship("snapshot", "--config", config, f"{tmp}/a.db"), 0, out=rf"written as file://{tmp}/ra/")
    expect(walship("snapshot", "--config", config, f"{tmp}/b.db", "--replica", "2"), 0,
           out=rf"written as file://{tmp}/rb2/")
    expect(walship("snapshot", "--config", config, f"{tmp}/b.db"), 2,
           err=r"has 2 replicas in .*walship.toml \(1: file://.*rb1, 2: file://.*rb2\): pick one with --replica")
    expect(walship("snapshot", "--config", config, f"{tmp}/b.db", "--replica", f"file://{tmp}/rb1"), 0,
           out=rf"written as file://{tmp}/rb1/")
    expect(walship("ls", "--config", config, f"{tmp}/a.db"), 0, out=r"1 restore point")
    expect(walship("verify", "--config", config, f"{tmp}/a.db"), 0, out=r"result     OK")
    expect(walship("doctor", "--config", config, f"{tmp}/a.db"), 0, out=rf"replica      file://{tmp}/ra\n"
                                                                       r"backend      file\n[\s\S]*1 snapshot")
    expect(walship("ls", "--config", config, f"{tmp}/nope.db"), 2, err=r"database '.*nope.db' is not in .*walship.toml")
    expect(walship("ls", "--config", config), 2, err=r"lists several databases \(.*a.db, .*b.db\)")
    expect(walship("ls", "--replica", "1", f"file://{tmp}/ra"), 2, err=r"--replica .*pass --config FILE too")
    expect(walship("ls", "--config", config, f"file://{tmp}/ra", f"{tmp}/a.db"), 2)
    # restore: the database's path names the replica and is the default output.
    os.rename(f"{tmp}/a.db", f"{tmp}/a.old")
    expect(walship("restore", "--config", config, f"{tmp}/a.db"), 0, out=rf"restored {tmp}/a.db to TXID 0000000000000001")
    assert open(f"{tmp}/a.db", "rb").read() == open(f"{tmp}/a.old", "rb").read()
    expect(walship("restore", "--config", config, f"{tmp}/a.db", "-o", f"{tmp}/copy.db"), 0)
    # $WALSHIP_CONFIG is the default --config; a URL still wins.
    env = {"WALSHIP_CONFIG": config}
    expect(walship("ls", f"{tmp}/b.db", "--replica", "2", env=env), 0, out=r"1 restore point")
    expect(walship("ls", f"file://{tmp}/ra", env=env), 0, out=r"1 restore point")
    expect(walship("restore", "-o", f"{tmp}/x.db", env={"WALSHIP_CONFIG": ""}), 2,
           err=r"a replica URL is required: .*--config FILE \(or \$WALSHIP_CONFIG\)")
    # prune --config: every replica of the file, each with its database's policy.
    walship("snapshot", "--config", config, f"{tmp}/b.db", "--replica", "1", check=0)
    assert len(os.listdir(f"{tmp}/rb1/snapshots")) == 2
    r = walship("prune", "--quiet", "--config", config)
    expect(r, 0, out=r"(?s)a.db \(file://.*/ra\):.*b.db \(file://.*/rb1\):.*1 deleted.*b.db \(file://.*/rb2\):")
    assert os.listdir(f"{tmp}/rb1/snapshots") == ["0000000000000002.snap"], os.listdir(f"{tmp}/rb1/snapshots")
    assert len(os.listdir(f"{tmp}/ra/snapshots")) == 1


def test_ls_filters_summary_and_what_a_restore_fetches(tmp):
    create_db(f"{tmp}/a.db", rows=3)
    url = f"file://{tmp}/r"
    for _ in range(3):
        walship("snapshot", f"{tmp}/a.db", url, check=0)
    r = walship("ls", url)
    expect(r, 0, out=r"^TXID              TIME \(UTC\)                RESTORE FETCHES\n0000000000000003  \S+Z  1 object, ")
    assert r.out.splitlines()[-1].startswith("3 restore points, "), r
    assert "the replica holds 3 objects" in r.out, r
    assert "snapshot" not in r.out, r  # the level is for -v
    expect(walship("ls", "-v", url), 0, out=r"OBJECT    SIZE\n0000000000000003  .*snapshot")
    r = walship("ls", "--last", "2", url)
    expect(r, 0, out=r"2 restore points shown of 3")
    assert [l.split()[0] for l in r.out.splitlines()[1:3]] == ["0000000000000003", "0000000000000002"], r
    expect(walship("ls", "--since", "1h", url), 0, out=r"3 restore points")
    expect(walship("ls", "--until", "1h", url), 0, out=r"^TXID.*\n0 restore points shown of 3;")
    expect(walship("ls", "--since", "2001-01-01T00:00:00Z", "--until", "-0s", url), 0)
    points = json.loads(walship("ls", "--json", "--last", "1", url, check=0).out)
    assert len(points) == 1 and points[0]["fetch_objects"] == 1 and points[0]["fetch_bytes"] == points[0]["size"]
    expect(walship("ls", "--since", "yesterday", url), 2,
           err=r"invalid --since 'yesterday': give a duration ago such as 15m.*RFC 3339")
    expect(walship("ls", "--last", "0", url), 2, err=r"--last")


def test_restore_dry_run_and_relative_timestamps(tmp):
    snapshot_of_three_rows(tmp)
    url = f"file://{tmp}/r"
    r = walship("restore", "--dry-run", url, "-o", f"{tmp}/o.db")
    expect(r, 0, out=rf"would restore {tmp}/o.db to TXID 0000000000000001 \(\S+Z\): 1 object, .* to fetch")
    assert not os.path.exists(f"{tmp}/o.db")
    expect(walship("restore", "-n", url), 0, out=r"would restore \(no --output\) to TXID 0000000000000001")
    expect(walship("restore", url, "-o", f"{tmp}/o.db", "--timestamp", "-0s"), 0, out=r"TXID 0000000000000001")
    expect(walship("restore", url, "-o", f"{tmp}/p.db", "--timestamp=-100d"), 1,
           err=r"no restore point at or before time")
    expect(walship("restore", url, "-o", f"{tmp}/p.db", "--timestamp", "15"), 2,
           err=r"invalid --timestamp '15'.*a duration ago, e.g. -15m")


def log_lines(err):
    return [l for l in err.splitlines() if l.strip()]


def test_logs_have_a_time_and_typed_json(tmp):
    snapshot_of_three_rows(tmp)
    url = f"file://{tmp}/r"
    r = walship("restore", url, "-o", f"{tmp}/t.db", "--log-level", "info")
    line = [l for l in log_lines(r.err) if 'msg="restored"' in l][0]
    assert re.match(r"^time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=info msg=\"restored\" ", line), line
    assert " point_time=" in line and " time=" not in line.split(" level=")[1], line
    r = walship("restore", url, "-o", f"{tmp}/j.db", "--log-format", "json")
    expect(r, 0)
    events = [json.loads(l) for l in log_lines(r.err)]
    restored = [e for e in events if e["msg"] == "restored"][0]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", restored["time"]), restored
    assert isinstance(restored["objects"], int) and restored["objects"] == 1, restored
    assert isinstance(restored["bytes"], int) and restored["bytes"] > 0, restored
    assert restored["txid"] == "0000000000000001" and "point_time" in restored, restored
    # The final error line is JSON too, with its exit code.
    r = walship("restore", url, "-o", f"{tmp}/j.db", "--log-format", "json")
    assert r.code == 2, r
    error = json.loads(log_lines(r.err)[-1])
    assert error["level"] == "error" and "already exists" in error["msg"] and error["exit_code"] == 2, error
    assert "time" in error, error
    r = walship("--log-format", "json", "frobnicate")
    assert r.code == 2 and json.loads(r.err)["msg"].startswith("unknown command 'frobnicate'"), r
    # No time when asked, or when stderr is the journal (systemd's JOURNAL_STREAM names it).
    r = walship("restore", url, "-o", f"{tmp}/n.db", "--log-timestamps=false")
    assert log_lines(r.err)[0].startswith("level=info"), r
    with open(f"{tmp}/journal", "w+") as journal:
        st = os.fstat(journal.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        subprocess.run([WALSHIP, "restore", url, "-o", f"{tmp}/k.db"], env={**os.environ, **env}, stderr=journal,
                       stdout=subprocess.DEVNULL, check=True, timeout=60)
        journal.seek(0)
        text = journal.read()
    assert text.startswith("level=info"), text
    r = walship("restore", url, "-o", f"{tmp}/m.db", env={"JOURNAL_STREAM": "1:2"})
    assert log_lines(r.err)[0].startswith("time="), r


def write_config(tmp, body):
    path = f"{tmp}/w.toml"
    with open(path, "w") as f:
        f.write(body)
    return path


def error_line(result):
    lines = [l for l in result.err.splitlines() if l.startswith("walship:")]
    assert len(lines) == 1, f"expected one error line: {result!r}"
    return lines[0]


def test_option_defaults_and_limits_show_in_help(tmp):
    r = walship("replicate", "--help")
    expect(r, 0, out=r"--sync-interval DURATION=1s")
    for pattern in (r"--snapshot-interval DURATION=24h", r"--checkpoint-pages N=1000", r"--truncate-pages N=100000",
                    r"--retention-interval DURATION=1h", r"--no-compaction", r"--no-retention", r"--enable-wal",
                    r"--workers N=4\s+Databases[^\n]*\(1 to 64\)", r"--keep-within DURATION", r"keep-within 1h, keep-minutely 60"):
        assert re.search(pattern, r.out), f"replicate --help lacks {pattern!r}: {r.out}"
    r = walship("serve-replica", "--help")
    for pattern in (r"--poll-interval DURATION=1s", r"--list-interval DURATION=1m", r"--checkpoint-pages N=1000",
                    r"--parallelism N=4[^\n]*\s+Downloads[^\n]*\(1 to 64\)"):
        assert re.search(pattern, r.out), f"serve-replica --help lacks {pattern!r}: {r.out}"


def test_a_flag_and_a_config_key_refuse_a_value_with_one_message(tmp):
    create_db(f"{tmp}/a.db", rows=1)
    url = f"file://{tmp}/replica"
    cases = [("sync-interval", "0"), ("sync-interval", "soon"), ("snapshot-interval", "9300000000000000"),
             ("checkpoint-pages", "0"), ("truncate-pages", "2147483648"), ("retention-interval", "-1"),
             ("keep-daily", "0"), ("keep-within", "1x")]
    for key, text in cases:
        flag = walship("replicate", f"--{key}", text, f"{tmp}/a.db", url)
        expect(flag, 2, err=rf"^walship: invalid --{key} '{re.escape(text)}': .*: run 'walship replicate --help'")
        config = write_config(tmp, f'[[databases]]\npath = "{tmp}/a.db"\nreplicas = ["{url}"]\n{key} = "{text}"\n')
        from_file = walship("replicate", "--config", config)
        expect(from_file, 2)
        cause = error_line(flag)[len("walship: "):].split(": run 'walship")[0].replace(f"--{key}", key)
        assert error_line(from_file) == f"walship: {config}:4: {cause}", (flag, from_file)
    for key, text in [("poll-interval", "0"), ("parallelism", "65")]:
        expect(walship("serve-replica", f"--{key}", text, url, f"{tmp}/f.db"), 2,
               err=rf"^walship: invalid --{key} '{text}': ")
        config = write_config(tmp, f'[[databases]]\nrole = "serve-replica"\npath = "{tmp}/f.db"\n'
                                   f'replicas = ["{url}"]\n{key} = {text}\n')
        expect(walship("serve-replica", "--config", config), 2, err=rf"^walship: .*w.toml:5: invalid {key} '{text}': ")


def test_config_durations_never_wrap(tmp):
    create_db(f"{tmp}/a.db", rows=1)
    for key in ("snapshot-interval", "sync-interval", "retention-interval", "l1-span"):
        config = write_config(tmp, f'[[databases]]\npath = "{tmp}/a.db"\nreplicas = ["file://{tmp}/r"]\n'
                                   f"{key} = 9300000000000000\n")
        expect(walship("replicate", "--config", config), 2,
               err=rf"^walship: .*w.toml:4: invalid {key} '9300000000000000': it must be at most 36500d$")
    assert not os.path.exists(f"{tmp}/r"), "a refused configuration must not start replicating"


def test_booleans_are_exactly_true_or_false_and_never_empty(tmp):
    for value in ("", "1", "yes", "TRUE"):
        expect(walship("ls", f"s3://bkt/p?insecure-skip-verify={value}"), 2,
               err=rf"^walship: invalid option insecure-skip-verify='{value}' for replica .*: expected exactly true or false")
    expect(walship("ls", "s3://bkt/p?insecure-skip-verify"), 2, err=r"expected exactly true or false")
    expect(walship("ls", "s3://bkt/p?region="), 2, err=r"^walship: invalid option region='' .*the value is empty")
    expect(walship("ls", "gs://bkt/p?credentials-file="), 2, err=r"the value is empty")
    expect(walship("ls", "sftp://u@127.0.0.1/p?known-hosts="), 2, err=r"the value is empty")
    create_db(f"{tmp}/a.db", rows=1)
    expect(walship("replicate", "--enable-wal=yes", f"{tmp}/a.db", f"file://{tmp}/r"), 2)
    config = write_config(tmp, f'[[databases]]\npath = "{tmp}/a.db"\nreplicas = ["file://{tmp}/r"]\n'
                               'enable-wal = "yes"\n')
    expect(walship("replicate", "--config", config), 2,
           err=r"^walship: .*w.toml:4: invalid enable-wal 'yes': expected exactly true or false$")
#An empty ${VAR } must not turn TLS verification off.
    config = write_config(tmp, f'[[databases]]\npath = "{tmp}/a.db"\n[[databases.replicas]]\nurl = "s3://bkt/p"\n'
                               'insecure-skip-verify = "${WALSHIP_TEST_SKIP}"\n')
    r = walship("replicate", "--config", config, env={**os.environ, "WALSHIP_TEST_SKIP": ""})
    expect(r, 2, err=r"^walship: .*w.toml:5: invalid option insecure-skip-verify='' for replica 's3://bkt/p': "
                     r"expected exactly true or false$")


def test_replica_settings_of_the_wrong_type_or_empty_name_their_line(tmp):
    create_db(f"{tmp}/a.db", rows=1)
    head = f'[[databases]]\npath = "{tmp}/a.db"\n[[databases.replicas]]\nurl = "s3://bkt/p"\n'
    expect(walship("replicate", "--config", write_config(tmp, head + "session-token = 12345\n")), 2,
           err=r"^walship: .*w.toml:5: invalid option session-token=12345 for replica 's3://bkt/p': "
               r"give a string \(in quotes\)$")
    expect(walship("replicate", "--config", write_config(tmp, head + 'region = ""\n')), 2,
           err=r"^walship: .*w.toml:5: invalid option region='' for replica 's3://bkt/p': the value is empty")
    expect(walship("replicate", "--config", write_config(tmp, head + "part-size = true\n")), 2,
           err=r"w.toml:5: invalid option part-size=true .*give a number of bytes$")
    expect(walship("replicate", "--config", write_config(tmp, head + 'regoin = "eu"\n')), 2,
           err=r"w.toml:5: unknown option 'regoin' for replica 's3://bkt/p': s3:// takes endpoint, region")


if __name__ == "__main__":
    run_tests([v for k, v in sorted(globals().items()) if k.startswith("test_")])
