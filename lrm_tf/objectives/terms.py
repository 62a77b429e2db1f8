"""The table of training-objective terms: one entry per term of the loss.

Each entry says when the term is active for an `Objective`, whether it needs the clean
logits, which function of its own module computes it (the function the unit tests check),
its weight, and how it reduces over the global batch. `compose.compute_objective` adds
`weight * value` of every active entry to the loss and logs every value; `term_names`,
`needs_clean_logits` and the cost model of `benchmarks/gpu_cost.py` are read from this table.

Adding a term: write its function in its own module of `lrm_tf.objectives`, add its weight
field to `lrm_tf.config.Objective`, and add one `Term` to `TERMS` below. A term that lives
outside the library (an experiment, a test) can `register` itself and read its weight from a
number or a callable instead of a config field.

Sources: cross-entropy with soft labels (label smoothing: Szegedy et al. 2016, Summers &
Dinneen 2019 eq. 8, Shafahi et al. 2019 eq. 3; M-PGD training: Madry et al. 2018, Kannan et
al. 2018 sec. 4), logit squeezing (Kannan et al. 2018 sec. 4.2.3; Shafahi et al. 2019 eq. 5),
logit similarity (Shafahi et al.'s poster), clean and adversarial logit pairing (Kannan et
al. 2018 sec. 4.2.1-4.2.2), the decoupled pairing of LRM (Summers & Dinneen 2019 eq. 11).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import tensorflow as tf

from lrm_tf.config import Objective
from lrm_tf.objectives import labels, logit_similarity, logit_squeeze, pairing
from lrm_tf.objectives.replica import global_batch, global_mean

REDUCTIONS = ("replica", "global")


@dataclasses.dataclass(frozen=True)
class TermInputs:
    """What a term's function sees: one step's soft labels and float32 logits.

    Attributes:
      y_soft: [B, C] soft labels after label smoothing and mixing (rows sum to 1).
      clean_logits: [B, C] logits of the clean (mixed, noisy) images; None when no active
        term needs them.
      adv_logits: [B, C] logits of the training attack's images; None without adv_train.
      trained: which logits the data terms train: 'clean', 'adv', or 'both' (M-PGD training
        with adv_alpha > 0).
      data_loss: scalar J, the weighted sum of the data terms (the cross-entropies; J of
        Summers & Dinneen eq. 1); 0 while the data terms themselves are computed.
    """

    y_soft: tf.Tensor
    clean_logits: tf.Tensor | None
    adv_logits: tf.Tensor | None
    trained: str
    data_loss: tf.Tensor

    @property
    def logits(self) -> tf.Tensor:
        """The trained logits, [B, C] or [2B, C] (clean rows first) for 'both'; logit
        squeezing and similarity act on these."""
        if self.trained == "both":
            return tf.concat([self.clean_logits, self.adv_logits], axis=0)
        return self.clean_logits if self.trained == "clean" else self.adv_logits

    def global_view(self) -> TermInputs:
        """The same inputs over the global batch (identity on one device); `data_loss`
        becomes the global-batch mean of J."""
        gather = lambda t: None if t is None else global_batch(t)  # noqa: E731
        return TermInputs(
            gather(self.y_soft),
            gather(self.clean_logits),
            gather(self.adv_logits),
            self.trained,
            global_mean(self.data_loss),
        )


Value = tf.Tensor | Mapping[str, tf.Tensor]


@dataclasses.dataclass(frozen=True)
class Term:
    """One term of the training loss.

    Attributes:
      name: the logged name of a single-valued term (a `keras.metrics.Mean` in `fit`'s logs
        and metrics.csv).
      active: Objective -> bool, whether the objective uses the term.
      compute: (TermInputs, Objective) -> the unweighted value, a scalar tensor; or, for a
        term that logs several values, a dict with the loss contribution under "value" and
        one scalar per name in `logged`.
      weight: the term's coefficient: a float, the name of an Objective field, or a callable
        Objective -> float. The loss gets weight * value.
      needs_clean_logits: the term reads `clean_logits`, so adversarial training must also
        run the clean images through the network (a 2B batch, or two passes).
      reduction: how the term reduces over the global batch under tf.distribute. 'replica':
        a per-example mean computed on the replica's share (the trainer's 1/replicas loss
        scaling and the summed gradients make it the global mean). 'global': computed on the
        all-gathered global batch (`TermInputs.global_view`), for batch-level quantities
        (norms of the whole batch, pairs of examples) that do not split into a mean.
      data_term: a cross-entropy of the data; the weighted data terms form J, computed
        before every other term.
      logged: the logged names of a multi-valued term (default: (name,)).
    """

    name: str
    active: Callable[[Objective], bool]
    compute: Callable[[TermInputs, Objective], Value]
    weight: float | str | Callable[[Objective], float] = 1.0
    needs_clean_logits: bool = False
    reduction: str = "replica"
    data_term: bool = False
    logged: tuple[str, ...] = ()

    def __post_init__(self):
        if self.reduction not in REDUCTIONS:
            raise ValueError(
                f"term {self.name}: reduction {self.reduction!r}, choose one of {', '.join(REDUCTIONS)}"
            )
        if not self.logged:
            object.__setattr__(self, "logged", (self.name,))

    def weight_of(self, objective: Objective) -> float:
        """The coefficient of this term for `objective`."""
        if isinstance(self.weight, str):
            return getattr(objective, self.weight)
        if callable(self.weight):
            return self.weight(objective)
        return self.weight


# ----------------------------------------------------------------------------- the terms


def _mean_soft_ce(logits):
    return lambda t, o: tf.reduce_mean(labels.soft_cross_entropy(t.y_soft, logits(t)))


def _squeeze(t: TermInputs, o: Objective):
    if o.logit_squeeze_form == "example":
        return logit_squeeze.logit_squeeze_example(t.logits)
    return logit_squeeze.logit_squeeze_batch(
        t.logits, per_example_scale=o.logit_squeeze_scale == "per_example"
    )


def _decoupled(t: TermInputs, o: Objective):
    out = pairing.decoupled_pairing(
        t.data_loss,
        t.clean_logits,
        t.adv_logits,
        o.pairing_beta,
        o.pairing_ratio,
        direction=o.pairing_h_direction,
    )
    return {
        "value": out["total"],
        "decoupled_h": out["h"],
        "pairing_coef": out["coef"],
        "logit_norm": out["norm_penalty"],
    }


TERMS = [
    # Cross-entropy of the clean images: the whole loss without adv_train, alpha * CE(clean)
    # in M-PGD training (Kannan et al. sec. 4; alpha = 0: Madry et al.'s adversarial loss).
    Term(
        "ce_clean",
        lambda o: not o.adversarial or o.adv_alpha > 0,
        _mean_soft_ce(lambda t: t.clean_logits),
        weight=lambda o: o.adv_alpha if o.adversarial else 1.0,
        needs_clean_logits=True,
        data_term=True,
    ),
    Term(
        "ce_adv",
        lambda o: o.adversarial,
        _mean_soft_ce(lambda t: t.adv_logits),
        weight=lambda o: 1.0 - o.adv_alpha,
        data_term=True,
    ),
    # Logit squeezing, per example (Kannan et al.) or of the batch (Shafahi et al. eq. 5).
    Term("squeeze", lambda o: o.logit_squeeze > 0, _squeeze, weight="logit_squeeze", reduction="global"),
    Term(
        "similarity",
        lambda o: o.logit_similarity > 0,
        lambda t, o: logit_similarity.logit_similarity(t.logits, o.logit_similarity_gamma),
        weight="logit_similarity",
        reduction="global",
    ),
    # Clean logit pairing pairs examples i and i + m/2 of the whole (global) batch.
    Term(
        "clean_pairing",
        lambda o: o.clean_pairing > 0,
        lambda t, o: pairing.clean_logit_pairing(
            t.clean_logits, **pairing.distance_options(o.pairing_distance)
        ),
        weight="clean_pairing",
        needs_clean_logits=True,
        reduction="global",
    ),
    Term(
        "pairing",
        lambda o: o.alp_weight > 0,
        lambda t, o: pairing.adversarial_logit_pairing(
            t.clean_logits, t.adv_logits, **pairing.distance_options(o.pairing_distance)
        ),
        weight="alp_weight",
        needs_clean_logits=True,
    ),
    # c * h + beta * logit norms, c = (1/ratio) sg(J / h) on global-batch values.
    Term(
        "decoupled_pairing",
        lambda o: o.pairing_ratio > 0,
        _decoupled,
        needs_clean_logits=True,
        reduction="global",
        logged=("decoupled_h", "pairing_coef", "logit_norm"),
    ),
]


def register(term: Term, before: str | None = None) -> Term:
    """Adds `term` to the table (at the end, or before the term named `before`).

    Args:
      term: the new term; its logged names must be new.
      before: the name of an existing term to insert it before.

    Returns:
      `term`, so `register` can be used as an expression.

    Raises:
      ValueError: a logged name is taken, or `before` names no term.
    """
    taken = {n for t in TERMS for n in t.logged} | {"loss", "weight_decay", "accuracy"}
    clash = taken.intersection(term.logged)
    if clash:
        raise ValueError(f"term {term.name}: the name {sorted(clash)[0]} is taken")
    names = [t.name for t in TERMS]
    if before is not None and before not in names:
        raise ValueError(f"no term named {before!r}; the terms are {', '.join(names)}")
    TERMS.insert(names.index(before) if before else len(TERMS), term)
    return term


def unregister(name: str) -> None:
    """Removes the term named `name` (a no-op when there is none)."""
    TERMS[:] = [t for t in TERMS if t.name != name]


def active_terms(objective: Objective):
    """The table's entries that `objective` uses, in table order."""
    return [t for t in TERMS if t.active(objective)]


def term_names(objective: Objective, weight_decay: bool = False):
    """The names `fit` logs for `objective` (besides loss and accuracy), in a stable order.

    Args:
      objective: the training objective.
      weight_decay: the trainer adds weight decay (a term of the weights, not the logits).

    Returns:
      list of str.
    """
    names = [n for t in active_terms(objective) for n in t.logged]
    return names + ["weight_decay"] if weight_decay else names


def needs_clean_logits(objective: Objective) -> bool:
    """Whether a step runs the clean images through the network: an active term reads
    their logits (always true without adv_train, where the clean cross-entropy is the loss)."""
    return any(t.needs_clean_logits for t in active_terms(objective))
