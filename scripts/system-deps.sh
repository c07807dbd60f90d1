#!/usr/bin/env bash
# Install the Debian packages wasupd's tests and demo need, when they are missing.
# As root it installs them; otherwise it prints the exact command and fails.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromium-headless-shell >/dev/null 2>&1 || need+=(chromium-headless-shell)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
# make deb and its test: Debian's python3 with venv, lintian, the service user tools.
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import venv" 2>/dev/null || need+=(python3 python3-venv)
command -v lintian >/dev/null 2>&1 || need+=(lintian)
command -v useradd >/dev/null 2>&1 || need+=(passwd)
command -v man >/dev/null 2>&1 || need+=(man-db)
fc-list 2>/dev/null | grep -qi liberation || need+=(fonts-liberation)
# tests/wwebjs runs whatsapp-web.js (from npm) against the simulator.
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)

# The store tests run Debian's PostgreSQL from a temporary directory (initdb + pg_ctl, see
# tests/helpers/postgres.py): the server binaries only, no cluster and no running service.
pg_bin=/usr/lib/postgresql/15/bin
[ -x "$pg_bin/initdb" ] && [ -x "$pg_bin/pg_ctl" ] || need+=(postgresql-15)

[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${need[*]}" >&2
    echo "install them with:  sudo apt-get install -y ${need[*]}" >&2
    if [[ " ${need[*]} " == *" postgresql-15 "* ]]; then
        echo "(the tests need only PostgreSQL's programs: to install it without its default" >&2
        echo " cluster, first: echo 'create_main_cluster = false' |" \
            "sudo tee -a /etc/postgresql-common/createcluster.conf)" >&2
    fi
    exit 1
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
if [[ " ${need[*]} " == *" postgresql-15 "* ]]; then
    # Before postgresql-common is installed: no "main" cluster is created (its conffile is
    # kept as written here, --force-confold), and policy-rc.d forbids starting any service
    # while the packages install (invoke-rc.d honours exit status 101). Both only when absent.
    mkdir -p /etc/postgresql-common
    conf=/etc/postgresql-common/createcluster.conf
    [ -e "$conf" ] || printf 'create_main_cluster = false\n' >"$conf"
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold \
    "${need[@]}" >/dev/null
