#!/usr/bin/env bash
# Install the built .deb and smoke the *installed* app (called by `make package-smoke` / .ci/run after
# `make package`): --version, --smoke offscreen, --smoke on Xvfb with a real screenshot, and one
# scripted turn against the bundled `slipstream serve`. Root, no display, no stdin. ~15 s.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
step() { echo "=== package-smoke [$((SECONDS - t0))s] $*"; }
export DEBIAN_FRONTEND=noninteractive
PY=${PY:-.venv/bin/python}
OUT=$(pwd)/dist

shopt -s nullglob
debs=(dist/slipstream_*.deb)
[ ${#debs[@]} -eq 1 ] || { echo "package-smoke: want exactly one dist/slipstream_*.deb, found ${#debs[@]}" >&2; exit 1; }
DEB=$(pwd)/${debs[0]}

step "apt-get install $DEB"
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
# --reinstall: the same version may be installed from an earlier build. Depends not yet on the
# machine (libwayland-cursor0, ...) need the package lists: update once only if the first try fails.
if ! $SUDO apt-get install -y -qq --reinstall --no-install-recommends "$DEB" >/tmp/slipstream-apt.log 2>&1; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --reinstall --no-install-recommends "$DEB" >/tmp/slipstream-apt.log 2>&1 \
    || { cat /tmp/slipstream-apt.log >&2; exit 1; }
fi
BIN=$(command -v slipstream)
[ "$(readlink -f "$BIN")" = /opt/slipstream/slipstream ] || { echo "slipstream on PATH is $BIN, not the package's" >&2; exit 1; }
# (not `dpkg -L | grep -q`: grep exits early, dpkg dies of SIGPIPE and pipefail fails the step)
files=$(dpkg -L slipstream)
grep -qx '/usr/share/applications/slipstream.desktop' <<<"$files"
grep -qx '/usr/share/icons/hicolor/256x256/apps/slipstream.png' <<<"$files"

step "slipstream --version"
want=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
got=$(cd / && slipstream --version)
echo "$got"
[ "$got" = "slipstream $want" ] || { echo "version mismatch: want $want" >&2; exit 1; }

# A small project to open (the smoke must not watch this repository and its .venv).
PROJ=$(mktemp -d /tmp/slipstream-smoke.XXXXXX)
trap 'rm -rf "$PROJ"' EXIT
printf 'def add(a, b):\n    return a + b\n' > "$PROJ/calc.py"
printf 'from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n' > "$PROJ/test_calc.py"

if [ -f app/ui/smoke.py ]; then
  step "slipstream --smoke (offscreen)"
  (cd "$PROJ" && QT_QPA_PLATFORM=offscreen timeout -k 5 60 slipstream "$PROJ" --smoke)
  step "slipstream --smoke --screen --screenshot (Xvfb, xcb)"
  rm -f "$OUT/screenshot.png"
  (cd "$PROJ" && xvfb-run -a -s "-screen 0 1280x800x24" env QT_QPA_PLATFORM=xcb \
     timeout -k 5 60 slipstream "$PROJ" --smoke --screen --screenshot "$OUT/screenshot.png")
  [ -s "$OUT/screenshot.png" ] || { echo "no screenshot written" >&2; exit 1; }
  ls -la "$OUT/screenshot.png"
else
  echo "package-smoke: SKIPPED --smoke offscreen/Xvfb: app/ui/smoke.py does not exist yet"
fi

step "bundled 'slipstream serve' answers one scripted turn"
"$PY" packaging/smoke_turn.py "$BIN" --timeout 30

step "ok"
