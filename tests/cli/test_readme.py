"""README's command blocks run: every command of the Usage, Metrics and
health (against the S3 test server), Serve a live read replica, Verify and
Prune blocks, in order, as written, moved into a throwaway root
(tests/packaging/examples.py: /data, /backups, /etc, /tmp under a temp
folder). `curl` lines right after a command that serves run while it
serves.

What a reader supplies is supplied: the app (`myapp`, a stub that commits
rows), the config file (README's own walship.toml example, its databases
created), and what examples.run_example supplies (a free port, a restore
point that exists). Commands that serve until stopped must do their job and
exit 0 on SIGTERM; every other command must exit 0.
"""
import os
import re
import sqlite3
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "packaging"))
from examples import Sandbox, add_rows, install_app, run_example  # noqa: E402
from walship_test import Skipped, create_db, run_tests  # noqa: E402

SOURCE = os.path.normpath(os.environ.get("WALSHIP_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", ".."))


def readme_block(heading, language="sh", index=0):
    """The `index`th ```language block after `heading` in README.md."""
    text = open(f"{SOURCE}/README.md").read()
    section = text.split(f"\n{heading}\n", 1)[1]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)[index]


def usage_commands():
    return [line for line in readme_block("## Usage").splitlines() if line.strip() and not line.startswith("#")]


def block_groups(heading):
    """The commands of README's first sh block after `heading`, each with the
    curl and `walship sync` lines that follow it (run while it serves)."""
    groups = []
    for line in readme_block(heading).splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith(("curl ", "walship sync ")) and groups:
            groups[-1][1].append(line)
        else:
            groups.append((line, []))
    return groups


def replica_with_points(box):
    """What the blocks after Usage start from: /data/app.db replicated to
    file:///backups/app (two restore points or more), and its newest state
    snapshotted (so the live database equals the newest point)."""
    app_db = box.path("/data/app.db")
    create_db(app_db)
    add_rows(app_db, 20)
    run_example(box, "walship replicate /data/app.db file:///backups/app")
    add_rows(app_db, 5)
    run_example(box, "walship snapshot /data/app.db file:///backups/app")


def run_block(box, heading, env=None):
    groups = block_groups(heading)
    assert groups, f"no commands under {heading}"
    missing = []
    for line, during in groups:
        tool = run_example(box, line, env=env, during=during)
        if tool:
            missing.append(f"{tool} (for {line})")
    if missing:
        raise Skipped(f"not installed here: {', '.join(missing)}")


def test_readme_verify_block_runs(tmp):
    box = Sandbox(tmp)
    replica_with_points(box)
    run_block(box, "## Verify")


def test_readme_prune_block_runs(tmp):
    box = Sandbox(tmp)
    replica_with_points(box)
    # The snapshot-only replica a cron job writes, which the last line prunes.
    for _ in range(3):
        add_rows(box.path("/data/app.db"), 1)
        run_example(box, "walship snapshot /data/app.db file:///backups/cron-snapshots")
    run_block(box, "## Prune and retention")


def test_readme_serve_replica_block_runs(tmp):
    box = Sandbox(tmp)
    replica_with_points(box)
    # The read node's file the last line names: one follower of that replica.
    box.write("/etc/walship/read-node.toml", '[[databases]]\nrole = "serve-replica"\n'
              'path = "/data/replica/app.db"\nreplicas = ["file:///backups/app"]\n')
    os.makedirs(box.path("/data/replica"))
    run_block(box, "## Serve a live read replica")


def test_readme_metrics_block_runs(tmp):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "s3"))
    from s3_test_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3rver, require_s3rver
    require_s3rver()
    box = Sandbox(tmp)
    create_db(box.path("/data/app.db"))
    add_rows(box.path("/data/app.db"), 20)
    with S3rver(f"{tmp}/s3", buckets=("backups",)) as server:
        env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY, "AWS_SESSION_TOKEN": "",
               "AWS_PROFILE": "", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": server.endpoint,
               "AWS_ENDPOINT_URL_S3": ""}
        run_block(box, "## Metrics and health", env=env)


def test_readme_sync_block_runs(tmp):
    box = Sandbox(tmp)
    replica_with_points(box)
    run_block(box, "## Waiting for durability")


def test_readme_usage_commands_run(tmp):
    box = Sandbox(tmp)
    commands = usage_commands()
    assert len(commands) >= 10, commands
    app_db = box.path("/data/app.db")
    create_db(app_db)
    add_rows(app_db, 20)
    install_app(box, app_db)
    # README's walship.toml example, and the databases it names.
    config = readme_block("## Replicate", "toml")
    box.write("/etc/walship.toml", config)
    box.write("/etc/walship/walship.toml", config)  # the default path README uses too
    for path in re.findall(r'^path = "(/data/[^"]+)"', config, re.M) + ["/data/tenants"]:
        db = box.path(path) if path.endswith(".db") else box.path(path) + "/tenant1.db"
        os.makedirs(os.path.dirname(db), exist_ok=True)
        if not os.path.exists(db):
            create_db(db)
            add_rows(db, 5)
    missing = []
    for line in commands:
        # The default config path (/etc/walship/walship.toml) is the sandbox's.
        tool = run_example(box, line, env={"WALSHIP_CONFIG": box.path("/etc/walship/walship.toml")})
        if tool:
            missing.append(f"{tool} (for {line})")
        elif line.startswith("walship restore ") and " -o " in line:
            out = box.path(line.split(" -o ")[1].split()[0])
            check = sqlite3.connect(f"file:{out}?mode=ro", uri=True)
            assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok", line
            check.close()
    if missing:
        raise Skipped(f"not installed here: {', '.join(missing)}")


if __name__ == "__main__":
    run_tests([test_readme_usage_commands_run, test_readme_verify_block_runs, test_readme_prune_block_runs,
               test_readme_serve_replica_block_runs, test_readme_metrics_block_runs, test_readme_sync_block_runs])
