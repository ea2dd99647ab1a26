#!/usr/bin/env bash
# Debian's Chromium for the review UI's browser tests (Playwright drives it; Playwright's own
# browser downloads are never used).  deploy/chromium.sh install
# Installs the package with apt-get when /usr/bin/chromium is missing (needs root or
# passwordless sudo); a no-op when it is there.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

chromium_install() {
    [[ -x /usr/bin/chromium ]] && return 0
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        if ! { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; then
            die "chromium is missing and apt-get needs root: run 'sudo apt-get install -y chromium'"
        fi
        sudo=(sudo -n)
    fi
    need_cmd apt-get "install Chromium with your package manager (/usr/bin/chromium)"
    note "chromium: installing Debian's chromium with apt-get ..."
    mkdir -p "$LOG_DIR"
    local alog=$LOG_DIR/chromium-install.log
    export DEBIAN_FRONTEND=noninteractive
    if ! "${sudo[@]}" apt-get install -y -q chromium >"$alog" 2>&1 </dev/null; then
        "${sudo[@]}" apt-get update -q >>"$alog" 2>&1 </dev/null || true
        "${sudo[@]}" apt-get install -y -q chromium >>"$alog" 2>&1 </dev/null \
            || { tail -n 20 "$alog" >&2; die "chromium: apt-get install chromium failed (log: $alog)"; }
    fi
    [[ -x /usr/bin/chromium ]] || die "chromium: /usr/bin/chromium still missing after apt-get"
    note "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo installed)"
}

case "${1:-install}" in
    install) chromium_install ;;
    *) die "usage: deploy/chromium.sh install" ;;
esac
