#!/usr/bin/env bash
# Installs the system programs that `make demo` and `make test` need and pip cannot give:
#   chromium    Debian's Chromium and a font: renders the report to PDF, drives the browser test
#   postgresql  a PostgreSQL server (initdb, pg_ctl): the production tests run Dagster on it
#   venv        Python's venv module (Debian's python3 ships it apart, as python3-venv)
# Usage: scripts/system-packages.sh [venv] [chromium] [postgresql]
# What is already there is left alone. What is missing is installed with apt-get when this user may
# (root, or sudo without a password); otherwise one line says what to install and why, and the
# script exits 1, so that nothing is skipped silently.
set -euo pipefail

have_chromium() {
    if [ -n "${INCIDENT_METRICS_CHROMIUM:-}" ]; then [ -x "$INCIDENT_METRICS_CHROMIUM" ]; return; fi
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
        || command -v google-chrome-stable >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1
}
have_fonts() { [ -n "$(fc-list 2>/dev/null)" ] || [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; }
have_postgresql() {
    if [ -n "${INCIDENT_METRICS_PG_BIN:-}" ]; then [ -x "$INCIDENT_METRICS_PG_BIN/initdb" ]; return; fi
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1
}

packages=""
why=""
for need in "$@"; do
    case "$need" in
        chromium)
            have_chromium || { packages="$packages chromium"; why="$why, Chromium (the PDF report and the browser test)"; }
            have_fonts || packages="$packages fonts-dejavu-core"
            ;;
        postgresql)
            have_postgresql || { packages="$packages postgresql"; why="$why, a PostgreSQL server (the production tests)"; }
            ;;
        venv)
            "${PYTHON:-python3}" -c 'import ensurepip' >/dev/null 2>&1 \
                || { packages="$packages python3-venv"; why="$why, Python's venv module (the .venv)"; }
            ;;
        *) echo "system-packages.sh: unknown need '$need' (venv, chromium, postgresql)" >&2; exit 2 ;;
    esac
done
[ -z "$packages" ] && exit 0
why="${why#, }"

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$SUDO" = "none" ]; then
    echo "missing:${packages} -- needed for ${why:-the report fonts}; install them (Debian/Ubuntu: sudo apt-get install${packages}; or set INCIDENT_METRICS_CHROMIUM / INCIDENT_METRICS_PG_BIN) and run make again" >&2
    exit 1
fi

echo "installing with apt-get:${packages} (${why:-the report fonts})"
# env, not export: sudo resets the environment, and a debconf prompt would wait unseen
APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get"
# shellcheck disable=SC2086
if ! $APT install -y -qq --no-install-recommends $packages >/dev/null 2>&1; then
    $APT update -qq
    # shellcheck disable=SC2086
    $APT install -y -qq --no-install-recommends $packages >/dev/null
fi
