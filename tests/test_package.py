# Copyright 2026 The st4r_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
The ROS 2 package: package.xml and CMakeLists.txt, checked with the real ROS 2 tools.

catkin_pkg (what colcon and rosdep read package.xml with) and ament_xmllint (the format 3 schema)
validate package.xml; CMakeLists.txt must register every interface file, keep the Python install
that works next to rosidl (no ament_python_install_package: ros2/rosidl_python#141) and install
what `ros2 run` and `ros2 launch` need.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess

import pytest
from ros_tools import REPO, ros_tool, run_ros_python_json

# What each kind of dependency must include (package.xml may declare more).
REQUIRED_DEPENDS = {
    'buildtool': {'ament_cmake', 'ament_cmake_python', 'rosidl_default_generators'},
    # <depend>: build, build_export and exec.
    'depend': {'builtin_interfaces', 'std_msgs', 'geometry_msgs', 'sensor_msgs'},
    'exec': {
        'rosidl_default_runtime', 'rclpy', 'visualization_msgs', 'cv_bridge', 'sensor_msgs_py',
        'launch', 'launch_ros', 'python3-numpy', 'python3-yaml',
    },
    'test': {
        'ament_lint_auto', 'ament_flake8', 'ament_pep257', 'ament_copyright', 'ament_xmllint',
        'python3-pytest',
    },
}

_PARSE_PACKAGE_XML = r"""
import json, sys
from catkin_pkg.package import InvalidPackage, parse_package
pkg = parse_package(sys.argv[1])
pkg.evaluate_conditions({})
try:
    pkg.validate()
    errors = []
except InvalidPackage as exc:
    errors = [str(exc)]
kinds = ["buildtool", "build", "build_export", "exec", "test", "doc"]
print(json.dumps({
    "format": pkg.package_format,
    "name": pkg.name,
    "version": pkg.version,
    "build_type": pkg.get_build_type(),
    "groups": [g.name for g in pkg.member_of_groups],
    "depends": {k: [d.name for d in getattr(pkg, k + "_depends") if d.evaluated_condition]
                for k in kinds},
    "errors": errors,
}))
"""


@pytest.fixture(scope='module')
def package() -> dict:
    return run_ros_python_json(_PARSE_PACKAGE_XML, str(REPO / 'package.xml'))


def _cmake_code() -> str:
    """CMakeLists.txt without comments."""
    return re.sub(r'#[^\n]*', '', (REPO / 'CMakeLists.txt').read_text())


def _cmake_calls(name: str) -> list[str]:
    """Return the argument text of every call of the CMake command `name`."""
    return re.findall(rf'\b{name}\s*\(([^)]*)\)', _cmake_code(), flags=re.I)


def _interface_files() -> list[str]:
    return sorted(p.relative_to(REPO).as_posix()
                  for p in [*(REPO / 'msg').glob('*.msg'), *(REPO / 'srv').glob('*.srv')])


def _setup_py_version() -> str:
    tree = ast.parse((REPO / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'setup':
            for keyword in node.keywords:
                if keyword.arg == 'version':
                    return ast.literal_eval(keyword.value)
    raise AssertionError('setup.py: no setup(version=...) found')


def test_package_xml_is_a_valid_format_3_ament_cmake_interface_package(package):
    assert package['errors'] == []
    assert package['format'] == 3
    assert package['name'] == 'st4r_ros'
    assert package['build_type'] == 'ament_cmake'
    assert 'rosidl_interface_packages' in package['groups']


def test_versions_agree(package):
    import st4r_ros

    assert package['version'] == _setup_py_version() == st4r_ros.__version__


def test_required_dependencies_are_declared(package):
    declared = {kind: set(names) for kind, names in package['depends'].items()}
    missing = {
        'buildtool': REQUIRED_DEPENDS['buildtool'] - declared['buildtool'],
        'depend': {d for d in REQUIRED_DEPENDS['depend']
                   if not {d} <= declared['build'] & declared['build_export'] & declared['exec']},
        'exec': REQUIRED_DEPENDS['exec'] - declared['exec'],
        'test': REQUIRED_DEPENDS['test'] - declared['test'],
    }
    assert not any(missing.values()), f'package.xml lacks: {missing}'


def test_every_package_the_interfaces_use_is_declared_and_found(package):
    used = set()
    for path in _interface_files():
        used |= set(re.findall(r'^\s*([a-z][a-z0-9_]*)/[A-Z]\w*', (REPO / path).read_text(), re.M))
    used -= {'st4r_ros'}
    assert used, 'the interfaces use no other package: the regular expression is broken'
    depends = package['depends']
    assert used <= set(depends['build']) & set(depends['exec']), 'package.xml'
    found = {arg.split()[0] for arg in _cmake_calls('find_package')}
    assert used <= found, f'CMakeLists.txt lacks find_package({sorted(used - found)})'
    generate = ' '.join(_cmake_calls('rosidl_generate_interfaces'))
    dependencies = set(generate.partition('DEPENDENCIES')[2].split())
    assert used <= dependencies, (
        f'rosidl_generate_interfaces DEPENDENCIES lacks {sorted(used - dependencies)}')


def test_ament_xmllint_accepts_package_xml():
    proc = subprocess.run([ros_tool('ament_xmllint'), 'package.xml'], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ament_xmllint_checks_the_schema(tmp_path):
    """The lint is real: an element the format 3 schema does not allow fails it."""
    broken = (REPO / 'package.xml').read_text().replace(
        '<license>', '<licence>Apache-2.0</licence>\n  <license>', 1)
    (tmp_path / 'package.xml').write_text(broken)
    proc = subprocess.run([ros_tool('ament_xmllint'), 'package.xml'], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0, proc.stdout


def test_cmake_lists_registers_exactly_the_interface_files():
    generate = _cmake_calls('rosidl_generate_interfaces')
    assert len(generate) == 1, 'expected one rosidl_generate_interfaces call'
    listed = sorted(re.findall(r"""["']?((?:msg|srv)/\w+\.(?:msg|srv))["']?""", generate[0]))
    assert listed == _interface_files(), (
        "CMakeLists.txt's rosidl_generate_interfaces must list every file in msg/ and srv/, "
        f'and nothing else: listed {listed}, on disk {_interface_files()}')


def test_cmake_lists_installs_python_sources_without_ament_python_install_package():
    code = _cmake_code()
    assert not re.search(r'\bament_python_install_package\s*\(', code, re.I), (
        'ament_python_install_package clashes with rosidl_generate_interfaces '
        '(ros2/rosidl_python#141): install st4r_ros with install(DIRECTORY ...)')
    python_install = re.search(
        r'\binstall\s*\(\s*DIRECTORY\s+st4r_ros\s+DESTINATION\s+\$\{PYTHON_INSTALL_DIR\}', code)
    assert python_install, 'install(DIRECTORY st4r_ros DESTINATION ${PYTHON_INSTALL_DIR}) missing'
    # Install rules run in order: after rosidl's, so our __init__.py replaces its empty one.
    assert code.index('rosidl_generate_interfaces') < python_install.start()
    assert re.search(r'\bfind_package\s*\(\s*ament_cmake_python\b', code)


def test_cmake_lists_installs_only_folders_that_exist():
    share = [call.split('DESTINATION')[0].split()[1:] for call in _cmake_calls('install')
             if re.search(r'DESTINATION\s+share/\$\{PROJECT_NAME\}', call)
             and call.split()[0] == 'DIRECTORY']
    installed = {d for call in share for d in call}
    assert {'launch', 'config', 'models'} <= installed
    assert re.search(r'install\s*\(\s*PROGRAMS\s+scripts/st4r_node\s+DESTINATION\s+'
                     r'lib/\$\{PROJECT_NAME\}\s*\)', _cmake_code())
    # install(DIRECTORY) of a missing folder breaks `colcon build`.
    missing = sorted(d for d in installed if not (REPO / d).is_dir())
    assert not missing, f'CMakeLists.txt installs folders that do not exist: {missing}'


def test_no_python_package_shadows_the_generated_interfaces():
    for name in ('msg', 'srv'):
        assert not (REPO / 'st4r_ros' / name).exists(), (
            f'st4r_ros/{name}/ is reserved for the interfaces rosidl generates')


def test_ros_tool_lookup_fails_clearly_when_a_tool_is_missing(monkeypatch):
    from ros_tools import ros_tool as lookup

    monkeypatch.setattr(shutil, 'which', lambda name: None)
    with pytest.raises(pytest.fail.Exception, match='bootstrap.sh'):
        lookup('ament_xmllint')
