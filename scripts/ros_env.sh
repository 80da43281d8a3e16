#!/usr/bin/env bash
# The environment of st4r_ros in ROS 2 from the PyPI wheels: the project's venv, then the
# workspace scripts/ros_workspace.sh built (install/setup.bash, as in any colcon workspace).
#
#   source scripts/ros_env.sh          # this shell: st4r_node, st4r, import st4r_ros.msg
#   scripts/ros_env.sh COMMAND ...     # one command in it
_st4r_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_st4r_venv=${VENV:-.venv}
_st4r_ws=${ROS_WS:-ros_ws}
case "$_st4r_venv" in /*) ;; *) _st4r_venv="$_st4r_root/$_st4r_venv" ;; esac
case "$_st4r_ws" in /*) ;; *) _st4r_ws="$_st4r_root/$_st4r_ws" ;; esac
if [ ! -f "$_st4r_ws/install/setup.bash" ]; then
  echo "st4r: no ROS 2 workspace at $_st4r_ws: run \`make ros\` first" >&2
  return 2 2>/dev/null || exit 2
fi
export VIRTUAL_ENV="$_st4r_venv" PATH="$_st4r_venv/bin:$PATH"
# setup.bash reads unset variables; it must not run under `set -u`.
case $- in *u*) set +u; source "$_st4r_ws/install/setup.bash"; set -u ;;
  *) source "$_st4r_ws/install/setup.bash" ;; esac
unset _st4r_root _st4r_venv _st4r_ws
if [ "${BASH_SOURCE[0]}" = "$0" ] && [ $# -gt 0 ]; then
  exec "$@"
fi
