# Pinned Debian source packages (apt-get source, Debian's patches applied),
# for scripts/setup (SQLite, cpp-httplib) and scripts/static-deps (the static
# binary's C libraries). Sourced, not run. The deb-src entries mirror the
# machine's own deb entries, so no mirror is named here.
#
# The sourcing script sets, before calling anything here:
#   deb_src_dir   where .dsc files and their tarballs are kept (fetched once)
#   deb_src_who   the name its messages start with ("setup", "static-deps")
#   sudo_cmd      an array: empty as root, else (sudo)
# and may call apt_update itself: it runs `apt-get update` at most once,
# again only after ensure_deb_src added entries.

apt_updated=0
apt_update() {
  if [ "$apt_updated" = 0 ]; then
    "${sudo_cmd[@]}" apt-get update -qq
    apt_updated=1
  fi
}

# Adds deb-src entries mirroring the deb ones when there are none.
ensure_deb_src() {
  if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "$deb_src_who: adding deb-src entries mirroring the deb ones" >&2
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources |
        "${sudo_cmd[@]}" tee /etc/apt/sources.list.d/walship-src.sources >/dev/null
    else
      grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' |
        "${sudo_cmd[@]}" tee /etc/apt/sources.list.d/walship-src.list >/dev/null
    fi
    apt_updated=0
  fi
}

# fetch_source PACKAGE VERSION: the .dsc and its tarballs into $deb_src_dir
# (once; a later call finds them there).
fetch_source() {
  local dsc="$deb_src_dir/$1_${2#*:}.dsc"
  [ -f "$dsc" ] && return 0
  ensure_deb_src
  apt_update
  mkdir -p "$deb_src_dir"
  echo "$deb_src_who: fetching the $1 $2 source package" >&2
  (cd "$deb_src_dir" && apt-get source --download-only "$1=$2" >/dev/null 2>&1) || {
    echo "$deb_src_who: unable to fetch the $1 $2 source package: check apt's deb-src entries" >&2
    exit 1
  }
}

# unpack_source PACKAGE VERSION DIR: a fresh tree of the source package in
# DIR, Debian's patches applied (fetched first if it is not there yet).
unpack_source() {
  fetch_source "$1" "$2"
  rm -rf "${3:?}"
  dpkg-source --no-check -x "$deb_src_dir/$1_${2#*:}.dsc" "$3" >/dev/null
}
