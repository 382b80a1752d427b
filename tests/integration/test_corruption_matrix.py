#!/usr/bin/env python3
"""The corruption matrix: every row of corruption_matrix.tsv damages one kind
of object of test_corruption.py's pristine replica (snapshots, L0, L1 and L2
deltas) in one way (bit flips, truncation, deletion, two objects exchanged, an
older object in its place, junk or a copy under the next TXID's name) and
checks what DESIGN.md promises of verify, the latest restore, a restore of a
point the damage does not touch, a restore of a point it does, and
serve-replica. Each row is a test of its own, named after it (matrix_L1_flip).
A row marked known-bug expects what DESIGN.md says, so it fails while the bug
is there; the mark names the bug in the failure, and a marked row that passes
fails too, so that the mark is taken off."""

import csv
import functools
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
from test_corruption import copy_replica, digest, flip, newest_txid, pristine, restore  # noqa: E402
from walship_test import WALSHIP, free_port, http_get, metric, run_tests, stop, wait_for, walship  # noqa: E402

TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corruption_matrix.tsv")
COLUMNS = ["object", "fault", "verify", "named", "latest", "untouched", "affected", "follow_from", "serve",
           "known_bug"]
VALUES = {
    "object": {"snap-first", "snap-later", "L0-mid", "L0-newest", "L1", "L2", "next-L0", "next-snap"},
    "fault": {"flip", "truncate", "delete", "swap", "older", "junk", "copy"},
    "verify": {"0", "3"},
    "named": {"yes", "no"},
    "latest": {"newest", "unreachable", "claimed", "fails"},
    "untouched": {"ok", "-"},
    "affected": {"ok", "fails"},
    "follow_from": {"before", "scratch"},
    "serve": {"newest", "stays", "claimed"},
}
# How long serve-replica may take to reach a point, and to log a failed step
# (it does at its first poll).
SERVE_TIMEOUT = 20
STAYS_TIMEOUT = 5


def read_table(path=TABLE):
    """The rows of the table: dicts keyed by COLUMNS, each value checked."""
    with open(path, newline="") as f:
        lines = [line for line in f if line.strip() and not line.startswith("#")]
    rows = list(csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))
    for n, row in enumerate(rows, 1):
        assert list(row) == COLUMNS, f"{path}: row {n}: columns {list(row)}, expected {COLUMNS}"
        for column, allowed in VALUES.items():
            assert row[column] in allowed, f"{path}: row {n}: {column} is {row[column]!r}, not one of {allowed}"
    names = [row_name(row) for row in rows]
    assert len(set(names)) == len(names), f"{path}: a row appears twice: {names}"
    return rows


def row_name(row):
    return f"matrix_{row['object']}_{row['fault']}".replace("-", "_")


# --- The pristine replica: its objects, restore plans and roles -------------


def txid_of(key):
    return int(os.path.basename(key).split(".")[0].split("-")[0], 16)


def end_of(key):
    """The last TXID an object's key names (an L0 delta is one TXID)."""
    return int(os.path.basename(key).split(".")[0].split("-")[-1], 16)


def level_of(key):
    return 9 if key.startswith("snapshots/") else int(key.split("/")[1][1:])


def keys_of(replica, kind):
    return sorted(os.path.relpath(p, replica) for p in glob.glob(f"{replica}/{kind}/*"))


def plan(snapshots, deltas, target):
    """The objects restore takes to `target` (DESIGN.md "Restore"): the newest
    snapshot at or before it, then at each step the delta of the highest level
    that starts there and does not pass the target."""
    snapshot = [s for s in snapshots if txid_of(s) <= target][-1]
    keys, at = [snapshot], txid_of(snapshot)
    while at < target:
        step = [d for d in deltas if txid_of(d) == at + 1 and end_of(d) <= target]
        if not step:
            return None
        best = max(step, key=level_of)
        keys.append(best)
        at = end_of(best)
    return keys


@functools.cache
def layout():
    """What the rows damage in the pristine replica, chosen from its objects
    and the restore plans of its points; the plans are checked against
    `walship ls` (objects and bytes of each point) first."""
    src, _ = pristine()
    replica = f"{src}/replica"
    snaps = keys_of(replica, "snapshots")
    l0 = keys_of(replica, "deltas/L0")
    # The table is written for a first and a later snapshot (a swap of the two
    # leaves none whole), both before the newest L0 delta (the L0-newest rows
    # damage the only way to the newest TXID). A slow build can make more, and
    # a snapshot taken after the last commit sits at the newest TXID: the
    # deltas reach their points, so they go, here in the cached pristine
    # replica, before anything is planned or restored from it.
    before_newest = [k for k in snaps[1:] if txid_of(k) < txid_of(l0[-1])]
    assert before_newest, f"no later snapshot before the newest L0 delta {l0[-1]}: {snaps}"
    for key in set(snaps) - {snaps[0], before_newest[-1]}:
        os.unlink(f"{replica}/{key}")
    snaps = [snaps[0], before_newest[-1]]
    walship("verify", f"file://{replica}", check=0)
    l1, l2 = (keys_of(replica, f"deltas/L{n}") for n in (1, 2))
    deltas = sorted(l0 + l1 + l2, key=lambda k: (txid_of(k), level_of(k)))
    points = json.loads(walship("ls", "--json", f"file://{replica}", check=0).out)
    plans = {}
    for p in points:
        txid = int(p["txid"], 16)
        plans[txid] = plan(snaps, deltas, txid)
        assert plans[txid], f"this test finds no plan to TXID {p['txid']}, walship ls does: {p}"
        size = sum(os.path.getsize(f"{replica}/{k}") for k in plans[txid])
        assert (len(plans[txid]), size) == (p["fetch_objects"], p["fetch_bytes"]), \
            f"this test plans {plans[txid]} to TXID {p['txid']}, walship ls says {p}"
    used = {k for keys in plans.values() for k in keys}
    newest = max(plans)
    assert len(l1) >= 2 and len(l2) >= 2, (l1, l2)
    # The newest L0 delta is the only way to the newest TXID (the L0-newest rows).
    assert all(end_of(k) < newest for k in l1 + l2), f"a compacted file ends at the newest TXID: {l1 + l2}"

    def inside_l1(key):
        return any(txid_of(m) < txid_of(key) < end_of(m) for m in l1)

    def needed(key):
        """Whether deleting `key` breaks a restore point, as walship verify
        sees it (else a compacted file or a snapshot reaches every point after
        it, and verify rightly finds nothing to blame), tried on a copy."""
        trial = f"{src}/needed-trial"
        shutil.rmtree(trial, ignore_errors=True)
        shutil.copytree(replica, trial)
        os.unlink(f"{trial}/{key}")
        code = walship("verify", f"file://{trial}").code
        shutil.rmtree(trial)
        return code == 3

    # An L0 delta strictly inside an L1 file, so that a follower before it can
    # go on through that file, and one some point after it needs: one the
    # latest restore takes when there is one, else one from the middle.
    mids = [k for k in l0[1:-1] if inside_l1(k)]
    in_latest = [k for k in mids if k in plans[newest]]
    middle_first = sorted(mids, key=lambda k: abs(mids.index(k) - len(mids) // 2))
    l0_mid = next((k for k in in_latest + middle_first if needed(k)), None)
    assert l0_mid, f"no L0 delta inside an L1 file is needed by a point after it: {l1}"
    # Compacted files a restore plan goes through: for L1 not the first one,
    # so that an older L1 exists; for L2 the first one (no "older" row).
    l1_used = [k for k in l1[1:] if k in used]
    l1_pick = l1_used[0] if l1_used else l1[1]
    l2_used = [k for k in l2 if k in used]
    l2_pick = l2_used[0] if l2_used else l2[0]

    def neighbour(keys, key):
        i = keys.index(key)
        return keys[i + 1] if i + 1 < len(keys) else keys[i - 1]

    def previous(keys, key):
        i = keys.index(key)
        return keys[i - 1] if i > 0 else None

    roles = {}
    for name, key, kind in (("snap-first", snaps[0], snaps), ("snap-later", snaps[-1], snaps),
                            ("L0-mid", l0_mid, l0), ("L0-newest", l0[-1], l0), ("L1", l1_pick, l1),
                            ("L2", l2_pick, l2)):
        partner = snaps[0] if name == "snap-later" else neighbour(kind, key)
        roles[name] = {"key": key, "swap": partner, "older": previous(kind, key)}
    return {"replica": replica, "keys": snaps + deltas, "snapshots": snaps, "l0": l0, "newest": newest,
            "plans": plans, "roles": roles}


@functools.cache
def pristine_digest(txid):
    """The rows of the pristine replica restored to `txid`."""
    src, _ = pristine()
    out = f"{src}/pristine-{txid:016x}.db"
    restore(f"{src}/replica", out, "--txid", f"{txid:016x}", check=0)
    return digest(out)


# --- Damage -----------------------------------------------------------------


def damage(replica, row):
    """Damages the copy `replica` as `row` says; returns the keys it damaged."""
    lay = layout()
    kind, fault = row["object"], row["fault"]
    if kind in ("next-L0", "next-snap"):
        newest = newest_txid(replica)
        key = f"deltas/L0/{newest + 1:016x}.delta" if kind == "next-L0" else f"snapshots/{newest + 1:016x}.snap"
        if fault == "junk":
            with open(f"{replica}/{key}", "wb") as f:
                f.write(os.urandom(300))
        else:
            source = lay["l0"][-1] if kind == "next-L0" else lay["snapshots"][-1]
            shutil.copy(f"{replica}/{source}", f"{replica}/{key}")
        return [key]
    role = lay["roles"][kind]
    key, path = role["key"], f"{replica}/{role['key']}"
    if fault == "flip":
        flip(path)
    elif fault == "truncate":
        os.truncate(path, os.path.getsize(path) // 2)
    elif fault == "delete":
        os.unlink(path)
    elif fault == "swap":
        other = f"{replica}/{role['swap']}"
        os.rename(path, f"{path}.swap")
        os.rename(other, path)
        os.rename(f"{path}.swap", other)
        return [key, role["swap"]]
    elif fault == "older":
        assert role["older"], f"{key}: no older object of its kind"
        shutil.copy(f"{replica}/{role['older']}", path)
    else:
        raise AssertionError(f"fault {fault} does not apply to {kind}")
    return [key]


def points_for(row, damaged):
    """The TXIDs a row's checks use: untouched, the first snapshot left whole
    (its plan uses no damaged object; None when none is); affected, one whose
    plan goes through the damaged object (for junk, the TXID it is named
    after); before, the one just before the first damaged TXID (None for the
    first snapshot's); claimed, the newest that an undamaged object names
    (a deleted object or a copy claims nothing: DESIGN.md "Restore")."""
    lay = layout()
    first = txid_of(lay["snapshots"][0])
    if row["object"] in ("next-L0", "next-snap"):
        newest = lay["newest"]
        return {"untouched": first, "affected": newest + 1, "before": newest, "claimed": newest}
    untouched = None
    for snap in lay["snapshots"]:
        if snap not in damaged:
            untouched = txid_of(snap)
            assert not set(lay["plans"][untouched]) & set(damaged), (untouched, damaged)
            break
    key = damaged[0]
    later = [txid_of(k) for k in damaged if txid_of(k) > first]
    return {
        "untouched": untouched,
        "affected": txid_of(key) if key.startswith("snapshots/") else end_of(key),
        "before": min(later) - 1 if later else None,
        "claimed": max(end_of(k) for k in set(lay["keys"]) - set(damaged)),
    }


# --- Observations -----------------------------------------------------------


def error_lines(result):
    return [line for line in result.err.splitlines() if line.startswith("walship:")]


def outcome(result, out, expected_digests, damaged=()):
    """What one restore into `out` came to: the name in `expected_digests`
    whose rows it holds (exit 0), "unreachable" (exit 1, one error line naming
    a damaged key and saying --allow-older), "fails" (exit 1, one error line),
    each with nothing left in out's folder; else a description."""
    left = os.listdir(os.path.dirname(out))
    if result.code == 0:
        if left != [os.path.basename(out)]:
            return f"exit 0, and {out}'s folder holds {left}"
        rows = digest(out)
        for name, want in expected_digests.items():
            if rows == want:
                return name
        return "exit 0 with rows of no expected point"
    if left:
        return f"exit {result.code}, left behind: {left}"
    if result.code == 1 and len(error_lines(result)) == 1:
        line = error_lines(result)[0]
        if "--allow-older" not in line:
            return "fails"
        return "unreachable" if any(k in line for k in damaged) else "unreachable, not naming the damage"
    return f"exit {result.code} with {len(error_lines(result))} error lines"


def fresh_out(tmp, name):
    folder = f"{tmp}/{name}"
    os.makedirs(folder)
    return f"{folder}/db"


def follow(tmp, replica, row, damaged, points, rows_at, problems):
    """Runs serve-replica as `row` says (from scratch, or on a PATH restored
    from the pristine replica to the point one delta before points["before"])
    and returns (what it came to, its command and log): newest (it reached the
    source's rows), stays (it holds the point before the damage, whole, and
    logged "follow step failed" naming the gap, that TXID or a damaged object,
    and counted it in /metrics), claimed (it holds the claimed point without a
    failed step), or a description."""
    _, source = pristine()
    before, path = points["before"], fresh_out(tmp, "follow")
    if row["follow_from"] == "before":
        assert before is not None, f"{row_name(row)}: nothing comes before the first snapshot: follow from scratch"
        # One delta earlier, so that it follows into the damage. (A PATH
        # without serve-replica's local state is found by its checksum.)
        start = max(before - 1, txid_of(layout()["snapshots"][0]))
        restore(f"{pristine()[0]}/replica", path, "--txid", f"{start:016x}", check=0)
    log_path, port = f"{tmp}/serve.log", free_port()
    log = open(log_path, "w")
    command = [WALSHIP, "serve-replica", f"file://{replica}", path, "--poll-interval", "50ms"]
    if row["serve"] == "stays":
        # Only where the failed steps are counted: a serve-replica --http
        # that fails as it starts can hang in the listener's destructor.
        command += ["--http", f"127.0.0.1:{port}"]
    serve = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)

    def state():
        try:
            return digest(path) if os.path.exists(path) else None
        except Exception:
            return None  # not a whole database (yet)

    def failed_steps():
        return [line for line in open(log_path).read().splitlines() if "follow step failed" in line]

    def errors():
        try:
            return metric(http_get(f"http://127.0.0.1:{port}/metrics")[1], "walship_follow_errors_total", db=path)
        except (OSError, AssertionError):
            return None

    def following():
        return 'msg="following"' in open(log_path).read()

    done = {
        "newest": lambda: following() and state() == source,
        "stays": failed_steps,
        "claimed": lambda: following() and state() == rows_at("claimed"),
    }[row["serve"]]
    seen = "no outcome"
    try:
        try:
            timeout = SERVE_TIMEOUT if row["serve"] != "stays" else STAYS_TIMEOUT
            wait_for(lambda: serve.poll() is not None or done(), f"serve-replica: {row['serve']}", timeout)
        except AssertionError:
            pass  # described below
        time.sleep(0.5)  # ten polls: it stays where it is
        rows, failed = state(), failed_steps()
        gap = [f"{before:016x}", *damaged] if before is not None else damaged
        if serve.poll() is not None:
            seen = f"exited {serve.returncode}"
        elif rows == source:
            seen = "newest"
        elif failed and rows is not None and rows == rows_at("before"):
            seen = "stays"
            if not any(name in line for line in failed for name in gap):
                seen = f"stays, but no failed step names {' or '.join(gap)}"
            elif not errors():
                seen = f"stays, but walship_follow_errors_total is {errors()}"
        elif not failed and rows is not None and rows == rows_at("claimed"):
            seen = "claimed"
        else:
            seen = "holds rows of neither the source nor the point before the damage or the claimed one" + (
                ", and logged a failed step" if failed else "")
    finally:
        if serve.poll() is None:
            code = stop(serve, signal.SIGTERM, 30)
            if code != 0:
                problems.append(f"serve-replica exited {code} on SIGTERM\n$ {' '.join(command)}\n"
                                f"{open(log_path).read()}")
        log.close()
    return seen, f"$ {' '.join(command)}\n--- its log\n{open(log_path).read()}"


def observe(row, tmp):
    """Damages a copy of the pristine replica as `row` says and runs the five
    checks: ({column: what was seen, in the table's terms}, {column: the
    command and its output}, [problems outside the columns])."""
    _, source = pristine()
    replica = copy_replica(tmp)
    damaged = damage(replica, row)
    points = points_for(row, damaged)
    url = f"file://{replica}"

    def rows_at(name):
        return pristine_digest(points[name]) if points[name] is not None else None

    seen, details, problems = {"damaged": ", ".join(damaged)}, {}, []
    seen["points"] = ", ".join(f"{name} TXID {txid:016x}" for name, txid in points.items() if txid is not None)

    # 1. verify: its exit code, and whether it names every damaged key.
    v = walship("verify", url)
    seen["verify"] = str(v.code)
    seen["named"] = "yes" if all(k in v.out + v.err for k in damaged) else "no"
    details["verify"] = details["named"] = f"$ walship verify {url}\n{v!r}"

    # 2. The latest restore.
    out = fresh_out(tmp, "latest")
    r = restore(replica, out, check=None)
    seen["latest"] = outcome(r, out, {"newest": source, "claimed": rows_at("claimed")}, damaged)
    if seen["latest"] == "newest" and "not the replica's newest" in r.out:
        seen["latest"] = "newest, but it says it is not the replica's newest"
    details["latest"] = f"$ walship restore {url} -o {out}\n{r!r}"

    # 3. A point whose plan uses no damaged object.
    if points["untouched"] is None:
        seen["untouched"] = "-"
        details["untouched"] = "no snapshot is left whole: no point is untouched"
    else:
        out, txid = fresh_out(tmp, "untouched"), f"{points['untouched']:016x}"
        r = restore(replica, out, "--txid", txid, check=None)
        seen["untouched"] = outcome(r, out, {"ok": rows_at("untouched")})
        details["untouched"] = f"$ walship restore {url} -o {out} --txid {txid}\n{r!r}"

    # 4. A point whose plan goes through the damaged object.
    out, txid = fresh_out(tmp, "affected"), f"{points['affected']:016x}"
    r = restore(replica, out, "--txid", txid, check=None)
    seen["affected"] = outcome(r, out, {"ok": rows_at("affected")} if points["affected"] <= layout()["newest"] else {})
    details["affected"] = f"$ walship restore {url} -o {out} --txid {txid}\n{r!r}"

    # 5. serve-replica.
    seen["serve"], details["serve"] = follow(tmp, replica, row, damaged, points, rows_at, problems)
    return seen, details, problems


def check_row(row, tmp):
    seen, details, problems = observe(row, tmp)
    for column in ("verify", "named", "latest", "untouched", "affected", "serve"):
        if seen[column] != row[column]:
            problems.append(f"{column}: expected {row[column]}, got {seen[column]}\n{details[column]}")
    subject = f"{row_name(row)} ({seen['damaged']}; {seen['points']})"
    if row["known_bug"] != "-":
        if not problems:
            raise AssertionError(f"{subject} is marked known-bug ({row['known_bug']}) but behaves as DESIGN.md "
                                 "says: take the mark off")
        problems.insert(0, f"known bug: {row['known_bug']}")
    if problems:
        raise AssertionError(f"{subject}:\n" + "\n".join(problems))


def row_test(row):
    def test(tmp):
        check_row(row, tmp)

    test.__name__ = row_name(row)
    return test


if __name__ == "__main__":
    run_tests([row_test(row) for row in read_table()])
