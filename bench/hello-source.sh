#!/usr/bin/env bash
# bench/hello-source.sh — Debian's GNU hello source, unpacked into OUTDIR (must not exist).
# Downloaded once with apt-get source in a private apt state (its own sources.list with a deb-src
# line, lists and cache under /var/cache/jobrunner/hello/apt: the host's apt is not touched), then
# kept in /var/cache/jobrunner/hello. Usage: bench/hello-source.sh OUTDIR
set -euo pipefail
out=${1:?usage: hello-source.sh OUTDIR}
cache=${JOBRUNNER_HELLO_CACHE:-/var/cache/jobrunner/hello}
mkdir -p "$cache"
if ! ls "$cache"/hello_*.dsc >/dev/null 2>&1; then
  apt=$cache/apt
  mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/etc"
  echo 'deb-src http://deb.debian.org/debian bookworm main' > "$apt/etc/sources.list"
  opts=(-o "Dir::Etc::SourceList=$apt/etc/sources.list" -o 'Dir::Etc::SourceParts=-' -o "Dir::State=$apt"
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt" -o 'APT::Sandbox::User=root' -qq)
  apt-get "${opts[@]}" update
  (cd "$cache" && apt-get "${opts[@]}" source --download-only hello)
fi
dsc=$(ls "$cache"/hello_*.dsc | head -1)
dpkg-source --no-check -x "$dsc" "$out" >/dev/null
