#!/usr/bin/env bash
# Build wasupd_<version>_<arch>.deb with dpkg-deb: the application in its own virtualenv under
# /opt/wasupd made from Debian's /usr/bin/python3, with this tree's wheel and its dependencies
# from PyPI (pip's cache is reused).
#
#   packaging/build-deb.sh OUTDIR        (make deb: OUTDIR=dist)
#
# PIP names a pip >= 22.3 to drive the install (default: the dev venv's); it installs into the
# staged venv with --python, so the wheels chosen are those for Debian's interpreter.
set -euo pipefail
umask 022

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(mkdir -p "${1:?usage: build-deb.sh OUTDIR}" && cd "$1" && pwd)"
PY=/usr/bin/python3
PIP="${PIP:-$ROOT/.venv/bin/python -m pip}"
[ -x "$PY" ] || { echo "build-deb: needs Debian's $PY (apt-get install python3 python3-venv)" >&2; exit 1; }

VERSION="$("$PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$ROOT/pyproject.toml")"
ARCH="$(dpkg --print-architecture)"
PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
PYNEXT="$("$PY" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')"

WORK="$(mktemp -d /tmp/wasupd-deb.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/wasupd_${VERSION}_${ARCH}"
VENV="$STAGE/opt/wasupd"

echo "build-deb: the wheel"
mkdir -p "$WORK/src" "$WORK/dist"
# Built from a copy, so setuptools' build/ and *.egg-info never land in the source tree.
cp -r "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/LICENSE" "$ROOT/wasupd" "$ROOT/wasupctl" "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
$PIP wheel -q --no-deps -w "$WORK/dist" "$WORK/src"

echo "build-deb: the virtualenv (Debian's python$PYVER) under /opt/wasupd"
"$PY" -m venv --without-pip "$VENV"
$PIP --python "$VENV/bin/python3" install -q --no-compile --no-warn-script-location "$WORK"/dist/wasupd-*.whl

echo "build-deb: man pages and completion from the commands' own help"
export PYTHONDONTWRITEBYTECODE=1
MAN="$STAGE/usr/share/man/man1"
"$VENV/bin/python3" "$ROOT/packaging/manpages.py" "$MAN"
gzip -9n "$MAN"/*.1
install -d "$STAGE/usr/share/bash-completion/completions" "$STAGE/usr/share/zsh/vendor-completions"
# Without this variable typer ignores the shell named and writes the script for the shell it
# detects among the build's parent processes.
export _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION=1
"$VENV/bin/wasupctl" --show-completion bash >"$STAGE/usr/share/bash-completion/completions/wasupctl"
"$VENV/bin/wasupctl" --show-completion zsh >"$STAGE/usr/share/zsh/vendor-completions/_wasupctl"
unset _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION
unset PYTHONDONTWRITEBYTECODE

echo "build-deb: paths of the staged venv made final"
rm -f "$VENV"/bin/activate* "$VENV"/bin/Activate.ps1
find "$VENV" -name direct_url.json -delete
find "$VENV" -name __pycache__ -prune -exec rm -rf {} +
# The shared libraries manylinux wheels vendor (psycopg-binary's libpq and its TLS and Kerberos
# libraries, in <pkg>.libs/) come with the execute bit, which Debian policy wants off for
# libraries; they are loaded, never run, and the wheels' RECORD hashes only their contents.
find "$VENV/lib" -path '*.libs/*.so*' -type f -perm /111 -exec chmod 0644 {} +
for f in "$VENV"/bin/*; do  # the scripts; python* are symlinks to Debian's interpreter
    [ -L "$f" ] || sed -i "1s|^#!$VENV/bin/|#!/opt/wasupd/bin/|" "$f"
done
sed -i "s|$VENV|/opt/wasupd|g" "$VENV/pyvenv.cfg"
# Compiled now, named by their final paths, and checked by hash rather than mtime (dpkg-deb
# may clamp mtimes), so nothing is ever written under /opt at run time.
"$PY" -m compileall -q -j0 --invalidation-mode unchecked-hash -s "$STAGE" -p / "$VENV/lib"
if grep -rlF "$WORK" "$STAGE" >"$WORK/leaks"; then
    echo "build-deb: the staging path is left in:" >&2; cat "$WORK/leaks" >&2; exit 1
fi

echo "build-deb: commands, units, snippets, config, docs"
install -d "$STAGE/usr/bin"
ln -s /opt/wasupd/bin/wasupd "$STAGE/usr/bin/wasupd"
ln -s /opt/wasupd/bin/wasupctl "$STAGE/usr/bin/wasupctl"
# bookworm's dpkg still ships units under /lib (the /usr move waits for trixie).
install -D -m 0644 -t "$STAGE/lib/systemd/system" "$ROOT"/systemd/wasupd.service \
    "$ROOT"/systemd/wasupd-backup.service "$ROOT"/systemd/wasupd-backup.timer
install -D -m 0644 "$ROOT/systemd/wasupd.sysusers" "$STAGE/usr/lib/sysusers.d/wasupd.conf"
install -D -m 0644 "$ROOT/systemd/wasupd.tmpfiles" "$STAGE/usr/lib/tmpfiles.d/wasupd.conf"
install -D -m 0644 "$ROOT/etc/wasupd.toml" "$STAGE/etc/wasupd/wasupd.toml"
DOC="$STAGE/usr/share/doc/wasupd"
install -D -m 0644 -t "$DOC" "$ROOT/README.md"
install -D -m 0644 -t "$DOC/docs" "$ROOT"/docs/*.md
if [ -d "$ROOT/docs/img" ]; then install -D -m 0644 -t "$DOC/docs/img" "$ROOT"/docs/img/*; fi
{
    sed '/^@MIT@$/,$d' "$ROOT/packaging/debian/copyright"
    sed -e 's/^$/./' -e 's/^/ /' "$ROOT/LICENSE"
} >"$DOC/copyright"
printf 'wasupd (%s) unstable; urgency=medium\n\n  * Package built from the wasupd source tree.\n\n -- wasupd maintainers <maintainers@users.noreply.r-seed-396f1706.example>  %s\n' \
    "$VERSION" "$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}")" \
    | gzip -9n >"$DOC/changelog.gz"
install -D -m 0644 "$ROOT/packaging/debian/lintian-overrides" "$STAGE/usr/share/lintian/overrides/wasupd"

echo "build-deb: control files"
install -d "$STAGE/DEBIAN"
install -m 0755 -t "$STAGE/DEBIAN" "$ROOT"/packaging/debian/{postinst,prerm,postrm}
echo /etc/wasupd/wasupd.toml >"$STAGE/DEBIAN/conffiles"
SIZE="$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)"
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE/" \
    -e "s/@PYTHON_DEPENDS@/python3 (>= $PYVER), python3 (<< $PYNEXT)/" \
    "$ROOT/packaging/debian/control.in" >"$STAGE/DEBIAN/control"

DEB="$OUT/wasupd_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
