"""The dependency rule of ARCHITECTURE.md, checked on the sources:

    cmd/ -> lib/ -> lib/storage/storage.h <- backends/*/

lib/ never includes a backend or cmd/; backends/ use only lib/storage/ and
lib/util/ of lib/, and never cmd/, but backends/cloud/ also implements
lib/cloud/'s notice watcher (which, like lib/storage/, uses only lib/util/);
lib/util/ is the leaf that includes no other layer. A violation names the file, the line and the rule."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from walship_test import run_tests  # noqa: E402

ROOT = os.environ.get("WALSHIP_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')

# (folder, include prefixes it may use of the project's own folders)
RULES = [
    ("lib/util", ("lib/util/",)),
    ("lib/storage", ("lib/util/", "lib/storage/")),
    ("lib/cloud", ("lib/util/", "lib/cloud/")),
    ("lib", ("lib/",)),
    ("backends/cloud", ("backends/", "lib/util/", "lib/storage/", "lib/cloud/")),
    ("backends", ("backends/", "lib/util/", "lib/storage/")),
    ("cmd", ("cmd/", "lib/", "backends/")),
]
OWN = ("lib/", "backends/", "cmd/", "tests/")


def rule_for(path):
    for folder, allowed in RULES:
        if path == folder or path.startswith(folder + "/"):
            return folder, allowed
    return None, None


def violations():
    found = []
    for top in ("lib", "backends", "cmd"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for name in sorted(files):
                if not name.endswith((".cpp", ".h")):
                    continue
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, ROOT)
                folder, allowed = rule_for(rel)
                with open(full, encoding="utf-8") as f:
                    for n, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        inc = m.group(1)
                        if inc.startswith(OWN) and not inc.startswith(allowed):
                            found.append(f"{rel}:{n}: includes {inc}, but {folder}/ may include only "
                                         f"{', '.join(allowed)} of the project")
    return found


def test_every_include_follows_the_dependency_rule(tmp):
    bad = violations()
    assert not bad, "layering broken (ARCHITECTURE.md):\n" + "\n".join(bad)


def test_the_check_sees_a_violation(tmp):
    assert rule_for("lib/replica/restore.cpp")[0] == "lib"
    assert rule_for("lib/util/fs.cpp")[0] == "lib/util"
    assert not "backends/s3/s3_storage.h".startswith(rule_for("lib/replica/x.cpp")[1])
    assert not "lib/replica/restore.h".startswith(rule_for("backends/s3/x.cpp")[1])
    assert not "lib/replica/x.h".startswith(rule_for("lib/util/fs.cpp")[1])
    # lib/cloud/ is for backends/cloud/ only, and reaches nothing of the engine.
    assert "lib/cloud/preemption_notice.h".startswith(rule_for("backends/cloud/x.cpp")[1])
    assert not "lib/cloud/preemption_notice.h".startswith(rule_for("backends/s3/x.cpp")[1])
    assert not "lib/replica/x.h".startswith(rule_for("lib/cloud/x.cpp")[1])


if __name__ == "__main__":
    run_tests([test_every_include_follows_the_dependency_rule, test_the_check_sees_a_violation])
