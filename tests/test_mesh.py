"""The device mesh's shape from mesh.data/fsdp/tensor: -1 takes the rest; a shape the devices
cannot make is refused in one line naming the keys to change."""

import pytest

from jaxtl import mesh


@pytest.mark.parametrize(
    ("axes", "devices", "shape"),
    [({}, 8, (8, 1, 1)), ({"fsdp": 4}, 8, (2, 4, 1)), ({"data": 2, "fsdp": -1}, 8, (2, 4, 1)),
     ({"data": 1, "fsdp": 1, "tensor": 1}, 1, (1, 1, 1))],
)  # fmt: skip
def test_minus_one_takes_the_devices_the_other_axes_leave(axes, devices, shape):
    assert mesh.mesh_shape(**axes, num_devices=devices) == shape


@pytest.mark.parametrize(
    ("axes", "devices", "says"),
    [({"fsdp": 4}, 1, "mesh: mesh.fsdp=4, mesh.tensor=1 need a multiple of 4 devices, but 1 is "
      "available"),
     ({"fsdp": 2, "tensor": 2}, 6, "mesh: mesh.fsdp=2, mesh.tensor=2 need a multiple of 4 devices, "
      "but 6 are available"),
     ({"data": 3}, 8, "mesh: data×fsdp×tensor = 3×1×1 = 3 but 8 devices are available (use -1 "
      "for 'the rest')"),
     ({"data": -1, "fsdp": -1}, 8, "at most one of mesh.data/fsdp/tensor may be -1"),
     ({"tensor": 0}, 8, "mesh.tensor=0: sizes are positive or -1")],
)  # fmt: skip
def test_a_shape_the_devices_cannot_make_names_its_keys(axes, devices, says):
    with pytest.raises(ValueError) as e:
        mesh.mesh_shape(**axes, num_devices=devices)
    assert says in str(e.value)
