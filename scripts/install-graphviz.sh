#!/usr/bin/env bash
# Installs Debian's graphviz (the `dot` binary) when missing. Never fails the build: without `dot`,
# needle_qc.draw still writes the .dot source and says so.
set -u
if command -v dot >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null) \
    || echo "warning: apt-get install graphviz failed; drawings will be .dot files only" >&2
else
  echo "warning: graphviz 'dot' not found and cannot apt-get it here; drawings will be .dot files only" >&2
fi
exit 0
