"""Tracing PGD-1000 must not build a bigger graph than PGD-10 (CleverHans unrolls its loop)."""

import numpy as np
import pytest
import tensorflow as tf
from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent as ch_pgd

from lrm_tf.attacks import build_attack
from lrm_tf.config import SpsaOptions, Threat

IMAGES = tf.TensorSpec([4, 8, 8, 1], tf.float32)
LABELS = tf.TensorSpec([4], tf.int64)
SEED = tf.TensorSpec([2], tf.int64)


def op_count(fn, *specs):
    """Ops of the traced graph plus those of every function it calls (the loop bodies)."""
    graph = tf.function(fn).get_concrete_function(*specs).graph
    library = graph.as_graph_def().library
    return len(graph.get_operations()) + sum(len(f.node_def) for f in library.function)


@pytest.mark.parametrize("family", ["pgd{}_xent", "pgd{}_l2_cw", "iter{}_ll", "spsa{}"])
def test_graph_does_not_grow_with_steps(logits_fn, family):
    def attack(steps):
        return build_attack(
            family.format(steps),
            logits_fn,
            Threat(eps=0.1, eps_step=0.01, restarts=3),
            SpsaOptions(spsa_samples=8),
        )

    small = op_count(attack(10), IMAGES, LABELS, SEED)
    large = op_count(attack(1000), IMAGES, LABELS, SEED)
    assert large <= small


def test_cleverhans_graph_grows_with_steps(logits_fn):
    """The measurement above can fail: CleverHans' traced PGD grows with its step count."""

    def cleverhans(steps):
        return lambda x, y: ch_pgd(
            logits_fn, x, 0.1, 0.01, steps, np.inf, clip_min=0.0, clip_max=1.0, y=y, rand_init=False
        )

    assert op_count(cleverhans(3), IMAGES, LABELS) > op_count(cleverhans(1), IMAGES, LABELS)
