"""Variant families are found from names and shapes, or from an explicit mapping."""

import shutil

import pytest

from controller import families, models
from tests.support import EXAMPLE_MODELS, FIXTURE_MODELS


@pytest.mark.parametrize("name, stem", [
    ("mobilenet_v2_fp32.tflite", "mobilenet_v2"), ("mobilenet_v2_int8.tflite", "mobilenet_v2"),
    ("detector-float16.tflite", "detector"), ("kws.dynamic_range.tflite", "kws"),
    ("resnet50.tflite", "resnet50"),
])
def test_stem_strips_one_variant_suffix(name, stem):
    assert families.stem(name) == stem


def test_example_digits_form_one_family_with_the_fp32_reference():
    sources, _ = models.resolve([str(EXAMPLE_MODELS)])
    found, problems = families.group(sources)
    assert problems == []
    (digits,) = found
    assert digits.name == "digits_cnn" and digits.reference.name == "digits_cnn_fp32.tflite"
    assert {m.variant for m in digits.members} == {"fp32", "fp16", "dynamic", "int8"}


def test_mapping_groups_by_glob_and_rejects_other_shapes(tmp_path):
    shutil.copy(EXAMPLE_MODELS / "digits_cnn_fp32.tflite", tmp_path / "baseline.tflite")
    shutil.copy(EXAMPLE_MODELS / "digits_cnn_int8.tflite", tmp_path / "candidate.tflite")
    shutil.copy(FIXTURE_MODELS / "int8_io.tflite", tmp_path / "cand_other.tflite")
    sources, _ = models.resolve([str(tmp_path)])
    mapping = families.parse_mapping(["digits=baseline*,cand*"])
    (digits,), problems = families.group(sources, mapping)
    assert {m.name for m in digits.members} == {"baseline.tflite", "candidate.tflite"}
    assert digits.reference.name == "baseline.tflite"
    assert problems == ["cand_other.tflite: input/output shapes differ from baseline.tflite; not compared with it"]


def test_bad_mapping_is_a_clear_error():
    with pytest.raises(families.FamilyError, match="expected NAME=GLOB"):
        families.parse_mapping(["digits"])
