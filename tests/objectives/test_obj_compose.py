"""The composed objective: every active term is logged by `fit` with its hand-computed value,
and a term registered from outside the library trains like a built-in one.
(A step under MirroredStrategy equals the step on one device: test_obj_graph_and_distribute.)"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lrm_tf import attacks, training
from lrm_tf.config import Objective, Threat
from lrm_tf.objectives import terms


def _tiny_net():
    keras.utils.set_random_seed(0)
    inp = keras.Input((4, 4, 1))
    x = keras.layers.Flatten()(inp)
    x = keras.layers.Dense(8, activation="tanh")(x)
    return keras.Model(inp, keras.layers.Dense(3)(x))


def _batch():
    rng = np.random.RandomState(0)
    return rng.rand(8, 4, 4, 1).astype("float32"), rng.randint(0, 3, 8).astype("int64")


def _logged(objective, net, x, y, threat=None):
    cfg = training.TrainConfig(batch_size=8, lr_values=(0.0,), lr_boundaries=(), weight_decay=0.0)
    trainer = training.build_trainer(net, objective, 3, cfg, steps_per_epoch=1, threat=threat)
    hist = trainer.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, verbose=0, shuffle=False)
    return {k: v[-1] for k, v in hist.history.items()}


def _np_softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _np_soft_ce(t, z):
    return float(-(t * np.log(_np_softmax(z))).sum(1).mean())


def test_logged_clean_terms_equal_hand_computation():
    x, y = _batch()
    net = _tiny_net()
    obj = Objective(
        label_smoothing=0.3,
        logit_squeeze=0.5,
        logit_similarity=2.0,
        logit_similarity_gamma=1.0,
        clean_pairing=0.7,
    )
    logs = _logged(obj, net, x, y)
    z = net(x).numpy().astype("float64")
    t = np.full((8, 3), 0.3 / 2)
    t[np.arange(8), y] = 0.7  # LRM form: 1 - s on the true class, s / (C - 1) elsewhere
    ce = _np_soft_ce(t, z)
    squeeze = np.sqrt((z**2).sum()) / 8  # beta/|b| ||Z||_F reading
    similarity = np.sqrt(((z - 1.0) ** 2).sum()) / 8
    clean_pairing = ((z[:4] - z[4:]) ** 2).mean()  # mean squared difference over pairs (i, i+4)
    for name, value in [
        ("ce_clean", ce),
        ("squeeze", squeeze),
        ("similarity", similarity),
        ("clean_pairing", clean_pairing),
    ]:
        assert logs[name] == pytest.approx(value, rel=1e-4), name
        assert logs[name] != 0
    total = ce + 0.5 * squeeze + 2.0 * similarity + 0.7 * clean_pairing
    assert logs["loss"] == pytest.approx(total, rel=1e-4)


def test_logged_adversarial_terms_equal_hand_computation():
    x, y = _batch()
    net = _tiny_net()
    # A deterministic attack (iterative, no random start) so the test can rebuild x_adv.
    obj = Objective(
        adv_train="iter3_xent",
        adv_alpha=0.5,
        alp_weight=0.5,
        pairing_beta=1e-3,
        pairing_ratio=0.125,
        logit_squeeze=0.2,
        logit_squeeze_form="example",
    )
    threat = Threat(eps=0.1, eps_step=0.05)
    logs = _logged(obj, net, x, y, threat)
    attack = attacks.build_attack("iter3_xent", lambda v: net(v, training=False), threat)
    x_adv = attack(x, y, tf.constant([0, 0], tf.int64))
    zc, za = net(x).numpy().astype("float64"), net(x_adv).numpy().astype("float64")
    onehot = np.eye(3)[y]
    ce_clean, ce_adv = _np_soft_ce(onehot, zc), _np_soft_ce(onehot, za)
    j_train = 0.5 * ce_clean + 0.5 * ce_adv
    h = float(-(_np_softmax(zc) * np.log(_np_softmax(za))).sum(1).mean())
    expected = {
        "ce_clean": ce_clean,
        "ce_adv": ce_adv,
        "squeeze": np.linalg.norm(np.concatenate([zc, za]), axis=1).mean(),
        "pairing": ((zc - za) ** 2).mean(),
        "decoupled_h": h,
        "pairing_coef": j_train / h / 0.125,
        "logit_norm": ((zc**2).sum(1) + (za**2).sum(1)).mean(),
    }
    for name, value in expected.items():
        assert logs[name] == pytest.approx(value, rel=1e-4), name
        assert logs[name] != 0
    # J_adv : c*h = ratio.
    assert j_train / (expected["pairing_coef"] * h) == pytest.approx(0.125)


def _mean_squared_logit(t, objective):
    """The throw-away term: mean_i,c z_ic^2 of the trained logits."""
    return tf.reduce_mean(tf.square(t.logits))


def test_registered_term_is_logged_and_trained():
    """A term added from outside the library (no config field) trains one step: its value is
    logged, and its gradient is in the update."""
    x, y = _batch()
    term = terms.Term("throwaway", lambda o: True, _mean_squared_logit, weight=0.25)
    terms.register(term, before="squeeze")
    try:
        assert terms.term_names(Objective(logit_squeeze=0.5))[:2] == ["ce_clean", "throwaway"]
        net = _tiny_net()
        w0 = [w.numpy() for w in net.trainable_weights]
        with tf.GradientTape() as tape:
            z = net(x, training=True)
            ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, z))
            throwaway = tf.reduce_mean(tf.square(z))
            total = ce + 0.25 * throwaway
        grads = tape.gradient(total, net.trainable_weights)
        cfg = training.TrainConfig(batch_size=8, lr_values=(0.1,), lr_boundaries=(), weight_decay=0.0)
        trainer = training.build_trainer(net, Objective(), 3, cfg, steps_per_epoch=1)
        hist = trainer.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, verbose=0, shuffle=False)
        logs = {k: v[-1] for k, v in hist.history.items()}
    finally:
        terms.unregister("throwaway")
    assert "throwaway" not in terms.term_names(Objective())
    assert logs["throwaway"] == pytest.approx(float(throwaway), rel=1e-5)
    assert logs["loss"] == pytest.approx(float(total), rel=1e-5)
    # First SGD step (momentum buffer empty): w1 = w0 - lr * grad of ce + 0.25 * throwaway.
    for before, grad, after in zip(w0, grads, net.trainable_weights):
        np.testing.assert_allclose(after.numpy(), before - 0.1 * grad.numpy(), atol=1e-6)
    # Without the term the step differs: its gradient was applied.
    assert max(float(np.abs(0.1 * 0.25 * g).max()) for g in tape_grads_of_throwaway(x)) > 1e-4


def tape_grads_of_throwaway(x):
    net = _tiny_net()
    with tf.GradientTape() as tape:
        value = tf.reduce_mean(tf.square(net(x, training=True)))
    return [g.numpy() for g in tape.gradient(value, net.trainable_weights)]


def test_register_rejects_a_taken_name():
    with pytest.raises(ValueError, match="the name squeeze is taken"):
        terms.register(terms.Term("squeeze", lambda o: True, _mean_squared_logit))
