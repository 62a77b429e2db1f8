"""Shared test fixtures.

Tests that read real data take its location from LRM_TF_DATA (set by .ci/run to
../shared/data). Outside CI a missing variable skips them with a message saying what to set;
under CI (CI=true) it is a failure, so nothing is silently skipped there.
"""

import os

# Before anything imports TensorFlow: the CPU kernels and log level the command line uses
# (lrm_tf.main sets the same; importing lrm_tf itself changes nothing).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from run_utils import shared_data  # noqa: E402


@pytest.fixture(scope="session")
def mnist_dir():
    return shared_data("mnist")


@pytest.fixture(scope="session")
def cifar10_dir():
    return shared_data("cifar10-jpeg")
