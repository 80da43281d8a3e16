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
Which packages may import which, read from the sources (ast), imports inside functions too.

The 'where' (field/) and 'when' (temporal/) branches never import each other; what both need
of the bundle (the manifest, where layers live, writing layer files) is scene/'s, which imports
neither; st4r_ros/training.py trains both and sits above them, so none of the three imports it.
"""

import ast
from pathlib import Path
from typing import Set

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'st4r_ros'
# package -> the st4r_ros modules it must not import (each with its submodules)
FORBIDDEN = {
    'field': ('st4r_ros.temporal', 'st4r_ros.training'),
    'temporal': ('st4r_ros.field', 'st4r_ros.training'),
    'scene': ('st4r_ros.field', 'st4r_ros.temporal', 'st4r_ros.training'),
}


def imported_modules(source: str, module: str) -> Set[str]:
    """
    Return the absolute names ``module``'s source imports, 'from a import b' as a.b too.

    :param module: the importing module's dotted name (resolves relative imports).
    """
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parent = module.split('.')[:-node.level]
                base = '.'.join(parent + ([base] if base else []))
            names.add(base)
            # 'from st4r_ros import field' imports the package st4r_ros.field
            names |= {f'{base}.{alias.name}' for alias in node.names}
    return names


def module_name(path: Path) -> str:
    """Return the dotted name of ``path``, '__init__' kept: relative imports start beside it."""
    return '.'.join(path.relative_to(PACKAGE.parent).with_suffix('').parts)


def violations(package: str) -> Set[str]:
    """Return 'file imports module' for every forbidden import under st4r_ros/<package>/."""
    found = set()
    for path in sorted((PACKAGE / package).rglob('*.py')):
        for name in imported_modules(path.read_text(), module_name(path)):
            if any(name == banned or name.startswith(banned + '.')
                   for banned in FORBIDDEN[package]):
                found.add(f'{path.relative_to(PACKAGE.parent)} imports {name}')
    return found


@pytest.mark.parametrize('package', sorted(FORBIDDEN))
def test_the_package_imports_none_of_its_forbidden_modules(package):
    assert (PACKAGE / package / '__init__.py').is_file()
    assert violations(package) == set()


def test_the_reading_sees_every_kind_of_import():
    source = '''
import st4r_ros.temporal.layer
from st4r_ros import field


def lazy():
    from st4r_ros.training import train_main
    from ..temporal import layer
'''
    names = imported_modules(source, 'st4r_ros.field.train')
    assert {'st4r_ros.temporal.layer', 'st4r_ros.field', 'st4r_ros.training',
            'st4r_ros.temporal'} <= names  # the last from the relative import, resolved
    assert imported_modules('from . import layer', 'st4r_ros.scene.__init__') == {
        'st4r_ros.scene', 'st4r_ros.scene.layer'}
