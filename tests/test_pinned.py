"""Predictions at a fixed random_state stay bit for bit what they were.

The numbers in tests/data/pinned_predictions.npz come from
tests/_pinned_cases.py; a refactoring must leave them unchanged. They depend
on the kernels' instruction set (fused multiply-adds round differently), so
they are compared on the instruction set that wrote them and skipped on others.
"""

import json
import warnings

import numpy as np
import pytest
from _pinned_cases import CASES, DATA, machine

import sksketch

if not DATA.exists():
    pytest.skip(f"{DATA.name} is missing", allow_module_level=True)

PINNED = np.load(DATA)
WRITTEN_ON = json.loads(str(PINNED["machine"]))


@pytest.mark.skipif(machine() != WRITTEN_ON,
                    reason=f"pinned on {WRITTEN_ON}, these kernels are {machine()}")
@pytest.mark.skipif(sksketch.show_config("dicts")["build"]["debug"],
                    reason="the debug build compiles without optimisation (no FMA contraction)")
@pytest.mark.parametrize("name", sorted(CASES))
def test_predictions_are_pinned(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = CASES[name]()
    assert sorted(got) == sorted(k.split("/", 1)[1] for k in PINNED if k.startswith(name + "/"))
    for key, value in got.items():
        np.testing.assert_array_equal(value, PINNED[f"{name}/{key}"], err_msg=f"{name}/{key}")
