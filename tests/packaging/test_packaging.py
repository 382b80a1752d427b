"""The packaging checks CI runs:

- every man page in man/ equals what scripts/gen-man makes from the binary's
  --help (one per command `walship --help` lists, none for a command that
  is gone), and renders with `man -l` without warnings;
- the bash completion parses and completes commands and options; the zsh
  one parses (when zsh is installed);
- `systemd-analyze verify` accepts every unit (templates as an instance);
- every unit's ExecStart= RUNS as systemd would run it (instance, Environment=
  and EnvironmentFile= substituted) on the shipped examples, moved into a
  throwaway root with file:// replicas: replicate@ ships and stops cleanly on
  SIGTERM, snapshot@ snapshots, prune prunes with the file's policy;
- every example of every command's --help (and so of the man pages), the
  crontab line included, runs and succeeds;
- the example entrypoint restores on start and replicates --exec the app,
  and a second start on an empty disk gets the app's data back;
- the Nomad and Kubernetes examples keep the prestart/init restore and the
  replicate sidecar, and their restore and replicate arguments run against
  the S3 test server (a node, its loss, a restore on the next one), with
  /healthz and /readyz answering where their probes and checks ask;
  Kubernetes tolerates unreachable and not-ready nodes only briefly;
- the Docker images' ENTRYPOINT + CMD run (walship's own image) or are the
  entrypoint script tested here (the app image);
- scripts/test counts CTest's skipped tests as skipped, not passed.
"""
import glob
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "s3"))
from examples import Sandbox, add_rows, has_snapshot, install_app, run_example, unit_command  # noqa: E402
from walship_test import WALSHIP, Skipped, create_db, free_port, http_get, run_tests  # noqa: E402

SOURCE = os.path.normpath(os.environ.get("WALSHIP_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", ".."))


def run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)


def test_man_pages_match_help(tmp):
    r = run([os.path.join(SOURCE, "scripts", "gen-man"), "--check", "--walship", WALSHIP])
    assert r.returncode == 0, r.stderr
    section = run([WALSHIP, "--help"]).stdout.split("Subcommands:\n")[1].split("\n\n")[0]
    commands = [line.split()[0] for line in section.splitlines() if line.startswith("  ")]
    pages = sorted(os.path.basename(p) for p in glob.glob(f"{SOURCE}/man/*.1"))
    assert "restore" in commands and "version" in commands, commands
    assert pages == sorted(["walship.1"] + [f"walship-{c}.1" for c in commands]), pages


def test_man_pages_render(tmp):
    if not shutil.which("man"):
        raise Skipped("man is not installed")
    for page in sorted(glob.glob(f"{SOURCE}/man/*.1")):
        r = run(["man", "--warnings", "-l", page], env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat",
                                                         "PAGER": "cat", "LANG": "C.UTF-8"})
        assert r.returncode == 0, f"{page}: {r.stderr}"
        assert r.stderr.strip() == "", f"{page}: warnings:\n{r.stderr}"
        assert "NAME" in r.stdout and "SYNOPSIS" in r.stdout and "EXIT STATUS" in r.stdout, r.stdout


def complete(words):
    """The bash completions for a command line whose last word is being typed."""
    script = (f"source {SOURCE}/packaging/completions/walship.bash\n"
              f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
              "_walship; printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    r = run(["bash", "-c", script], cwd="/")
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_bash_completion(tmp):
    assert run(["bash", "-n", f"{SOURCE}/packaging/completions/walship.bash"]).returncode == 0
    assert complete(["walship", "re"]) == ["replicate", "restore"]
    assert "--if-replica-exists" in complete(["walship", "restore", "--if"])
    assert complete(["walship", "snapshot", "--zs"]) == ["--zstd-level"]
    assert "--log-format" in complete(["walship", "--log"])


def test_zsh_completion(tmp):
    if not shutil.which("zsh"):
        raise Skipped("zsh is not installed")
    r = run(["zsh", "-n", f"{SOURCE}/packaging/completions/_walship"])
    assert r.returncode == 0, r.stderr


def test_systemd_units_verify(tmp):
    if not shutil.which("systemd-analyze"):
        raise Skipped("systemd-analyze is not installed")
    # The units name /usr/bin/walship, which verify checks is executable: they
    # are verified as copies that name the binary under test.
    units = []
    for path in sorted(glob.glob(f"{SOURCE}/packaging/systemd/*")):
        name = os.path.basename(path).replace("@.", "@test.")
        with open(path) as f:
            text = f.read().replace("/usr/bin/walship", os.path.abspath(WALSHIP))
        with open(f"{tmp}/{name}", "w") as f:
            f.write(text)
        units.append(name)
    assert any(u.startswith("walship-replicate@") for u in units), units
    r = run(["systemd-analyze", "verify", "--man=no", *[f"{tmp}/{u}" for u in units]])
    # Messages about units of the host (not ours) are not this test's business.
    ours = [line for line in (r.stdout + r.stderr).splitlines() if "walship" in line]
    assert r.returncode == 0 and not ours, "\n".join(ours) or r.stderr
    for name in units:
        text = open(f"{tmp}/{name}").read()
        if name.endswith(".service"):
            for setting in ("NoNewPrivileges=yes", "ProtectSystem=strict"):
                assert setting in text, f"{name} lacks {setting}"
    prune = open(f"{tmp}/walship-prune.service").read()
    assert "DynamicUser=yes" in prune


def row_count(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(*) FROM t").fetchone()[0]
    finally:
        db.close()


def restore_points(sandbox, url):
    r = sandbox.run(["walship", "ls", "--json", url], moved=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


UNITS = f"{SOURCE}/packaging/systemd"
EXAMPLES = f"{SOURCE}/packaging/examples"


def unit_sandbox(tmp):
    """A sandbox with the database the examples name, /srv/app/data/app.db."""
    box = Sandbox(tmp)
    db = box.path("/srv/app/data/app.db")
    os.makedirs(os.path.dirname(db))
    create_db(db, rows=0)
    add_rows(db, 50)
    return box, db


def test_systemd_services_are_the_ones_run_here(tmp):
    services = sorted(os.path.basename(p) for p in glob.glob(f"{UNITS}/*.service"))
    assert services == ["walship-prune.service", "walship-replicate@.service", "walship-snapshot@.service"], \
        f"a service without a test_*_unit_runs test: {services}"


def test_replicate_unit_runs(tmp):
    """walship-replicate@app with /etc/walship/app.toml the example file: it
    ships, stops cleanly on SIGTERM (KillSignal=), and the replica restores."""
    box, db = unit_sandbox(tmp)
    box.write("/etc/walship/app.toml", open(f"{EXAMPLES}/walship.toml").read())
    argv, _ = unit_command(box, f"{UNITS}/walship-replicate@.service", "app")
    replica = box.move("file:///var/backups/walship/app")
    box.serve(argv, lambda: has_snapshot(replica), "the first snapshot", moved=True)
    restored = box.path("/tmp/replicated.db")
    r = box.run(["walship", "restore", replica, "-o", restored], moved=True)
    assert r.returncode == 0 and row_count(restored) == 50, r.stderr


def test_snapshot_unit_runs(tmp):
    """walship-snapshot@app with /etc/walship/snapshot/app.env the example
    file, three times: three restore points, the last with every row."""
    box, db = unit_sandbox(tmp)
    box.write("/etc/walship/snapshot/app.env", open(f"{EXAMPLES}/snapshot.env").read())
    argv, env = unit_command(box, f"{UNITS}/walship-snapshot@.service", "app")
    assert env["DB"] == db, env
    for _ in range(3):
        add_rows(db, 1)
        r = box.run(argv, moved=True)
        assert r.returncode == 0, f"walship-snapshot@app: {argv} exited {r.returncode}:\n{r.stdout}{r.stderr}"
    assert len(restore_points(box, env["URL"])) == 3
    r = box.run(["walship", "restore", env["URL"], "-o", box.path("/tmp/snapshot.db")], moved=True)
    assert r.returncode == 0 and row_count(box.path("/tmp/snapshot.db")) == 53, r.stderr


def test_prune_unit_runs(tmp):
    """walship-prune with /etc/walship/walship.toml naming a replica of three
    snapshots and keep-last = 1: one point left, and it restores."""
    box, db = unit_sandbox(tmp)
    url = box.move("file:///var/backups/walship/snapshots/app")
    for _ in range(3):
        add_rows(db, 1)
        r = box.run(["walship", "snapshot", db, url], moved=True)
        assert r.returncode == 0, r.stderr
    box.write("/etc/walship/walship.toml", "[[databases]]\n"
              "path = \"/srv/app/data/app.db\"\n"
              "replicas = [\"file:///var/backups/walship/snapshots/app\"]\n"
              "keep-last = 1\n")
    argv, _ = unit_command(box, f"{UNITS}/walship-prune.service")
    r = box.run(argv, moved=True)
    assert r.returncode == 0, f"walship-prune: {argv} exited {r.returncode}:\n{r.stdout}{r.stderr}"
    points = restore_points(box, url)
    assert len(points) == 1, f"keep-last = 1 left {len(points)} points"
    r = box.run(["walship", "restore", url, "-o", box.path("/tmp/pruned.db")], moved=True)
    assert r.returncode == 0 and row_count(box.path("/tmp/pruned.db")) == 53, r.stderr


def help_examples():
    """(command, example line) of every Examples: section of the --help texts."""
    top = run([WALSHIP, "--help"]).stdout
    section = top.split("Subcommands:\n")[1].split("\n\n")[0]
    commands = [line.split()[0] for line in section.splitlines() if line.startswith("  ")]
    out = []
    for command in [None] + commands:
        text = run([WALSHIP, *([command] if command else []), "--help"]).stdout
        if "Examples:\n" in text:
            block = text.split("Examples:\n", 1)[1]
            for line in block.splitlines():
                if not line.startswith("  "):
                    break
                out.append((command, line.strip()))
    return out


CRON = re.compile(r"^((?:[-*/,0-9]+\s+){5})(.*?)(\s+\(crontab\))?$")


def test_help_examples_run(tmp):
    """Every example of `walship --help` and `walship COMMAND --help` (what the
    man pages' EXAMPLES show) runs, crontab lines as cron runs them (/bin/sh),
    gs:// ones against the GCS test server (STORAGE_EMULATOR_HOST)."""
    box = Sandbox(tmp)
    examples = [line for _, line in help_examples()]
    assert len(examples) >= 8, examples
    assert any(CRON.match(line) for line in examples), "no crontab example left in the help texts"
    # What a reader has: a WAL database at /data/app.db, a folder of them,
    # an app, and the config files the examples name.
    create_db(box.path("/data/app.db"))
    add_rows(box.path("/data/app.db"), 20)
    db = sqlite3.connect(box.path("/data/app.db"))
    db.execute("CREATE TABLE orders(id INTEGER PRIMARY KEY)")  # what the sqlite3 example reads
    db.commit()
    db.close()
    os.makedirs(box.path("/data/tenants"))
    create_db(box.path("/data/tenants/tenant1.db"))
    add_rows(box.path("/data/tenants/tenant1.db"), 5)
    install_app(box, box.path("/data/app.db"))
    os.makedirs(box.path("/srv/app/data"))
    create_db(box.path("/srv/app/data/app.db"))
    add_rows(box.path("/srv/app/data/app.db"), 5)
    box.write("/etc/walship.toml", open(f"{SOURCE}/packaging/examples/walship.toml").read())
    # The default config path, as the --config examples name it.
    box.write("/etc/walship/walship.toml", '[[databases]]\npath = "/data/app.db"\nreplicas = ["file:///backups/app"]\n')
    box.write("/etc/walship/followers.toml", '[[databases]]\nrole = "serve-replica"\n'
              'path = "/data/followers/app.db"\nreplicas = ["file:///backups/app"]\n')
    os.makedirs(box.path("/data/followers"))
    env = {}
    failures = []
    missing = []
    gcs = None
    if any("gs://" in line for line in examples):
        gcs = start_gcs_server()
        env["STORAGE_EMULATOR_HOST"] = gcs[1]
    try:
        # First what makes the replicas, then what reads them.
        def rank(line):
            words = line.split()
            return 0 if words[1:2] == ["replicate"] else 1 if words[1:2] == ["snapshot"] else 2
        replicas = sorted({u for line in examples for u in re.findall(r"(?:file|gs)://[^\s']+", line)})
        for line in sorted(examples, key=rank):
            if rank(line) == 2:
                # Every other replica an example names holds a snapshot by now.
                for url in replicas:
                    if not url.startswith("file:///backups/app") and not url.endswith("tenants"):
                        r = box.run(["walship", "snapshot", "/data/app.db", url], env=env)
                        assert r.returncode == 0, r.stderr
                replicas = []
            # One failing example does not hide the others: all are reported.
            try:
                cron = CRON.match(line)
                if cron:
                    r = box.run(["/bin/sh", "-c", cron.group(2)], env=env)
                    assert r.returncode == 0, f"crontab line {line!r} exited {r.returncode}:\n{r.stdout}{r.stderr}"
                else:
                    tool = run_example(box, line, env=env)
                    if tool:
                        missing.append(f"{tool} (for {line})")
            except AssertionError as e:
                failures.append(str(e))
        assert not failures, f"{len(failures)} example(s) failed:\n" + "\n".join(failures)
        if missing:
            raise Skipped(f"not installed here: {', '.join(missing)}")
    finally:
        if gcs:
            gcs[0].terminate()
            gcs[0].wait()


def start_gcs_server():
    """(process, host:port) of tests/gcs_server serving bucket "bucket" without auth."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise Skipped("python3-cryptography is not installed (the GCS test server needs it)")
    proc = subprocess.Popen([sys.executable, f"{SOURCE}/tests/gcs_server/gcs_server.py", "--bucket", "bucket"],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("listening on "), line
    return proc, line.split()[-1].strip()


def s3_environment(server, region):
    from s3_test_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY
    return {"AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY, "AWS_SESSION_TOKEN": "",
            "AWS_PROFILE": "", "AWS_REGION": region, "AWS_ENDPOINT_URL": server.endpoint, "AWS_ENDPOINT_URL_S3": ""}


def run_orchestrated_node(box, restore_args, replicate_args, db, env, http_paths):
    """One node's life under an orchestrator: the restore task/init container,
    then the replicate sidecar while the app writes, its HTTP endpoints asked
    at `http_paths` (the probes' and checks'), then SIGTERM. Returns the rows
    the node ended with."""
    # The orchestrator provides the database's folder (the emptyDir volume,
    # Nomad's shared alloc/data).
    os.makedirs(os.path.dirname(box.path(db)), exist_ok=True)
    r = box.run(["walship", *restore_args], env=env)
    assert r.returncode == 0, f"restore {restore_args}: exit {r.returncode}\n{r.stderr}"
    first = row_count(box.path(db)) + 1 if os.path.exists(box.path(db)) else 1
    if first == 1:
        create_db(box.path(db), rows=0)
    add_rows(box.path(db), 10)
    port = free_port()
    argv = ["walship", *[a.replace(":9090", f":{port}") for a in replicate_args]]
    def ready():
        return _listening(port) and all(http_get(f"http://127.0.0.1:{port}{p}")[0] == 200 for p in http_paths)

    box.serve(argv, ready, f"{' '.join(http_paths)} answering 200", env=env)
    return first + 9


def _listening(port):
    import socket
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_orchestrator_examples_run_on_s3(tmp):
    """The Kubernetes and Nomad examples' walship arguments, run against the S3
    test server: a first node with no replica, then a replacement node that
    restores what the first shipped."""
    try:
        from s3_test_server import S3rver, require_s3rver
    except ImportError:
        raise Skipped("tests/s3/s3_test_server.py is missing")
    try:
        import yaml
    except ImportError:
        raise Skipped("python3-yaml is not installed")
    require_s3rver()
    spec = yaml.safe_load(open(f"{SOURCE}/packaging/kubernetes/app.yaml"))["spec"]["template"]["spec"]
    init = {c["name"]: c for c in spec["initContainers"]}
    k8s_env = {e["name"]: e["value"] for e in init["replicate"].get("env", [])}
    probes = [init["replicate"][p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")]
    hcl = " ".join(open(f"{SOURCE}/packaging/nomad/app.nomad.hcl").read().split())
    nomad_args = {task: json.loads(args) for task, args in
                  re.findall(r'task "(restore|replicate)" \{.*?args = (\[.*?\])', hcl)}
    nomad_check = re.search(r'check \{[^}]*path = "([^"]+)"', hcl).group(1)
    cases = [("kubernetes", init["restore"]["args"], init["replicate"]["args"], "/data/app.db", probes,
              k8s_env.get("AWS_REGION", "us-east-1")),
             ("nomad", nomad_args["restore"], nomad_args["replicate"], "/alloc/data/app.db", [nomad_check],
              "eu-west-1")]
    failures = []
    for name, restore_args, replicate_args, db, paths, region in cases:
        try:
            run_orchestrator_case(tmp, S3rver, name, restore_args, replicate_args, db, paths, region)
        except AssertionError as e:
            failures.append(f"{name}: {e}")
    assert not failures, "\n".join(failures)


def run_orchestrator_case(tmp, S3rver, name, restore_args, replicate_args, db, paths, region):
    """One example's two nodes and a check, on an S3 test server of its own (each writes s3://backups/app)."""
    with S3rver(f"{tmp}/s3-{name}", buckets=("backups",)) as server:
        env = s3_environment(server, region)
        for i, node in enumerate(("node1", "node2")):
            box = Sandbox(f"{tmp}/{name}-{node}")
            rows = run_orchestrated_node(box, restore_args, replicate_args, db, env, paths)
            assert rows == 10 * (i + 1), f"{name} {node}: the node ended with {rows} rows"
        # A third node restores both nodes' rows, and the replica verifies.
        box = Sandbox(f"{tmp}/{name}-check")
        os.makedirs(os.path.dirname(box.path(db)), exist_ok=True)
        r = box.run(["walship", *restore_args], env=env)
        assert r.returncode == 0 and row_count(box.path(db)) == 20, r.stderr
        r = box.run(["walship", "verify", restore_args[-1]], env=env)
        assert r.returncode == 0, r.stdout + r.stderr


def test_entrypoint_restores_then_replicates(tmp):
    bindir = f"{tmp}/bin"
    os.makedirs(bindir)
    os.symlink(os.path.abspath(WALSHIP), f"{bindir}/walship")
    app = f"{tmp}/app.py"
    with open(app, "w") as f:
        f.write("import sqlite3, sys\n"
                "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                "db.execute('PRAGMA journal_mode=WAL')\n"
                "db.execute('CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload BLOB NOT NULL)')\n"
                "n = db.execute('SELECT count(*) FROM t').fetchone()[0]\n"
                "db.execute('INSERT INTO t(payload) VALUES(?)', (sys.argv[2].encode(),))\n"
                "print(n + 1)\n")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "WALSHIP_REPLICA": f"file://{tmp}/replica"}
    entrypoint = f"{SOURCE}/packaging/docker/entrypoint.sh"
    # First start: no replica yet; the app creates the database and its row is shipped.
    r = run([entrypoint, "python3", app, f"{tmp}/node1/app.db", "it's one"],
            env={**env, "WALSHIP_DB": f"{tmp}/node1/app.db"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == "1", r.stdout + r.stderr
    # The node is gone: a fresh disk restores the row, then the app adds one.
    r = run([entrypoint, "python3", app, f"{tmp}/node2/app.db", "two"], env={**env, "WALSHIP_DB": f"{tmp}/node2/app.db"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == "2", r.stdout + r.stderr
    run([WALSHIP, "restore", f"file://{tmp}/replica", "-o", f"{tmp}/check.db"], check=True)
    import sqlite3
    rows = sqlite3.connect(f"{tmp}/check.db").execute("SELECT payload FROM t ORDER BY id").fetchall()
    assert rows == [(b"it's one",), (b"two",)], rows
    # Node 1 comes back with its old disk: fast-forwarded to node 2's data
    # (its old file kept aside), the app goes on from there.
    r = run([entrypoint, "python3", app, f"{tmp}/node1/app.db", "three"],
            env={**env, "WALSHIP_DB": f"{tmp}/node1/app.db"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "fast-forwarded" in r.stdout and r.stdout.strip().splitlines()[-1] == "3", r.stdout + r.stderr
    assert "reused the local pages of TXID" in r.stdout, r.stdout + r.stderr  # --delta
    assert os.path.exists(f"{tmp}/node1/app.db.walship-old")
    os.unlink(f"{tmp}/check.db")
    run([WALSHIP, "restore", f"file://{tmp}/replica", "-o", f"{tmp}/check.db"], check=True)
    rows = sqlite3.connect(f"{tmp}/check.db").execute("SELECT payload FROM t ORDER BY id").fetchall()
    assert rows == [(b"it's one",), (b"two",), (b"three",)], rows
    r = run([entrypoint], env={**env, "WALSHIP_DB": f"{tmp}/x.db"})
    assert r.returncode == 2 and "give the app's command" in r.stderr, r.stderr


def test_docker_images_commands_run(tmp):
    """The images' ENTRYPOINT + CMD, run as docker would: walship's own image
    (/usr/bin/walship --help) and the app image's entrypoint (the script
    test_entrypoint_restores_then_replicates runs), which must be the file
    the image copies."""
    box = Sandbox(tmp)
    for dockerfile in ("Dockerfile", "Dockerfile.app"):
        text = open(f"{SOURCE}/packaging/docker/{dockerfile}").read()
        entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
        cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
        argv = entrypoint + (json.loads(cmd.group(1)) if cmd else [])
        copies = dict((dst, src) for src, dst in re.findall(r"^COPY (?:--from=\S+ )?(\S+) (\S+)$", text, re.M))
        assert argv[0] in copies, f"{dockerfile}: ENTRYPOINT {argv[0]} is not a file the image copies: {copies}"
        if argv[0] == "/usr/bin/walship":
            r = box.run([os.path.abspath(WALSHIP), *argv[1:]], moved=True)
            assert r.returncode == 0 and "Usage: walship" in r.stdout, r.stdout + r.stderr
        else:
            assert copies[argv[0]] == "entrypoint.sh", copies


def test_test_summary_counts_skips(tmp):
    """scripts/test --count on a real ctest run with a pass, a skip and a failure."""
    if not shutil.which("cmake") or not shutil.which("ctest"):
        raise Skipped("cmake is not installed")
    with open(f"{tmp}/CMakeLists.txt", "w") as f:
        f.write("cmake_minimum_required(VERSION 3.20)\nproject(t NONE)\nenable_testing()\n"
                "add_test(NAME passes COMMAND true)\n"
                "add_test(NAME skips COMMAND sh -c \"exit 77\")\n"
                "set_tests_properties(skips PROPERTIES SKIP_RETURN_CODE 77)\n"
                "add_test(NAME fails COMMAND false)\n")
    assert run(["cmake", "-S", tmp, "-B", f"{tmp}/b"]).returncode == 0
    r = run(["ctest"], cwd=f"{tmp}/b")
    with open(f"{tmp}/log", "w") as f:
        f.write(r.stdout + r.stderr)
    assert "tests passed" in r.stdout, r.stdout
    counts = run([f"{SOURCE}/scripts/test", "--count", f"{tmp}/log"])
    assert counts.returncode == 0 and counts.stdout.split() == ["1", "1", "1"], counts.stdout + counts.stderr


def test_orchestrator_examples_keep_the_pattern(tmp):
    """The Nomad and Kubernetes examples restore before the app and replicate
    beside it with options walship has (checked against --help)."""
    restore_help = run([WALSHIP, "restore", "--help"]).stdout
    for flag in ("--if-replica-exists", "--fast-forward", "--delta", "-o,"):
        assert flag in restore_help, flag
    hcl = open(f"{SOURCE}/packaging/nomad/app.nomad.hcl").read()
    compact = " ".join(hcl.split())
    for needle in ('hook = "prestart"', 'hook = "poststart" sidecar = true', "unlimited = true",
                   '"restore", "--if-replica-exists"', 'args = ["replicate",'):
        assert needle in compact, f"{needle!r} not in the Nomad job"
    assert hcl.count("{") == hcl.count("}"), "unbalanced braces in the Nomad job"
    try:
        import yaml
    except ImportError:
        raise Skipped("python3-yaml is not installed")
    spec = yaml.safe_load(open(f"{SOURCE}/packaging/kubernetes/app.yaml"))["spec"]["template"]["spec"]
    init = {c["name"]: c for c in spec["initContainers"]}
    assert init["restore"]["args"][:2] == ["restore", "--if-replica-exists"], init["restore"]
    assert init["replicate"]["restartPolicy"] == "Always" and init["replicate"]["args"][0] == "replicate"
    assert [c["name"] for c in spec["containers"]] == ["app"]
    # Both examples replicate with --enable-wal (the app may create the
    # database in rollback mode) and serve --http for their probes and checks.
    assert "--enable-wal" in init["replicate"]["args"] and "--http" in init["replicate"]["args"]
    assert '"replicate", "--wait", "--enable-wal", "--http"' in compact, "the Nomad sidecar's arguments changed"
    # A vanished node's pod is evicted in seconds, not the default 300.
    tolerations = {t["key"]: t for t in spec["tolerations"]}
    for key in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"):
        assert tolerations[key]["effect"] == "NoExecute" and tolerations[key]["tolerationSeconds"] <= 30, tolerations
    port = init["replicate"]["ports"][0]
    http = init["replicate"]["args"][init["replicate"]["args"].index("--http") + 1]
    assert http.endswith(f":{port['containerPort']}"), (http, port)
    assert init["replicate"]["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert init["replicate"]["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert init["replicate"][probe]["httpGet"]["port"] in (port["name"], port["containerPort"]), probe
    text = open(f"{SOURCE}/packaging/kubernetes/app.yaml").read()
    assert "eks.amazonaws.com/role-arn" in text, "the IRSA annotation comment is gone"
    # The Nomad job: a check on /healthz on the port --http listens on, the
    # minimum version, and the 30 s split between the app and walship.
    assert re.search(r'check \{ type = "http" path = "/healthz"', compact), "no /healthz check in the Nomad job"
    assert re.search(r'port "walship" \{ to = 9090 \}', compact) and '"0.0.0.0:9090"' in compact
    assert re.search(r"Nomad 1\.\d+ or later", hcl), "the Nomad job does not state its minimum version"
    tasks = {part.split('"')[0]: part for part in compact.split('task "')[1:]}
    kills = {name: re.search(r'kill_timeout = "(\d+)s"', body).group(1) for name, body in tasks.items()
             if "kill_timeout" in body}
    assert int(kills["app"]) + int(kills["replicate"]) <= 30, kills
    for text in (hcl, open(f"{SOURCE}/packaging/kubernetes/app.yaml").read()):
        assert "30 s" in text, "the 30 s notice split is not explained"


def main():
    run_tests([test_man_pages_match_help, test_man_pages_render, test_bash_completion, test_zsh_completion,
               test_systemd_units_verify, test_systemd_services_are_the_ones_run_here, test_replicate_unit_runs,
               test_snapshot_unit_runs, test_prune_unit_runs, test_help_examples_run,
               test_entrypoint_restores_then_replicates, test_orchestrator_examples_keep_the_pattern,
               test_orchestrator_examples_run_on_s3, test_docker_images_commands_run, test_test_summary_counts_skips])


if __name__ == "__main__":
    main()
