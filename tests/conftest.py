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


# The modules that take minutes go first (times: BUILD_NOTES.md, "The test suite's time"):
# collected in path order, the flagfile runs started late and one xdist worker ended the
# suite alone on them. A stable sort keeps every other test in its order.
LONG_MODULES = (
    "test_flagfiles.py",
    "test_eval_batching.py",
    "test_obj_graph_and_distribute.py",
    "test_reproduce.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONG_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_MODULES)))
