"""Square Attack (Andriushchenko et al. 2020): schedule, window side, eta pattern, query count,
bounds, gradient masking, batch independence, graph size and MirroredStrategy."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from attack_test_utils import make_batch, make_conv_model, make_linear_model

from lrm_tf.attacks import build_attack, format_attack, parse_attack
from lrm_tf.attacks.square import SquareOptions, eta_pattern, p_schedule, square_search, window_side
from lrm_tf.config import Threat

SEED = tf.constant([5, 6], tf.int64)
HERE = os.path.dirname(os.path.abspath(__file__))


def reference_p(iteration, n_queries, p_init=0.8, rescale=False):
    """The schedule as the paper's code states it, if/elif on the 10k-query breakpoints."""
    it = int(iteration / n_queries * 10000) if rescale else iteration
    for k, (low, high) in enumerate([(10, 50), (50, 200), (200, 500), (500, 1000), (1000, 2000)]):
        if low < it <= high:
            return p_init / 2 ** (k + 1)
    for k, (low, high) in enumerate([(2000, 4000), (4000, 6000), (6000, 8000)]):
        if low < it <= high:
            return p_init / 2 ** (k + 6)
    return p_init / 512 if it > 8000 else p_init


@pytest.mark.parametrize("n_queries", [5000, 10000])
@pytest.mark.parametrize("rescale", [False, True])
def test_p_schedule_at_the_breakpoints(n_queries, rescale):
    points = {0, n_queries - 1}
    for b in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000):
        at = b * n_queries // 10000 if rescale else b
        points |= {at - 1, at, at + 1}
    for i in sorted(p for p in points if 0 <= p < n_queries):
        assert float(p_schedule(i, n_queries, 0.8, rescale)) == reference_p(i, n_queries, 0.8, rescale), i


def test_p_schedule_values():
    assert float(p_schedule(10, 5000)) == 0.8 and float(p_schedule(11, 5000)) == 0.4
    assert float(p_schedule(4999, 5000)) == 0.8 / 128  # AutoAttack's 5000 queries end at p/128
    assert float(p_schedule(4999, 5000, rescale=True)) == 0.8 / 512
    assert float(p_schedule(9999, 10000)) == 0.8 / 512
    assert float(p_schedule(6, 5000, rescale=True)) == 0.4  # 6 / 5000 * 10000 = 12 > 10
    assert float(p_schedule(5, 5000, rescale=True)) == 0.8


@pytest.mark.parametrize(
    "p, shape, norm, side",
    [
        (0.8, (32, 32, 3), "linf", 29),  # round(sqrt(0.8 * 1024)) = round(28.6)
        (0.8, (28, 28, 1), "linf", 25),
        (0.8 / 128, (32, 32, 3), "linf", 3),  # sqrt(6.4) = 2.53
        (0.8 / 512, (28, 28, 1), "linf", 1),
        (0.0625, (10, 10, 1), "linf", 2),  # sqrt(6.25) = 2.5: half to even, as Python's round
        (0.8, (4, 100, 1), "linf", 4),  # capped at the shorter side
        (0.8, (8, 8, 1), "l2", 7),
        (0.4, (28, 28, 1), "l2", 19),  # 17.7 -> 18, even -> 19
        (0.001, (32, 32, 3), "l2", 3),
        (1.0, (8, 8, 1), "l2", 7),  # 8 -> 9, capped at the largest odd side that fits
    ],
)
def test_window_side(p, shape, norm, side):
    assert int(window_side(p, *shape, norm)) == side


def reference_eta(s):
    """eta(s) of Alg. 3 built with loops: two rectangles of concentric squares (weight
    1/(n+1)^2 for the n-th), each of unit norm, the lower one negated, the whole of unit norm."""

    def rectangle(rows, cols):
        out = np.zeros((rows, cols))
        cr, cc = rows // 2, cols // 2
        for n in range(max(cr, cc) + 1):
            out[max(cr - n, 0) : cr + n + 1, max(cc - n, 0) : cc + n + 1] += 1.0 / (n + 1) ** 2
        return out / np.linalg.norm(out) if out.size else out

    eta = np.concatenate([rectangle(s // 2, s), -rectangle(s - s // 2, s)], axis=0)
    return eta / np.linalg.norm(eta)


@pytest.mark.parametrize("s", [1, 3, 4, 5, 8, 11])
def test_eta_pattern_matches_loop_construction(s):
    pattern = eta_pattern(s, 12).numpy()
    np.testing.assert_allclose(pattern[:s, :s], reference_eta(s), atol=1e-6)
    assert not pattern[s:].any() and not pattern[:, s:].any()


class CountingModel:
    """Logits of `model`; counts the images it is called on and records, over all of them,
    the largest distance to the nearest clean example and the pixel range."""

    def __init__(self, model, clean, norm):
        self.model, self.clean, self.norm = model, clean, norm
        self.images = tf.Variable(0, dtype=tf.int64)
        self.far = tf.Variable(0.0)
        self.low, self.high = tf.Variable(np.inf, dtype=tf.float32), tf.Variable(-np.inf, dtype=tf.float32)

    def __call__(self, x):
        diff = tf.reshape(x[:, None] - self.clean[None], [tf.shape(x)[0], self.clean.shape[0], -1])
        dist = tf.reduce_max(tf.abs(diff), -1) if self.norm == "linf" else tf.norm(diff, axis=-1)
        with tf.control_dependencies(
            [
                self.images.assign_add(tf.cast(tf.shape(x)[0], tf.int64)),
                self.far.assign(tf.maximum(self.far, tf.reduce_max(tf.reduce_min(dist, 1)))),
                self.low.assign(tf.minimum(self.low, tf.reduce_min(x))),
                self.high.assign(tf.maximum(self.high, tf.reduce_max(x))),
            ]
        ):
            return tf.identity(self.model(x, training=False))


def run_search(logits_fn, x, y, **kwargs):
    return tf.function(lambda x, y: square_search(logits_fn, x, y, seed=SEED, **kwargs))(x, y)


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 0.5)])
@pytest.mark.parametrize("n_queries", [0, 1, 7, 150])
def test_queries_counted_and_every_query_within_bounds(norm, eps, n_queries):
    model = make_linear_model()
    x, _ = make_batch(batch=12)
    x = tf.where(x > 0.8, 1.0, tf.where(x < 0.2, 0.0, x))  # pixels at the range's ends
    y = tf.argmax(model(x), -1)
    y = tf.concat([y[:-1], (y[-1:] + 1) % 10], 0)  # the last example misclassified at x
    counting = CountingModel(model, x, norm)
    x_adv, margin, queries = run_search(counting, x, y, eps=eps, n_queries=n_queries, norm=norm)
    queries = queries.numpy()
    assert queries[-1] == 0 and np.array_equal(x_adv[-1], x[-1])  # clean-misclassified: untouched
    assert np.all(queries[:-1] >= 1) and np.all(queries <= n_queries + 1)
    broken = margin.numpy() <= 0
    # Unbroken examples used every query; the model saw the clean batch plus every query.
    assert np.all(queries[:-1][~broken[:-1]] == n_queries + 1)
    assert int(counting.images.numpy()) == len(queries) + queries.sum()
    assert float(counting.far.numpy()) <= eps * (1 + 1e-5)
    assert float(counting.low.numpy()) >= 0.0 and float(counting.high.numpy()) <= 1.0
    delta = (x_adv - x).numpy().reshape(len(queries), -1)
    size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert np.all(size <= eps * (1 + 1e-5)) and np.all((x_adv.numpy() >= 0) & (x_adv.numpy() <= 1))
    np.testing.assert_allclose(  # the returned margin is that of x_adv
        margin.numpy(), recompute_margin(model, x_adv, y), rtol=1e-5, atol=1e-5
    )
    if n_queries == 150:  # it stops per point: broken examples used fewer queries
        assert broken.sum() >= 3 and np.any(queries[broken & (queries > 0)] < n_queries + 1)


def recompute_margin(model, x, y):
    logits = model(x).numpy()
    label = logits[np.arange(len(y)), y.numpy()]
    logits[np.arange(len(y)), y.numpy()] = -np.inf
    return label - logits.max(1)


def test_early_stop_per_point_exact_count():
    """A model that says class 1 once any pixel leaves the multiples of 0.25 the clean images
    are made of: the stripes start breaks every example, so each costs exactly the one start
    query, and the loop never runs."""
    x = tf.round(make_batch(batch=6)[0] * 4) / 4

    def logits_fn(images):
        moved = tf.reduce_max(tf.abs(images * 4 - tf.round(images * 4)), [1, 2, 3]) > 0.04
        return tf.one_hot(tf.where(moved, 1, 0), 10)

    y = tf.zeros([6], tf.int64)
    _, margin, queries = square_search(logits_fn, x, y, eps=0.1, n_queries=100, seed=SEED)
    assert np.all(queries.numpy() == 1) and np.all(margin.numpy() <= 0)


def test_square_breaks_a_model_whose_gradients_are_masked():
    """Zero gradients everywhere (the logits' gradient path is multiplied by 0): PGD cannot
    move, Square only queries the logits and breaks it."""
    model = make_linear_model()
    masked = lambda x: 0.0 * model(x, training=False) + tf.stop_gradient(model(x, training=False))  # noqa: E731
    x, _ = make_batch(batch=32)
    y = tf.argmax(model(x), -1)
    threat = Threat(eps=0.1, eps_step=0.025)
    accuracy = {}
    for name in ("pgd20_xent", "square1000"):
        x_adv = tf.function(build_attack(name, masked, threat))(x, y, SEED)
        accuracy[name] = float(np.mean(np.argmax(model(x_adv), -1) == y.numpy()))
    plain = tf.function(build_attack("pgd20_xent", model, threat))(x, y, SEED)
    assert float(np.mean(np.argmax(model(plain), -1) == y.numpy())) <= 0.2  # breakable
    assert accuracy["pgd20_xent"] >= 0.8, accuracy
    assert accuracy["square1000"] <= 0.2, accuracy


@pytest.mark.parametrize("name", ["square40", "square40_l2"])
def test_result_of_an_example_does_not_depend_on_its_batch(name):
    model = make_conv_model()
    x, y = make_batch(batch=12)
    y = tf.argmax(model(x), -1)
    attack = tf.function(
        build_attack(name, model, Threat(eps=0.2 if "l2" not in name else 1.0, eps_step=0.1))
    )
    full = attack(x, y, SEED).numpy()
    order = np.random.default_rng(0).permutation(12)
    permuted = attack(tf.gather(x, order), tf.gather(y, order), SEED).numpy()
    part = attack(x[3:8], y[3:8], SEED).numpy()
    np.testing.assert_allclose(permuted, full[order], atol=1e-6)
    np.testing.assert_allclose(part, full[3:8], atol=1e-6)
    assert np.abs(full - x.numpy()).max() > 0.01
    other = attack(x, y, tf.constant([9, 9], tf.int64)).numpy()
    assert np.abs(other - full).max() > 0.01  # another seed, other draws


def test_names_and_options():
    assert parse_attack("square") == parse_attack("square5000").replace(name="square")
    spec = parse_attack("square1000_l2")
    assert (spec.family, spec.steps, spec.norm, spec.loss) == ("square", 1000, "l2", "margin")
    assert format_attack(parse_attack("square_l2")) == "square5000_l2"
    with pytest.raises(ValueError):
        parse_attack("square_xent")
    model = make_conv_model()
    x, y = make_batch(batch=4)
    threat = Threat(eps=0.05, eps_step=0.01)
    plain = build_attack("square200", model, threat)(x, y, SEED)  # eager works too
    rescaled = build_attack("square200", model, threat, SquareOptions(rescale_schedule=True))(x, y, SEED)
    assert float(tf.reduce_max(tf.abs(plain - rescaled))) > 0  # the option reaches the attack


def op_count(fn, *specs):
    graph = tf.function(fn).get_concrete_function(*specs).graph
    return len(graph.get_operations()) + sum(len(f.node_def) for f in graph.as_graph_def().library.function)


@pytest.mark.parametrize("family", ["square{}", "square{}_l2"])
def test_graph_does_not_grow_with_queries(family):
    model = make_conv_model()
    specs = (tf.TensorSpec([4, 8, 8, 1]), tf.TensorSpec([4], tf.int64), tf.TensorSpec([2], tf.int64))
    counts = [
        op_count(build_attack(family.format(n), model, Threat(eps=0.1, eps_step=0.01)), *specs)
        for n in (10, 5000)
    ]
    assert counts[1] <= counts[0]


def test_mirrored_strategy_matches_single_device():
    # The shared script, with Square's names, and labels the model predicts (Square leaves an
    # example misclassified at the clean input unchanged).
    script = os.path.join(HERE, "mirrored_attack_script.py")
    names = ["square30", "square30_l2", "square5"]
    result = subprocess.run(
        [sys.executable, script, *names, "--predicted_labels"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report.pop("replicas") == 2
    for name in ("square30", "square30_l2", "square5"):
        assert report[name] <= 1e-6, (name, report[name])
        assert report[name + "/moved"] > 0.01, name
