"""The documentation says what the code does:

- the design document is docs/DESIGN.md, the only DESIGN.md of the
  repository; every section the sources cite (`DESIGN.md, "Replica layout"`) is one
  of its headings, and every Markdown link to it resolves;
- walship.toml(5) documents every key lib/config/config.cpp accepts and every
  replica option the backends accept, and renders without warnings;
- walship(1)'s ENVIRONMENT section names every environment variable the
  sources read, and every page but version's has ENVIRONMENT and FILES;
- every command's help for a replica URL names all four schemes, and README's
  first paragraph and Status say they exist.
"""
import glob
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from walship_test import WALSHIP, Skipped, run_tests  # noqa: E402

SOURCE = os.path.normpath(os.environ.get("WALSHIP_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", ".."))
DESIGN = os.path.join(SOURCE, "docs", "DESIGN.md")
SCHEMES = ("s3://", "gs://", "sftp://", "file://")


def read(path):
    with open(path) as f:
        return f.read()


def repository_files(*extensions):
    """The tracked-looking files of the repository (build folders and .deps left out)."""
    out = []
    for dirpath, dirnames, names in os.walk(SOURCE):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "build")) and d != "third_party"]
        out += [os.path.join(dirpath, n) for n in names if n.endswith(extensions)]
    return sorted(out)


def headings(markdown):
    return {line.lstrip("#").strip() for line in markdown.splitlines() if line.startswith("#")}


def test_design_references_resolve(tmp):
    found = [p for p in repository_files("DESIGN.md")]
    assert found == [DESIGN], f"the design document must be docs/DESIGN.md alone: {found}"
    titles = headings(read(DESIGN))
    for section in ("Architecture", "Storage interface", "Replica layout", "Chain rule", "Replicate", "Restore",
                    "Serve-replica", "Retention", "Errors and exit codes", "Fencing",
                    "Control socket", "Waiting for durability", "Preemption notices"):
        assert section in titles, f"docs/DESIGN.md has no section '{section}': {sorted(titles)}"
    fencing = read(DESIGN).split("## Fencing", 1)[1].split("\n## ", 1)[0]
    assert "exit code\n**4**" in fencing or "exit code **4**" in fencing, "the fencing section must give its exit code, 4"
    assert "| 4 | fenced" in read(DESIGN), "the exit code table must have 4"
    references = 0
    for path in repository_files(".cpp", ".h", ".py", ".md", ".txt", ".cmake") + [f"{SOURCE}/scripts/{s}" for s in
                                                                                    os.listdir(f"{SOURCE}/scripts")]:
        if not os.path.isfile(path):
            continue
        try:
            text = read(path)
        except UnicodeDecodeError:
            continue
        # A comment's reference may wrap: join comment lines first.
        flat = re.sub(r"\s*\n\s*(//|#)?\s*", " ", text)
        for section in re.findall(r'DESIGN\.md, "([^"]+)"', flat):
            references += 1
            assert section in titles, f"{os.path.relpath(path, SOURCE)}: DESIGN.md has no section '{section}'"
        if path.endswith(".md"):
            for target in re.findall(r"\]\(([^)#]*DESIGN\.md)(?:#[^)]*)?\)", text):
                resolved = os.path.normpath(os.path.join(os.path.dirname(path), target))
                assert resolved == DESIGN, f"{os.path.relpath(path, SOURCE)}: link {target} does not reach it"
                references += 1
    assert references >= 10, f"only {references} references found: is the search broken?"


def option_table_keys(text):
    """The walship.toml keys of lib/config/option_defs.cpp's table: every
    option but the flag-only ones."""
    keys = set()
    for name, middle in re.findall(r'\{"([a-z][a-z0-9-]*)", OptionUnit::\w+,(.*?)"', text, re.S):
        if "k_scope_flag_only" not in middle:
            keys.add(name)
    return keys


def config_keys():
    """Every key walship.toml takes: config.cpp's key tables and every key it
    compares with, and the option table's keys (lib/config/option_defs.cpp,
    where it exists)."""
    text = read(f"{SOURCE}/lib/config/config.cpp")
    keys = set()
    if os.path.exists(f"{SOURCE}/lib/config/option_defs.cpp"):
        keys |= option_table_keys(read(f"{SOURCE}/lib/config/option_defs.cpp"))
    for table in re.findall(r"k_\w+_keys\[\] = \{(.*?)\};", text, re.S):
        keys |= set(re.findall(r'"([a-z][a-z0-9-]*)"', table))
    keys |= set(re.findall(r'key == "([a-z][a-z0-9-]*)"', text))
    keys |= set(re.findall(r'root\.get\("([a-z][a-z0-9-]*)"\)', text))
    assert {"sync-interval", "keep-daily", "poll-interval", "http", "role", "replicas", "url"} <= keys, keys
    return keys


def replica_options():
    """Every option a backend accepts in a URL query or a replica table."""
    options = set()
    for path in ("backends/s3/s3_options.cpp", "backends/gcs/gcs_storage.cpp"):
        table = re.search(r"k_options\[\] = \{(.*?)\};", read(f"{SOURCE}/{path}"), re.S).group(1)
        options |= set(re.findall(r'"([a-z][a-z0-9-]*)"', table))
    options |= set(re.findall(r'name == "([a-z][a-z0-9-]*)"', read(f"{SOURCE}/backends/sftp/sftp_storage.cpp")))
    assert {"endpoint", "part-size", "credentials-file", "known-hosts"} <= options, options
    return options


def test_walship_toml_page_documents_every_key(tmp):
    page = read(f"{SOURCE}/man/walship.toml.5")
    # Keys are the .B entries (and their .TQ companions); roff escapes '-' as '\-'.
    documented = {m.replace("\\-", "-") for m in re.findall(r"^\.B ([a-z][a-z0-9\\-]*)$", page, re.M)}
    documented |= {m.replace("\\-", "-") for m in re.findall(r"^\.B \[\[?([a-z]+)\]\]?$", page, re.M)}
    missing = sorted((config_keys() | replica_options()) - documented)
    assert not missing, f"man/walship.toml.5 does not document: {missing}"
    # Names config.cpp spells anywhere (table names it looks up, say) count as accepted.
    spelled = set(re.findall(r'"([a-z][a-z0-9-]*)"', read(f"{SOURCE}/lib/config/config.cpp")))
    unknown = sorted(documented - config_keys() - replica_options() - spelled)
    assert not unknown, f"man/walship.toml.5 documents keys walship does not accept: {unknown}"


def test_walship_toml_page_renders(tmp):
    if not shutil.which("man"):
        raise Skipped("man is not installed")
    r = subprocess.run(["man", "--warnings", "-l", f"{SOURCE}/man/walship.toml.5"], capture_output=True, text=True,
                       env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat", "LANG": "C.UTF-8"})
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    for section in ("NAME", "DESCRIPTION", "OPTIONS", "REPLICA OPTIONS", "EXAMPLE", "FILES", "SEE ALSO"):
        assert f"\n{section}\n" in r.stdout, f"no {section} in walship.toml(5)"


def environment_reads():
    """The environment variables the sources read (test hooks left out)."""
    names = set()
    for path in glob.glob(f"{SOURCE}/cmd/*.*") + glob.glob(f"{SOURCE}/lib/**/*.*", recursive=True) + \
            glob.glob(f"{SOURCE}/backends/**/*.*", recursive=True):
        if not path.endswith((".cpp", ".h")):
            continue
        text = read(path)
        names |= set(re.findall(r'(?:getenv|env|env_value|env_or_empty|home_file\(env,)\(?\s*"([A-Z][A-Z0-9_]+)"',
                                text))
        names |= set(re.findall(r'_env\s*=\s*"([A-Z][A-Z0-9_]+)"', text))
        names |= set(re.findall(r'"((?:AWS|GOOGLE|GCE|STORAGE|SSH|WALSHIP|JOURNAL)_[A-Z0-9_]+)"', text))
    return {n for n in names if not n.startswith("WALSHIP_TEST_")}


def test_environment_and_files_sections(tmp):
    top = read(f"{SOURCE}/man/walship.1")
    assert ".SH ENVIRONMENT" in top and ".SH FILES" in top
    environment = top.split(".SH ENVIRONMENT")[1].split("\n.SH ")[0].replace("\\-", "-")
    reads = environment_reads()
    assert {"AWS_ACCESS_KEY_ID", "GOOGLE_APPLICATION_CREDENTIALS", "TMPDIR"} <= reads, reads
    missing = sorted(n for n in reads if not re.search(rf"\b{n}\b", environment))
    assert not missing, f"walship(1) ENVIRONMENT lacks {missing}: add them to scripts/gen-man's table and rerun it"
    for page in sorted(glob.glob(f"{SOURCE}/man/walship-*.1")):
        if page.endswith("walship-version.1"):
            continue
        text = read(page)
        assert ".SH ENVIRONMENT" in text and ".SH FILES" in text, f"{page} lacks ENVIRONMENT or FILES"
        assert "AWS_ACCESS_KEY_ID" in text and "known_hosts" in text, page


def test_url_help_names_every_scheme(tmp):
    top = subprocess.run([WALSHIP, "--help"], capture_output=True, text=True).stdout
    section = top.split("Subcommands:\n")[1].split("\n\n")[0]
    commands = [line.split()[0] for line in section.splitlines() if line.startswith("  ")]
    checked = 0
    for command in commands:
        text = subprocess.run([WALSHIP, command, "--help"], capture_output=True, text=True,
                              env={**os.environ, "COLUMNS": "200"}).stdout
        for line in text.splitlines():
            if re.match(r"\s+URL\b", line) and "replica" in line.lower():
                checked += 1
                for scheme in SCHEMES:
                    assert scheme in line, f"walship {command} --help: {line.strip()!r} lacks {scheme}"
    assert checked >= 5, f"only {checked} URL arguments found in the help texts"


def test_readme_says_what_exists(tmp):
    readme = read(f"{SOURCE}/README.md")
    first = readme.split("\n\n")[1]
    for scheme in SCHEMES:
        assert scheme in first, f"README's first paragraph does not name {scheme}"
    assert "coming" not in first.lower(), first
    status = readme.split("## Status\n", 1)[1].split("\n## ", 1)[0]
    for scheme in SCHEMES:
        assert scheme in status, f"README's Status does not name {scheme}"
    assert "coming" not in status.lower(), status


def main():
    run_tests([test_design_references_resolve, test_walship_toml_page_documents_every_key,
               test_walship_toml_page_renders, test_environment_and_files_sections, test_url_help_names_every_scheme,
               test_readme_says_what_exists])


if __name__ == "__main__":
    main()
