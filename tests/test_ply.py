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

"""Inria 3DGS PLY I/O: layout, round trips and every bad-input case."""

from dataclasses import replace

from gaussians_fixture import make_gaussians
import numpy as np
import plyfile
import pytest
from st4r_ros.errors import SceneFormatError
from st4r_ros.limits import MAX_GAUSSIANS
from st4r_ros.scene import ply
from st4r_ros.scene.gaussians import Gaussians
from st4r_ros.scene.loading import load_scene
from st4r_ros.scene.ply import RawGaussians, read_ply, write_ply
import torch

INRIA_HEAD = ['x', 'y', 'z', 'nx', 'ny', 'nz', 'f_dc_0', 'f_dc_1', 'f_dc_2']
INRIA_TAIL = ['opacity', 'scale_0', 'scale_1', 'scale_2', 'rot_0', 'rot_1', 'rot_2', 'rot_3']


def raw_gaussians(n=6, degree=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    return RawGaussians(
        means=torch.randn(n, 3, generator=gen),
        quats_raw=torch.randn(n, 4, generator=gen),
        log_scales=torch.randn(n, 3, generator=gen) - 3,
        opacity_logits=torch.randn(n, generator=gen),
        sh=torch.randn(n, k, 3, generator=gen),
    )


def write_columns(path, columns, extra_elements=(), text=False):
    """Write a PLY whose 'vertex' element has exactly ``columns`` (name -> array)."""
    n = len(next(iter(columns.values())))
    vertices = np.empty(n, dtype=[(name, '<f4') for name in columns])
    for name, values in columns.items():
        vertices[name] = values
    elements = [plyfile.PlyElement.describe(vertices, 'vertex'), *extra_elements]
    plyfile.PlyData(elements, text=text).write(str(path))


def valid_columns(n=4, rest=45):
    names = INRIA_HEAD + [f'f_rest_{i}' for i in range(rest)] + INRIA_TAIL
    rng = np.random.default_rng(0)
    return {name: rng.normal(size=n).astype(np.float32) for name in names}


def test_layout_is_inria_order_binary_little_endian_channel_major(tmp_path):
    raw = raw_gaussians(n=5, degree=3)
    path = tmp_path / 'a.ply'
    write_ply(path, raw)
    ply = plyfile.PlyData.read(str(path))
    vertex = ply['vertex']
    assert [p.name for p in vertex.properties] == (
        INRIA_HEAD + [f'f_rest_{i}' for i in range(45)] + INRIA_TAIL
    )
    assert all(p.val_dtype in ('f4', 'float32') for p in vertex.properties)
    assert not ply.text and ply.byte_order == '<'
    assert np.all(vertex['nx'] == 0) and np.all(vertex['nz'] == 0)
    # f_rest_{c * 15 + j} holds coefficient j + 1 of channel c.
    for channel in range(3):
        for j in range(15):
            np.testing.assert_array_equal(
                vertex[f'f_rest_{channel * 15 + j}'], raw.sh[:, 1 + j, channel].numpy()
            )
    np.testing.assert_array_equal(vertex['opacity'], raw.opacity_logits.numpy())
    np.testing.assert_array_equal(vertex['scale_1'], raw.log_scales[:, 1].numpy())
    np.testing.assert_array_equal(vertex['rot_0'], raw.quats_raw[:, 0].numpy())


@pytest.mark.parametrize('degree', [0, 1, 2, 3])
def test_raw_round_trip_is_exact(tmp_path, degree):
    raw = raw_gaussians(degree=degree)
    write_ply(tmp_path / 'r.ply', raw)
    back = read_ply(tmp_path / 'r.ply')
    assert back.sh_degree == degree
    for name in ('means', 'quats_raw', 'log_scales', 'opacity_logits', 'sh'):
        assert getattr(back, name).dtype == torch.float32
        assert torch.equal(getattr(back, name), getattr(raw, name)), name


def test_activated_round_trip_and_extreme_opacities_stay_finite(tmp_path):
    n = 6
    gaussians = Gaussians(
        means=torch.randn(n, 3),
        quats=torch.nn.functional.normalize(torch.randn(n, 4), dim=1),
        scales=torch.rand(n, 3) + 0.01,
        opacities=torch.tensor([0.0, 1.0, 0.5, 1e-3, 0.999, 0.3]),
        sh=torch.randn(n, 16, 3),
    )
    write_ply(tmp_path / 'g.ply', gaussians)
    raw = read_ply(tmp_path / 'g.ply')
    assert torch.isfinite(raw.opacity_logits).all()
    back = raw.activate()
    torch.testing.assert_close(back.means, gaussians.means, rtol=0, atol=0)
    torch.testing.assert_close(back.quats, gaussians.quats, rtol=0, atol=1e-6)
    torch.testing.assert_close(back.scales, gaussians.scales, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(back.opacities, gaussians.opacities, rtol=0, atol=2e-6)
    torch.testing.assert_close(back.sh, gaussians.sh, rtol=0, atol=0)


def test_activate_uses_the_3dgs_activations():
    raw = raw_gaussians(n=3)
    g = raw.activate()
    torch.testing.assert_close(g.quats, raw.quats_raw / raw.quats_raw.norm(dim=1, keepdim=True))
    torch.testing.assert_close(g.scales, raw.log_scales.exp())
    torch.testing.assert_close(g.opacities, 1 / (1 + torch.exp(-raw.opacity_logits)))
    assert g.sh is raw.sh


def test_extra_properties_are_ignored_and_normals_optional(tmp_path):
    columns = valid_columns(rest=9)
    for name in ('nx', 'ny', 'nz'):
        del columns[name]
    columns['semantic_0'] = np.ones(4, dtype=np.float32)
    write_columns(tmp_path / 'e.ply', columns)
    raw = read_ply(tmp_path / 'e.ply')
    assert raw.sh.shape == (4, 4, 3)
    np.testing.assert_array_equal(raw.sh[:, 1:, 2].numpy(), np.stack(
        [columns[f'f_rest_{6 + j}'] for j in range(3)], axis=1))


def test_ascii_ply_reads(tmp_path):
    columns = valid_columns(rest=0)
    write_columns(tmp_path / 't.ply', columns, text=True)
    assert len(read_ply(tmp_path / 't.ply')) == 4


def test_missing_file(tmp_path):
    with pytest.raises(SceneFormatError, match='nope.ply: PLY file not found'):
        read_ply(tmp_path / 'nope.ply')


def test_not_a_ply(tmp_path):
    path = tmp_path / 'junk.ply'
    path.write_bytes(b'\xff\xfe garbage, not a ply\n' * 4)
    with pytest.raises(SceneFormatError, match='junk.ply: not a readable PLY'):
        read_ply(path)


def test_truncated_body(tmp_path):
    path = tmp_path / 'cut.ply'
    write_ply(path, raw_gaussians(n=10))
    data = path.read_bytes()
    path.write_bytes(data[:-37])
    with pytest.raises(SceneFormatError, match='cut.ply: not a readable PLY.*truncated'):
        read_ply(path)


def test_truncated_header(tmp_path):
    path = tmp_path / 'head.ply'
    write_ply(path, raw_gaussians(n=2))
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(SceneFormatError, match='head.ply'):
        read_ply(path)


def test_no_vertex_element(tmp_path):
    faces = np.zeros(2, dtype=[('a', '<f4')])
    path = tmp_path / 'faces.ply'
    plyfile.PlyData([plyfile.PlyElement.describe(faces, 'face')]).write(str(path))
    message = r"faces.ply: no 'vertex' element \(found \['face'\]\)"
    with pytest.raises(SceneFormatError, match=message):
        read_ply(path)


def test_missing_properties_are_listed(tmp_path):
    columns = valid_columns()
    del columns['opacity'], columns['rot_2']
    write_columns(tmp_path / 'm.ply', columns)
    with pytest.raises(SceneFormatError) as info:
        read_ply(tmp_path / 'm.ply')
    message = str(info.value)
    assert 'm.ply' in message and "['opacity', 'rot_2']" in message and 'expected' in message


def test_gap_in_f_rest_is_a_missing_property(tmp_path):
    columns = valid_columns(rest=9)
    columns['f_rest_9'] = columns.pop('f_rest_5')
    write_columns(tmp_path / 'gap.ply', columns)
    with pytest.raises(SceneFormatError, match=r"lacks properties \['f_rest_5'\]"):
        read_ply(tmp_path / 'gap.ply')


@pytest.mark.parametrize('rest', [10, 12, 3])
def test_f_rest_count_must_match_an_sh_degree(tmp_path, rest):
    write_columns(tmp_path / 'f.ply', valid_columns(rest=rest))
    message = rf"f.ply: {rest} 'f_rest_\*' properties; expected 3 \* \(\(d \+ 1\)\^2 - 1\)"
    with pytest.raises(SceneFormatError, match=message):
        read_ply(tmp_path / 'f.ply')


@pytest.mark.parametrize('name, value', [
    ('scale_1', np.nan), ('x', np.inf), ('f_rest_7', -np.inf),
])
def test_non_finite_values_name_the_property(tmp_path, name, value):
    columns = valid_columns()
    columns[name][2] = value
    write_columns(tmp_path / 'nan.ply', columns)
    with pytest.raises(SceneFormatError, match=rf"nan.ply: property '{name}' has 1 NaN or inf"):
        read_ply(tmp_path / 'nan.ply')


def test_list_property_is_refused(tmp_path):
    columns = valid_columns(n=2, rest=0)
    del columns['opacity']
    names = list(columns)
    dtype = [(name, '<f4') for name in names] + [('opacity', 'O')]
    vertices = np.empty(2, dtype=dtype)
    for name in names:
        vertices[name] = columns[name]
    vertices['opacity'] = [np.zeros(2, np.float32), np.zeros(2, np.float32)]
    element = plyfile.PlyElement.describe(vertices, 'vertex', len_types={'opacity': 'u1'},
                                          val_types={'opacity': 'f4'})
    plyfile.PlyData([element]).write(str(tmp_path / 'list.ply'))
    with pytest.raises(SceneFormatError, match="property 'opacity' is a list"):
        read_ply(tmp_path / 'list.ply')


def test_raw_gaussians_validate_shapes():
    raw = raw_gaussians(n=3)
    message = r'RawGaussians.opacity_logits: expected shape \(3,\)'
    with pytest.raises(SceneFormatError, match=message):
        RawGaussians(raw.means, raw.quats_raw, raw.log_scales, raw.opacity_logits[:, None], raw.sh)
    with pytest.raises(SceneFormatError, match=r'RawGaussians.sh: expected shape \(3, K, 3\)'):
        RawGaussians(raw.means, raw.quats_raw, raw.log_scales, raw.opacity_logits, raw.sh[..., :2])
    with pytest.raises(SceneFormatError, match='sh: 5 coefficients per channel'):
        RawGaussians(raw.means, raw.quats_raw, raw.log_scales, raw.opacity_logits, raw.sh[:, :5])


# --- one check for a PLY read, a sequence's frames and a PLY written --------------------------

def poked(raw, row, values):
    """``raw`` with log scales and quaternion components set at ``row`` (PLY names)."""
    log_scales, quats = raw.log_scales.clone(), raw.quats_raw.clone()
    for name, value in values.items():
        (log_scales if name.startswith('scale') else quats)[row, int(name[-1])] = value
    return replace(raw, log_scales=log_scales, quats_raw=quats)


ZERO_QUATERNION = {'rot_0': 0.0, 'rot_1': 0.0, 'rot_2': 0.0, 'rot_3': 0.0}
# Each of these loaded as a single PLY (and rendered black), while a sequence refused the
# first and `st4r scene export` wrote a PLY st4r refused.
BAD_VALUES = [
    ({'scale_1': 1000.0}, r"field 'scales' \(from scale_0..2 \(log scales\)\) has 1 "
                          r'Gaussian\(s\) with NaN or inf'),
    ({'scale_0': 41.0}, r"field 'scales' .* has 1 Gaussian\(s\) with scales <= 0 or beyond "
                        r'exp\(\+-40\)'),
    ({'scale_2': -60.0}, r"field 'scales' .*beyond exp\(\+-40\)"),
    (ZERO_QUATERNION, r"field 'quats' \(from rot_0..3\) has quaternions of norm off 1 by 1"),
    ({**ZERO_QUATERNION, 'rot_2': 1e-30}, r"field 'quats' .*expected unit quaternions"),
]


@pytest.mark.parametrize('values, message', BAD_VALUES)
def test_values_that_do_not_activate_are_refused_by_every_reader(tmp_path, values, message):
    path = tmp_path / 'seq' / 'a.ply'
    write_ply(path, raw_gaussians(n=4, degree=1))
    data = plyfile.PlyData.read(str(path), mmap=False)  # not mapped: rewritten below
    for name, value in values.items():
        data['vertex'][name][2] = value
    data.write(str(path))
    for read in (lambda: read_ply(path), lambda: load_scene(path, 'ply'),
                 lambda: load_scene(path.parent, 'ply-sequence')):
        with pytest.raises(SceneFormatError, match=rf'a.ply: {message}'):
            read()


@pytest.mark.parametrize('values, message', BAD_VALUES)
def test_values_st4r_would_not_read_are_not_written(tmp_path, values, message):
    path = tmp_path / 'a.ply'
    with pytest.raises(SceneFormatError, match=rf'a.ply: not written: {message}'):
        write_ply(path, poked(raw_gaussians(n=4, degree=1), 2, values))
    assert not path.exists()


def test_extreme_values_within_the_bounds_round_trip_through_an_export(tmp_path):
    raw = poked(raw_gaussians(n=4, degree=1), 0, {'scale_0': 40.0, 'scale_1': -40.0,
                                                  'scale_2': 39.99999})
    raw = poked(raw, 1, {**ZERO_QUATERNION, 'rot_3': 1e-3})
    raw.opacity_logits[2] = 60.0
    write_ply(tmp_path / 'a.ply', raw)
    scene = load_scene(tmp_path / 'a.ply', 'ply')
    write_ply(tmp_path / 'b.ply', scene.at(0.0))   # what `st4r scene export` does
    back = read_ply(tmp_path / 'b.ply')
    assert torch.equal(back.log_scales, raw.log_scales)
    torch.testing.assert_close(back.activate().quats, raw.activate().quats)


def test_non_finite_activated_gaussians_are_not_written(tmp_path):
    gaussians = make_gaussians(3, 0)
    gaussians = Gaussians(gaussians.means, gaussians.quats, gaussians.scales,
                          gaussians.opacities * float('nan'), gaussians.sh)
    message = r"n.ply: not written: field 'opacities' \(from opacity \(logit\)\) has 3 Gaussian"
    with pytest.raises(SceneFormatError, match=message):
        write_ply(tmp_path / 'n.ply', gaussians)


# --- sizes the header declares ----------------------------------------------------------------

def ply_header(count, properties=('x',), fmt='binary_little_endian'):
    lines = ['ply', f'format {fmt} 1.0', f'element vertex {count}']
    lines += [f'property float {name}' for name in properties]
    return ('\n'.join(lines + ['end_header']) + '\n').encode()


@pytest.mark.parametrize('head, body, message', [
    # plyfile would size its array from the count before reading a byte.
    (ply_header(10 ** 12), b'\0' * 64,
     r"element 'vertex' declares 1000000000000 rows; expected 0 to 16777216"),
    (ply_header('9' * 5000), b'', r"element 'vertex' declares 9999.* rows"),
    (ply_header(MAX_GAUSSIANS + 1), b'', rf"declares {MAX_GAUSSIANS + 1} rows"),
    (ply_header(-3), b'', r"declares -3 rows"),
    (ply_header(1_000_000, INRIA_HEAD + INRIA_TAIL), b'\0' * 1000,
     r'declares 17000000 values, more than the 1000 bytes after it hold'),
    (ply_header(1000, fmt='ascii'), b'0\n' * 999, r'declares 1000 values'),
    # plyfile would read a header of no end a character at a time into a list.
    (b'ply\nformat binary_little_endian 1.0\ncomment ' + b'x' * (1 << 21), b'',
     r"'end_header' line within its first 1048576 bytes"),
])
def test_header_sizes_are_checked_before_plyfile_reads(tmp_path, head, body, message):
    path = tmp_path / 'h.ply'
    path.write_bytes(head + body)
    with pytest.raises(SceneFormatError, match=rf'h.ply: .*{message}'):
        read_ply(path)


def test_the_gaussian_bound_holds_for_writing_too(tmp_path, monkeypatch):
    monkeypatch.setattr(ply, 'MAX_GAUSSIANS', 3)
    with pytest.raises(SceneFormatError, match=r'not written: 4 Gaussians; a PLY st4r reads '
                                               r'holds at most 3'):
        write_ply(tmp_path / 'big.ply', raw_gaussians(n=4))
    write_ply(tmp_path / 'ok.ply', raw_gaussians(n=3))
    assert ply.ply_element_counts(tmp_path / 'ok.ply') == {'vertex': 3}
