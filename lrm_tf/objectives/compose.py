"""Composition of the configured training objective (SPEC T1-T14) for one training step.

The loss terms themselves are small pure functions in the sibling modules; this module only
decides which of them are active, on which logits, and with which weights. It is replica
aware: every random draw and every batch-level quantity is defined over the *global* batch,
so a step under MirroredStrategy equals the same step on one device.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional

import tensorflow as tf

from lrm_tf.config import Objective, Threat

_SEED_MIX, _SEED_NOISE, _SEED_ATTACK = 11, 23, 37  # distinct streams derived from the step seed


def needs_clean_logits(objective: Objective) -> bool:
    return (not objective.adversarial or objective.adv_alpha > 0 or objective.alp_weight > 0
            or objective.pairing_ratio > 0 or objective.clean_pairing > 0)


def term_names(objective: Objective, weight_decay: bool = False):
    """The names logged for this objective, in a stable order."""
    names = []
    if not objective.adversarial or objective.adv_alpha > 0:
        names.append("ce_clean")
    if objective.adversarial:
        names.append("ce_adv")
    if objective.logit_squeeze:
        names.append("squeeze")
    if objective.logit_similarity:
        names.append("similarity")
    if objective.clean_pairing:
        names.append("clean_pairing")
    if objective.alp_weight:
        names.append("pairing")
    if objective.pairing_ratio > 0:
        names += ["decoupled_h", "pairing_coef", "logit_norm"]
    if weight_decay:
        names.append("weight_decay")
    return names


@dataclasses.dataclass
class ObjectiveOutput:
    total: tf.Tensor
    terms: Dict[str, tf.Tensor]  # unweighted values, for logging
    accuracy_logits: tf.Tensor  # the logits whose accuracy `fit` reports (adversarial if any)


# ----------------------------------------------------------------------- replica helpers

def _replica():
    ctx = tf.distribute.get_replica_context()
    if ctx is None:  # cross-replica context: behave like one device
        return None, 1, 0
    rid = ctx.replica_id_in_sync_group
    return ctx, ctx.num_replicas_in_sync, rid


def global_batch(x):
    """All replicas' examples in global order (identity on one device)."""
    ctx, n, _ = _replica()
    if ctx is None or n == 1:
        return x
    return ctx.all_gather(x, axis=0)


def local_slice(x_global, local_size):
    """This replica's rows of a tensor defined over the global batch."""
    _, n, rid = _replica()
    if n == 1:
        return x_global
    return x_global[rid * local_size:(rid + 1) * local_size]


def global_mean(value):
    """Mean over replicas of a per-replica batch mean (equal shards): the global-batch mean."""
    ctx, n, _ = _replica()
    if ctx is None or n == 1:
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, value)


def global_norm_term(sq_sum_local):
    """sqrt of a sum of squares over the global batch, with the right per-replica gradient.

    The value is the global norm G on every replica; the gradient of the replica's copy is
    n * d(sq_sum_local)/2G, so after the trainer's 1/n loss scaling and the all-reduce sum the
    gradient is exactly dG/dZ for every row of Z. On one device this is just sqrt(sq_sum).
    """
    ctx, n, _ = _replica()
    g_sq = tf.stop_gradient(sq_sum_local)
    if ctx is not None and n > 1:
        g_sq = ctx.all_reduce(tf.distribute.ReduceOp.SUM, g_sq)
    g = tf.sqrt(g_sq + 1e-12)
    surrogate = n * sq_sum_local / (2.0 * g)
    return surrogate + tf.stop_gradient(g - surrogate)


# ----------------------------------------------------------------------- the objective

def _mix(objective: Objective, x, y_soft, seed):
    from lrm_tf.objectives import mixup as mixup_lib
    fn = {"mixup": mixup_lib.mixup, "vh_mixup": mixup_lib.vh_mixup}[objective.mixup]
    local = tf.shape(x)[0]
    xg, yg = fn(global_batch(x), global_batch(y_soft), objective.mixup_alpha, seed)
    return local_slice(xg, local), local_slice(yg, local)


def _noise(objective: Objective, threat: Optional[Threat], x, seed):
    from lrm_tf.objectives.noise import gaussian_noise
    local = tf.shape(x)[0]
    # Draw over the global batch so each example gets the noise it would get on one device.
    zeros = tf.zeros_like(global_batch(x))
    delta = gaussian_noise(zeros, objective.noise_sigma, seed, clip=False)
    x = x + local_slice(delta, local)
    if objective.noise_clip:
        low, high = (threat.clip_min, threat.clip_max) if threat else (0.0, 1.0)
        x = tf.clip_by_value(x, low, high)
    return x


def _attack(objective: Objective, threat: Threat, net, x, y, seed):
    from lrm_tf import attacks
    spec = attacks.parse_attack(objective.adv_train)
    training = objective.attack_bn_training
    attack = attacks.build_attack(spec, lambda z: net(z, training=training), threat)
    return tf.stop_gradient(attack(x, y, seed))


def _soft_ce(y_soft, logits):
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y_soft, logits))


def compute_objective(objective: Objective, net, x, y, num_classes: int, seed,
                      threat: Optional[Threat] = None,
                      attack_fn: Optional[Callable] = None) -> ObjectiveOutput:
    """Builds the loss of one step (call inside a GradientTape). `seed`: int64 [2] tensor."""
    y_soft = tf.one_hot(y, num_classes)
    if objective.label_smoothing:
        from lrm_tf.objectives import labels
        smooth = (labels.smooth_labels_lrm if objective.label_smoothing_form == "lrm"
                  else labels.smooth_labels_shafahi)
        y_soft = smooth(y_soft, objective.label_smoothing)
    mix_seed, noise_seed, attack_seed = (seed + [k, 0] for k in (_SEED_MIX, _SEED_NOISE, _SEED_ATTACK))

    if objective.mixup != "none" and (objective.mix_before_attack or not objective.adversarial):
        x, y_soft = _mix(objective, x, y_soft, mix_seed)
    if objective.noise_sigma:
        x = _noise(objective, threat, x, noise_seed)

    x_adv = None
    if objective.adversarial:
        # Mixed images have soft labels; the attack pushes away from their dominant class.
        attack_labels = tf.argmax(y_soft, axis=1, output_type=y.dtype)
        attack = attack_fn or (lambda a, b, s: _attack(objective, threat, net, a, b, s))
        x_adv = attack(x, attack_labels, attack_seed)
        if objective.mixup != "none" and not objective.mix_before_attack:
            # Same seed: the adversarial batch is mixed with the same partners and weights.
            x_adv, _ = _mix(objective, x_adv, y_soft, mix_seed)
            x, y_soft = _mix(objective, x, y_soft, mix_seed)

    clean_logits = adv_logits = None
    if x_adv is None:
        clean_logits = net(x, training=True)
    elif not needs_clean_logits(objective):
        adv_logits = net(x_adv, training=True)
    elif objective.separate_bn_batches:
        clean_logits, adv_logits = net(x, training=True), net(x_adv, training=True)
    else:
        both = net(tf.concat([x, x_adv], axis=0), training=True)
        clean_logits, adv_logits = tf.split(both, 2, axis=0)

    terms: Dict[str, tf.Tensor] = {}
    if x_adv is None:
        terms["ce_clean"] = _soft_ce(y_soft, clean_logits)
        total = terms["ce_clean"]
        trained_logits = clean_logits
    else:
        # SPEC T9: alpha * CE(clean) + (1 - alpha) * CE(adv).
        terms["ce_adv"] = _soft_ce(y_soft, adv_logits)
        total = (1.0 - objective.adv_alpha) * terms["ce_adv"]
        trained_logits = adv_logits
        if objective.adv_alpha > 0:
            terms["ce_clean"] = _soft_ce(y_soft, clean_logits)
            total += objective.adv_alpha * terms["ce_clean"]
            trained_logits = tf.concat([clean_logits, adv_logits], axis=0)

    j_train = total  # J of LRM eq. 1 (T9); the decoupled coefficient is defined against it
    if objective.logit_squeeze:
        from lrm_tf.objectives import logit_squeeze
        if objective.logit_squeeze_form == "example":
            terms["squeeze"] = logit_squeeze.logit_squeeze_example(trained_logits)
        else:
            squeeze = global_norm_term(tf.reduce_sum(tf.square(trained_logits)))
            if objective.logit_squeeze_scale == "per_example":
                squeeze /= tf.cast(tf.shape(global_batch(trained_logits))[0], squeeze.dtype)
            terms["squeeze"] = squeeze
        total += objective.logit_squeeze * terms["squeeze"]
    if objective.logit_similarity:
        # Poster: beta'/|b| * ||Z - gamma||_F over the global batch.
        diff = trained_logits - objective.logit_similarity_gamma
        n_global = tf.cast(tf.shape(global_batch(trained_logits))[0], diff.dtype)
        terms["similarity"] = global_norm_term(tf.reduce_sum(tf.square(diff))) / n_global
        total += objective.logit_similarity * terms["similarity"]
    if objective.clean_pairing:
        from lrm_tf.objectives import pairing
        terms["clean_pairing"] = pairing.clean_logit_pairing(
            clean_logits, **pairing.distance_options(objective.pairing_distance))
        total += objective.clean_pairing * terms["clean_pairing"]
    if objective.alp_weight:
        from lrm_tf.objectives import pairing
        terms["pairing"] = pairing.adversarial_logit_pairing(
            clean_logits, adv_logits, **pairing.distance_options(objective.pairing_distance))
        total += objective.alp_weight * terms["pairing"]
    if objective.pairing_ratio > 0:
        from lrm_tf.objectives import pairing
        h = pairing.softmax_cross_entropy_between(clean_logits, adv_logits,
                                                  direction=objective.pairing_h_direction)
        # c = (1/ratio) * sg(J_adv / h) on global-batch values (LRM sec. 4.1).
        coef = pairing.decoupled_pairing_coefficient(global_mean(j_train), global_mean(h),
                                                     objective.pairing_ratio)
        terms["decoupled_h"], terms["pairing_coef"] = h, coef
        terms["logit_norm"] = pairing.logit_norm_penalty(clean_logits, adv_logits)
        total += coef * h + objective.pairing_beta * terms["logit_norm"]
    return ObjectiveOutput(total, terms, adv_logits if x_adv is not None else clean_logits)
