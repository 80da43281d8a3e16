#!/usr/bin/env bash
# Create the project's virtual environment in $VENV (default .venv) and install st4r_ros into it.
# A CUDA machine keeps the torch it already has (the venv sees the system site-packages and
# gsplat is added); anywhere else torch comes in as the CPU build, so pip never pulls the
# CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

# The ROS 2 tools the interface and package tests run (rosidl translate/parser, catkin_pkg, the ament
# linters), from Debian/Ubuntu's own packages into the system python3. Only as root with apt-get,
# and never next to a ROS 2 install in /opt/ros: its python3-catkin-pkg-modules conflict with these
# packages, and sourcing its setup.bash provides the same tools. ST4R_NO_APT=1 skips this step.
ros_tools="python3-ament-flake8 python3-ament-pep257 python3-ament-copyright python3-ament-xmllint
  python3-rosidl rosidl-tools python3-catkin-pkg python3-empy python3-lark"
if [ -z "${ST4R_NO_APT:-}" ] && [ ! -d /opt/ros ] && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null && command -v dpkg-query >/dev/null; then
  missing=""
  for pkg in $ros_tools; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    echo "st4r: apt-get installing the ROS 2 interface and lint tools for the tests:$missing"
    # shellcheck disable=SC2086
    if ! { apt-get update -qq >/dev/null \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
          $missing >/dev/null; }; then
      echo "st4r: could not install them; tests/test_interfaces.py and tests/test_package.py will fail" >&2
    fi
  fi
fi

stamp="$VENV/.st4r-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt setup.py ]; then
  exit 0
fi

if "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "st4r: CUDA torch found: keeping it and adding gsplat"
  "$PYTHON" -m venv --system-site-packages "$VENV"
  extras="cuda,test"
else
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "torch==2.13.0+cpu"
  extras="test"
fi
"$VENV/bin/python" -m pip install -q -e ".[$extras]"
touch "$stamp"
