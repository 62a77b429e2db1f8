"""One training step's objective: inputs, training attack, forward passes, then the term table.

This module prepares what the terms need (soft labels, mixed and noisy images, the training
attack's images, the clean and adversarial logits) and sums the active entries of
`lrm_tf.objectives.terms.TERMS`; the terms themselves are the functions of the sibling
modules. It is replica aware: every random draw and every batch-level quantity is defined
over the *global* batch, so a step under MirroredStrategy equals the same step on one device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import tensorflow as tf

from lrm_tf.config import Objective, Threat
from lrm_tf.objectives import labels, mixup, noise, terms
from lrm_tf.objectives.replica import global_batch, local_slice
from lrm_tf.objectives.terms import needs_clean_logits, term_names

_SEED_MIX, _SEED_NOISE, _SEED_ATTACK = 11, 23, 37  # distinct streams derived from the step seed


@dataclasses.dataclass
class ObjectiveOutput:
    """The loss of one step.

    Attributes:
      total: scalar, sum of weight * value over the active terms (per replica; the trainer
        divides by the replica count).
      terms: logged name -> unweighted scalar value, for every name of `term_names`.
      accuracy_logits: [B, C], the logits whose accuracy `fit` reports (adversarial if any).
    """

    total: tf.Tensor
    terms: dict[str, tf.Tensor]
    accuracy_logits: tf.Tensor


def _mix(objective: Objective, x, y_soft, seed):
    fn = {"mixup": mixup.mixup, "vh_mixup": mixup.vh_mixup}[objective.mixup]
    local = tf.shape(x)[0]
    # Partners are drawn from the global batch, as on one device.
    xg, yg = fn(global_batch(x), global_batch(y_soft), objective.mixup_alpha, seed)
    return local_slice(xg, local), local_slice(yg, local)


def _noise(objective: Objective, threat: Threat | None, x, seed):
    local = tf.shape(x)[0]
    # Draw over the global batch so each example gets the noise it would get on one device.
    zeros = tf.zeros_like(global_batch(x))
    delta = noise.gaussian_noise(zeros, objective.noise_sigma, seed, clip=False)
    x = x + local_slice(delta, local)
    if objective.noise_clip:
        low, high = (threat.clip_min, threat.clip_max) if threat else (0.0, 1.0)
        x = tf.clip_by_value(x, low, high)
    return x


def training_attack(objective: Objective, threat: Threat, net) -> Callable:
    """The training attack `(x, y, seed) -> x_adv` (no gradient) of `objective.adv_train`.

    Args:
      objective: names the attack (adv_train) and the batch-norm mode while attacking
        (attack_bn_training).
      threat: the training attack's threat (eps, step, input range, XLA steps).
      net: the Keras classifier, images [B, H, W, C] in the threat's range -> logits [B, C].
    """
    from lrm_tf import attacks

    spec = attacks.parse_attack(objective.adv_train)
    training = objective.attack_bn_training
    attack = attacks.build_attack(spec, lambda z: net(z, training=training), threat)
    return lambda x, y, seed: tf.stop_gradient(attack(x, y, seed))


def _soft_labels(objective: Objective, y, num_classes):
    y_soft = tf.one_hot(y, num_classes)
    if not objective.label_smoothing:
        return y_soft
    smooth = (
        labels.smooth_labels_lrm if objective.label_smoothing_form == "lrm" else labels.smooth_labels_shafahi
    )
    return smooth(y_soft, objective.label_smoothing)


def _forward(objective: Objective, net, x, x_adv):
    """(clean logits or None, adversarial logits or None) of the images the terms need."""
    if x_adv is None:
        return net(x, training=True), None
    if not needs_clean_logits(objective):
        return None, net(x_adv, training=True)
    if objective.separate_bn_batches:
        return net(x, training=True), net(x_adv, training=True)
    # One concatenated pass: batch-norm statistics over clean and adversarial images together.
    both = net(tf.concat([x, x_adv], axis=0), training=True)
    clean, adv = tf.split(both, 2, axis=0)
    return clean, adv


def compute_objective(
    objective: Objective,
    net,
    x,
    y,
    num_classes: int,
    seed,
    threat: Threat | None = None,
    attack_fn: Callable | None = None,
) -> ObjectiveOutput:
    """The loss of one training step; call inside a GradientTape (and `strategy.run`).

    Order: soft labels (label smoothing), mixup before the attack, Gaussian noise, the
    training attack (on the dominant class of mixed labels), mixup after the attack, the
    forward passes, then every active entry of the term table.

    Args:
      objective: which terms and transforms are active.
      net: the Keras classifier, images -> float32 logits [B, C].
      x: float32 [B, H, W, C] images in the threat's range ([0, 1] by default); this
        replica's share of the global batch.
      y: int [B] labels.
      num_classes: C.
      seed: int64 [2] step seed; mixing, noise and the attack draw from streams derived
        from it.
      threat: the training attack's threat, also the clip range of noisy images; required
        with adv_train.
      attack_fn: replaces the training attack `(x, y, seed) -> x_adv` (tests, benchmarks).

    Returns:
      ObjectiveOutput.
    """
    y_soft = _soft_labels(objective, y, num_classes)
    mix_seed, noise_seed, attack_seed = (seed + [k, 0] for k in (_SEED_MIX, _SEED_NOISE, _SEED_ATTACK))
    mix_late = objective.mixup != "none" and objective.adversarial and not objective.mix_before_attack
    if objective.mixup != "none" and not mix_late:
        x, y_soft = _mix(objective, x, y_soft, mix_seed)
    if objective.noise_sigma:
        x = _noise(objective, threat, x, noise_seed)

    x_adv = None
    if objective.adversarial:
        # Mixed images have soft labels; the attack pushes away from their dominant class.
        attack_labels = tf.argmax(y_soft, axis=1, output_type=y.dtype)
        attack = attack_fn or training_attack(objective, threat, net)
        x_adv = attack(x, attack_labels, attack_seed)
        if mix_late:
            # Same seed: the adversarial batch is mixed with the same partners and weights.
            x_adv, _ = _mix(objective, x_adv, y_soft, mix_seed)
            x, y_soft = _mix(objective, x, y_soft, mix_seed)

    clean_logits, adv_logits = _forward(objective, net, x, x_adv)
    active = terms.active_terms(objective)
    data_terms = [t for t in active if t.data_term]
    trained = "clean" if x_adv is None else "both" if any(t.needs_clean_logits for t in data_terms) else "adv"
    inputs = terms.TermInputs(y_soft, clean_logits, adv_logits, trained, tf.constant(0.0))
    logged: dict[str, tf.Tensor] = {}
    # Data terms first: their weighted sum is J, which the decoupled pairing is set against.
    j = _sum_terms(data_terms, inputs, objective, logged)
    inputs = dataclasses.replace(inputs, data_loss=j)
    total = j + _sum_terms([t for t in active if not t.data_term], inputs, objective, logged)
    accuracy_logits = adv_logits if x_adv is not None else clean_logits
    return ObjectiveOutput(total, {n: logged[n] for n in term_names(objective)}, accuracy_logits)


def _sum_terms(entries, inputs: terms.TermInputs, objective: Objective, logged: dict):
    """sum of weight * value over `entries`; records every logged value in `logged`."""
    total, global_inputs = 0.0, None
    for term in entries:
        if term.reduction == "global":
            if global_inputs is None:
                global_inputs = inputs.global_view()
            value = term.compute(global_inputs, objective)
        else:
            value = term.compute(inputs, objective)
        if isinstance(value, dict):
            logged.update({name: value[name] for name in term.logged})
            value = value["value"]
        else:
            logged[term.name] = value
        total += tf.cast(term.weight_of(objective), value.dtype) * value
    return total
