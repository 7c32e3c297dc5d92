#!/usr/bin/env bash
# Set up perception in a virtual environment (default ./.venv), CPU build of PyTorch first.
#
#   bash tools/setup.sh                 # .venv with the package and its dev tools
#   VENV=/path/to/env bash tools/setup.sh
#   TORCH_SPEC="torch" bash tools/setup.sh          # GPU machines: let pip pick the CUDA build
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash tools/setup.sh   # CPU build from PyTorch's index
#
# Idempotent: a second run only checks that everything is installed (a few seconds).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
VENV="${VENV:-.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
PYTHON="${PYTHON:-}"

say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# 1. Debian libraries Open3D needs to import (libusb) and to render headless through EGL/Mesa.
debs=(libusb-1.0-0 libgl1 libegl1 libegl-mesa0 libgl1-mesa-dri libgomp1)
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian packages for Open3D: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    say "installing Debian packages for Open3D: ${missing[*]}"
    sudo apt-get update -qq >/dev/null
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "WARNING: Open3D needs these Debian packages: ${missing[*]}"
    say "         install them with: sudo apt-get install ${missing[*]}"
  fi
fi

# 2. A Python >= 3.11 virtual environment.
if [ -z "$PYTHON" ]; then
  for cand in python3.11 python3.12 python3 python; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PYTHON="$cand"
      break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "setup: Python >= 3.11 is required" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
pip=("$VENV/bin/python" -m pip install -q)

# 3. PyTorch first, so the package's plain `torch` requirement is already met (no CUDA download on a
#    CPU machine), then the package itself with its dev tools.
if ! "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
  say "installing $TORCH_SPEC"
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "${pip[@]}" "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"
  else
    "${pip[@]}" "$TORCH_SPEC"
  fi
fi
say "installing perception[dev] (editable)"
"${pip[@]}" -e ".[dev]"
say "ready: $("$VENV/bin/python" -c 'import torch, perception; print(f"perception {perception.__version__}, torch {torch.__version__}")')"
