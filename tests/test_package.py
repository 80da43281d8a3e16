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
what `ros2 run` and `ros2 launch` need. package.xml runs with exactly the ROS packages the code
uses.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys

import pytest
from ros_tools import REPO, ros_tool, run_ros_python_json

# What each kind of dependency must include (package.xml may declare more).
REQUIRED_DEPENDS = {
    'buildtool': {'ament_cmake', 'ament_cmake_python', 'rosidl_default_generators'},
    # <depend>: build, build_export and exec.
    'depend': {'builtin_interfaces', 'std_msgs', 'geometry_msgs', 'sensor_msgs'},
    'exec': {
        'rosidl_default_runtime', 'rclpy', 'rcl_interfaces', 'lifecycle_msgs',
        'visualization_msgs', 'ament_index_python', 'launch', 'launch_ros', 'python3-numpy',
        'python3-yaml',
    },
    'test': {
        'ament_lint_auto', 'ament_flake8', 'ament_pep257', 'ament_copyright', 'ament_xmllint',
        'python3-pytest',
    },
}

# Declared run dependencies that neither the Python imports nor msg/ and srv/ name, and why.
NOT_IMPORTED = {
    'rosidl_default_runtime': 'the generated st4r_ros.msg and st4r_ros.srv need it at run time',
    'builtin_interfaces': "CMakeLists.txt finds it for the interfaces (std_msgs/Header's stamp)",
    'lifecycle_msgs': "the node's lifecycle services have its types (served by rclpy.lifecycle)",
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


def _interface_packages() -> set[str]:
    """Return the packages whose types msg/ and srv/ use."""
    used = set()
    for path in _interface_files():
        used |= set(re.findall(r'^\s*([a-z][a-z0-9_]*)/[A-Z]\w*', (REPO / path).read_text(), re.M))
    return used - {'st4r_ros'}


def _python_sources() -> list[Path]:
    """Return the Python that runs under ROS: the package, the scripts and the launch files."""
    scripts = [path for path in (REPO / 'scripts').iterdir()
               if path.read_text().startswith('#!/usr/bin/env python')]
    return [*(REPO / 'st4r_ros').rglob('*.py'), *scripts, *(REPO / 'launch').glob('*.py')]


def _imported_packages(path: Path) -> set[str]:
    """Return the top-level names of what `path` imports (its own relative imports aside)."""
    tree = ast.parse(path.read_text())
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    return {module.partition('.')[0] for module in modules}


@pytest.fixture(scope='module')
def ament_packages() -> set[str]:
    """Return the ament index's packages: each AMENT_PREFIX_PATH prefix's, the venv's (wheels)."""
    prefixes = {*os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep), sys.prefix} - {''}
    names = {path.name for prefix in prefixes
             for path in (Path(prefix) / 'share/ament_index/resource_index/packages').glob('*')}
    if 'rclpy' not in names:
        pytest.fail(f'no ament index here lists rclpy (prefixes: {sorted(prefixes)}): run the '
                    'tests under scripts/ros_env.sh or a sourced ROS 2', pytrace=False)
    return names


@pytest.fixture(scope='module')
def ros_imports(package, ament_packages) -> dict[str, set[str]]:
    """Map each ROS package the Python imports to the files that import it."""
    # launch and launch_ros have no wheels, so no index here: package.xml's names count too.
    ros_packages = (ament_packages | {name for names in package['depends'].values()
                                      for name in names}) - {'st4r_ros'}
    importers: dict[str, set[str]] = {}
    for path in _python_sources():
        for name in _imported_packages(path) & ros_packages:
            importers.setdefault(name, set()).add(path.relative_to(REPO).as_posix())
    return importers


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
    used = _interface_packages()
    assert used, 'the interfaces use no other package: the regular expression is broken'
    depends = package['depends']
    assert used <= set(depends['build']) & set(depends['exec']), 'package.xml'
    found = {arg.split()[0] for arg in _cmake_calls('find_package')}
    assert used <= found, f'CMakeLists.txt lacks find_package({sorted(used - found)})'
    generate = ' '.join(_cmake_calls('rosidl_generate_interfaces'))
    dependencies = set(generate.partition('DEPENDENCIES')[2].split())
    assert used <= dependencies, (
        f'rosidl_generate_interfaces DEPENDENCIES lacks {sorted(used - dependencies)}')


def test_every_imported_ros_package_is_a_run_dependency(package, ros_imports):
    undeclared = {name: sorted(files) for name, files in ros_imports.items()
                  if name not in package['depends']['exec']}
    assert not undeclared, f'package.xml lacks <exec_depend> (or <depend>) for {undeclared}'


def test_every_run_dependency_is_used(package, ros_imports):
    # python3-* keys are Python libraries (numpy, yaml ...), named differently when imported.
    ros_depends = {name for name in package['depends']['exec'] if not name.startswith('python3-')}
    assert set(NOT_IMPORTED) <= ros_depends, 'NOT_IMPORTED names a package package.xml lacks'
    unused = ros_depends - set(ros_imports) - _interface_packages() - set(NOT_IMPORTED)
    assert not unused, (f'package.xml declares {sorted(unused)}, which no code uses: drop them, '
                        'or say in NOT_IMPORTED why they are needed')


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
    # `ros2 run st4r_ros st4r_node` and `st4r` on PATH in a colcon install.
    assert re.search(r'install\s*\(\s*PROGRAMS\s+scripts/st4r_node\s+scripts/st4r\s+'
                     r'DESTINATION\s+lib/\$\{PROJECT_NAME\}\s*\)', _cmake_code())
    assert re.search(r'install\s*\(\s*PROGRAMS\s+scripts/st4r\s+DESTINATION\s+bin\s*\)',
                     _cmake_code())
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
