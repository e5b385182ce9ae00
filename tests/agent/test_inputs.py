import numpy as np
import pytest

from agent.inputs import random_inputs, random_tensor


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int8, np.uint8, np.int16,
                                   np.int32, np.int64, np.bool_])
def test_random_tensor_has_dtype_shape_and_valid_values(dtype):
    value = random_tensor(np.random.default_rng(0), dtype, (2, 64))
    assert value.dtype == np.dtype(dtype)
    assert value.shape == (2, 64)
    if np.dtype(dtype) == np.uint8:
        assert value.min() >= 0 and value.max() <= 255 and value.max() > 127
    if np.dtype(dtype) == np.int8:
        assert value.min() < 0 < value.max()
    if np.dtype(dtype) in (np.int32, np.int64):
        assert value.min() >= 0 and value.max() < 100
    if np.issubdtype(dtype, np.floating):
        assert value.min() >= -1.0 and value.max() <= 1.0


def test_every_input_gets_its_own_array_and_seed_repeats():
    details = [{"dtype": np.float32, "shape": np.array([1, 3])},
               {"dtype": np.int32, "shape": np.array([4])},
               {"dtype": np.bool_, "shape": np.array([2, 2])}]
    first, second = random_inputs(details, seed=5), random_inputs(details, seed=5)
    assert [a.dtype for a in first] == [np.float32, np.int32, np.bool_]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_string_inputs_are_refused():
    with pytest.raises(ValueError, match="cannot make random input"):
        random_tensor(np.random.default_rng(0), np.str_, (1,))
