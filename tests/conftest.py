"""Shared test fixtures.

Tests that read real data take its location from LRM_TF_DATA (set by .ci/run to
../shared/data). Outside CI a missing variable skips them with a message saying what to set;
under CI (CI=true) it is a failure, so nothing is silently skipped there.
"""

import os

import lrm_tf  # noqa: F401  (first: it chooses TensorFlow's CPU kernels before TF is imported)
import pytest

from run_utils import shared_data

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def mnist_dir():
    return shared_data("mnist")


@pytest.fixture(scope="session")
def cifar10_dir():
    return shared_data("cifar10-jpeg")
