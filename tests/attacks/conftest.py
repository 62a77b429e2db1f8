"""Fixtures of the attack tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from attack_test_utils import make_batch, make_conv_model  # noqa: E402


@pytest.fixture(scope="session")
def conv_model():
    return make_conv_model()


@pytest.fixture(scope="session")
def logits_fn(conv_model):
    return lambda x: conv_model(x, training=False)


@pytest.fixture(scope="session")
def batch():
    return make_batch()
