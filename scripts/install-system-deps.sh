#!/usr/bin/env bash
# Install the system packages `make test` needs when they are missing: a Chromium, for the web-page test, and a
# container engine for the image test (tests/test_image.py): Podman with runc and slirp4netns, unless a Docker
# daemon answers, and mmdebstrap for a stand-in base image when the real one cannot be pulled.
# Everything else (shellcheck, hadolint, ruff) comes from pinned wheels in .venv.
# Non-interactive apt-get; as non-root it uses passwordless sudo, and otherwise says what to install.
set -euo pipefail

# Any of these browsers will do (tests/workload/test_page.py takes the first on PATH); only Debian's
# `chromium` is installed when none is there.
missing=(chromium)
for browser in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$browser" >/dev/null; then
        missing=()
        break
    fi
done
if ! docker info >/dev/null 2>&1; then
    # Podman picks crun over runc when both are installable, and crun fails on some machines' cgroups:
    # scripts/build_image.py runs Podman with runc. The image test reaches the host's loopback via slirp4netns.
    for command in podman runc slirp4netns; do
        command -v "$command" >/dev/null || missing+=("$command")
    done
fi
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "warning: missing system packages: ${missing[*]} (not root, no passwordless sudo): tests that need them will be skipped" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "warning: missing system packages: ${missing[*]} (no apt-get here): tests that need them will be skipped" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
# Debian has a `chromium` package; Ubuntu has none (GitHub's Ubuntu runners ship Google Chrome instead).
installable=()
for package in "${missing[@]}"; do
    if apt-cache show "$package" >/dev/null 2>&1; then
        installable+=("$package")
    else
        echo "warning: no apt package '$package' here: tests that need it will be skipped" >&2
    fi
done
if [ "${#installable[@]}" -gt 0 ]; then
    echo "installing system packages: ${installable[*]}"
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${installable[@]}"
fi
