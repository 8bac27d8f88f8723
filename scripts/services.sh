#!/usr/bin/env bash
# Make sure the servers the tests start are installed: PostgreSQL (Debian's package).
# The tests start and stop their own instances; this only installs what is missing.
set -euo pipefail
case "${1:-ensure}" in
  ensure)
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "services: installing PostgreSQL with apt"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
      else
        echo "services: PostgreSQL is missing and cannot be installed here; its tests will be skipped"
      fi
    fi
    ;;
esac
