"""CLI golden tests: help text, error messages and exit codes (DESIGN.md:
0 ok, 1 failure, 2 usage/config error, 3 verification problem). Each bad input
must give one clear line naming what is wrong and what to do."""
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from walship_test import create_db, run_tests, walship  # noqa: E402


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
    for cmd in ("replicate", "snapshot", "restore", "ls", "version"):
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


def test_ls_of_an_empty_replica_prints_only_the_header(tmp):
    r = walship("ls", f"file://{tmp}/none", check=0)
    assert r.out.splitlines() == ["TXID              TIME (UTC)                KIND      SIZE"], r
    assert walship("ls", "--json", f"file://{tmp}/none", check=0).out.strip() == "[]"


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


if __name__ == "__main__":
    run_tests([v for k, v in sorted(globals().items()) if k.startswith("test_")])
