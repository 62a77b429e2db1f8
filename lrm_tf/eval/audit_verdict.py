"""The audit's verdict: paired significance tests on per-example outcomes, three verdicts.

Every comparison of the audit pairs two attacks on the same examples. Only the discordant
pairs carry information: `b` examples broken by the attack under test and not by the one it
is compared with, `c` the other way round. Under the null hypothesis (both attacks equally
strong) each discordant pair falls either way with probability 1/2, so the rule is McNemar's
exact test: a two-sided binomial (sign) test of `b` out of `b + c` at level `level`
(McNemar 1947; `scipy.stats.binomtest`). It accounts for the number of examples, where a
fixed tolerance in accuracy points does not (3 points of 200 examples are 6 flips, p = 0.03
when all go one way; 3 of 200 flips are never significant, 30 of 200 always are).

The checks lead to one of three verdicts:

* "signs of masking": the signs the literature names (Athalye et al. 2018, "Obfuscated
  gradients give a false sense of security", section 3; Carlini et al. 2019, "On evaluating
  adversarial robustness", section 5; the checks of AutoAttack, Croce & Hein 2020,
  arXiv:2003.01690): a single-step attack (FGSM) significantly beating the iterative ones, a
  gradient-free attack (SPSA, Uesato et al. 2018; Square, Andriushchenko et al. 2020)
  significantly beating the gradient attacks, an unbounded attack leaving more than
  `unbounded_max` correct, accuracy rising significantly with the steps or with eps. A
  masking sign also needs an effect of at least `min_effect` (accuracy points as a
  fraction).
* "attack not converged": more PGD steps, more restarts or APGD-CE (Croce & Hein 2020) break
  significantly more examples than the reference PGD (Madry et al. 2018), or the reference
  cannot reach the eps boundary at all (steps x eps_step < eps: "the attack is too weak").
  The defense is not accused; the reference number is too high: report the stronger one.
* "no sign".

The recommended number ranges over the attacks at the evaluation's threat model only (never
the unbounded sanity check): the per-example worst case over them when per-example outcomes
are given (a point counts as robust only if every attack failed on it, so the number can be
below every single attack's accuracy), else the lowest accuracy measured on all the examples.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

NO_SIGN, NOT_CONVERGED, MASKING = "no sign", "attack not converged", "signs of masking"
UNBOUNDED = "pgd_unbounded"
ITERATIVE = ("pgd_low", "pgd_high", "pgd_low_restarts", "apgd_ce")  # iterative white-box
GRADIENT = ("fgsm", *ITERATIVE)  # every gradient attack
TEST = "exact two-sided binomial test on the discordant pairs (McNemar's exact test)"

NEXT = {
    "single_step": "the loss surface misleads iterative steps (Athalye et al. 2018, sec. 3; "
    "Carlini et al. 2019, sec. 5): run PGD with a smaller step and more restarts, the CW/DLR "
    "losses (pgd100_cw, apgd_dlr) and autoattack",
    "gradient_free": "the gradients are masked or obfuscated (Athalye et al. 2018; Uesato et "
    "al. 2018; AutoAttack's Square check): run autoattack and square5000, look for "
    "non-differentiable or saturating layers (BPDA), or randomness (EOT, autoattack_rand)",
    "unbounded": "an attack with every image in reach must succeed (Carlini et al. 2019, sec. "
    "5.2): look for zero or saturated gradients (softmax outputs, scaled logits), try the "
    "CW/DLR losses (pgd100_cw, apgd_dlr) and square at large eps",
    "steps": "more steps should never help the defense (Carlini et al. 2019, sec. 5): look for "
    "noisy or random gradients (EOT, autoattack_rand) and use APGD's step-size schedule "
    "(apgd_ce)",
    "eps": "a larger budget should never help the defense (Carlini et al. 2019, sec. 5): look "
    "for gradients that vanish away from the data (BPDA) and use square at large eps",
}


def mcnemar_exact(ref_correct, other_correct) -> tuple[int, int, float]:
    """McNemar's exact test of two attacks on the same examples.

    Args:
      ref_correct: bool [n], True where the example is still correctly classified under the
        reference attack.
      other_correct: bool [n], the same under the attack compared with it.

    Returns:
      (b, c, p): b examples broken only by the other attack, c only by the reference, and
      the two-sided p-value of the binomial test of b out of b + c at 1/2 (1.0 when b + c = 0).

    Raises:
      ValueError: arrays of different lengths.
    """
    ref, other = np.asarray(ref_correct, bool), np.asarray(other_correct, bool)
    if ref.shape != other.shape:
        raise ValueError(f"paired outcomes of different lengths: {ref.shape} and {other.shape}")
    b, c = int(np.sum(ref & ~other)), int(np.sum(~ref & other))
    return b, c, binomial_p(b, c)


def binomial_p(b: int, c: int) -> float:
    """Two-sided exact binomial p-value of b successes in b + c trials at 1/2 (1.0 if none)."""
    return 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5).pvalue)


def _name(m: dict, key: str) -> str:
    """The measurement's attack name, with its restarts when more than one."""
    if key not in m:
        return key
    restarts = m[key].get("restarts", 1)
    return m[key].get("attack", key) + (f" ({restarts} restarts)" if restarts > 1 else "")


def _union(outcomes: dict, keys, n: int | None = None):
    """Per-example AND of the outcomes of `keys` present (first n examples), or None."""
    arrays = [np.asarray(outcomes[k], bool)[:n] for k in keys if k in outcomes]
    return np.logical_and.reduce(arrays) if arrays else None


def _compare(m, outcomes, ref_keys, key, n=None):
    """Paired counts of attack `key` against the union of `ref_keys` (on the first n).

    With per-example outcomes of both sides, the exact counts; otherwise the counts implied by
    the accuracies with every discordant pair one way (the most significant case; flagged)."""
    ref = _union(outcomes, ref_keys, n)
    if ref is not None and key in outcomes:
        other = np.asarray(outcomes[key], bool)[:n]
        b, c, p = mcnemar_exact(ref, other)
        accuracies = float(np.mean(ref)), float(np.mean(other))
        return {"n": len(ref), "b": b, "c": c, "p_value": p, "paired": True, "accuracies": accuracies}
    examples = m[key]["examples"]
    ref_acc = min(m[k]["accuracy"] for k in ref_keys if k in m)
    d = round((ref_acc - m[key]["accuracy"]) * examples)
    b, c = max(d, 0), max(-d, 0)
    accuracies = ref_acc, m[key]["accuracy"]
    return {
        "n": examples,
        "b": b,
        "c": c,
        "p_value": binomial_p(b, c),
        "paired": False,
        "accuracies": accuracies,
    }


def _describe(m, ref_keys, key, counts, level, what, against) -> str:
    names = [_name(m, k) for k in ref_keys if k in m]
    ref = names[0] if len(names) == 1 else "any of " + ", ".join(names)
    acc_ref, acc = counts["accuracies"]
    verdict = "significant" if counts["p_value"] < level else "not significant"
    if counts["p_value"] < level and against:
        verdict += ", the other way"
    pairing = "" if counts["paired"] else "; accuracies only, discordant pairs assumed one way"
    return (
        f"{what}: {ref} {100 * acc_ref:.2f}% -> {_name(m, key)} "
        f"{100 * acc:.2f}% on {counts['n']} paired examples "
        f"({counts['b']} broken only by {_name(m, key)}, {counts['c']} only by {ref}; "
        f"p = {counts['p_value']:.3g}, {verdict} at {level:g}{pairing})"
    )


def _check(m, outcomes, ref_keys, key, *, name, kind, level, min_effect, what, n=None, rise=False):
    """One paired check. `rise`: the sign is the attack leaving significantly MORE correct."""
    counts = _compare(m, outcomes, ref_keys, key, n)
    more, fewer = (counts["c"], counts["b"]) if rise else (counts["b"], counts["c"])
    effect = (more - fewer) / max(counts["n"], 1)
    finding = counts["p_value"] < level and more > fewer
    if kind == MASKING:
        finding = finding and effect >= min_effect - 1e-12
    return {
        "check": name,
        "kind": kind,
        "finding": bool(finding),
        "masking_sign": bool(finding and kind == MASKING),
        **counts,
        "effect": effect,
        "detail": _describe(m, ref_keys, key, counts, level, what, against=more < fewer),
        **({"next": NEXT[name.split(":")[0]]} if kind == MASKING else {}),
    }


def recommended(m: dict, outcomes: dict | None = None) -> dict:
    """The number to report: the worst case over the attacks at the evaluation's threat model.

    Args:
      m: measurement key -> record ('accuracy', 'examples', 'attack'); `UNBOUNDED` (the sanity
        check at eps = the input range, another threat model) is never used.
      outcomes: measurement key -> bool [examples] per-example correctness (None or missing
        keys: accuracies only). Outcomes on fewer examples (SPSA's subset) count on those.

    Returns:
      {'accuracy', 'how', 'attacks'}: the per-example worst case when every full-size
      measurement has outcomes, else the lowest accuracy among those on all the examples.
    """
    outcomes = outcomes or {}
    keys = [k for k in m if k != UNBOUNDED]
    n = max(m[k]["examples"] for k in keys)
    full = [k for k in keys if m[k]["examples"] == n]
    if full and all(k in outcomes for k in full):
        robust = _union(outcomes, full)
        for k in keys:
            if k not in full and k in outcomes:
                part = np.asarray(outcomes[k], bool)
                robust[: len(part)] &= part
        used = [k for k in keys if k in outcomes and k != "pgd_low_spsa_subset"]  # no repeat
        attacks = len([k for k in used if k != "clean"])
        return {
            "accuracy": float(np.mean(robust)) if len(robust) else 0.0,
            "how": f"per-example worst case over clean and {attacks} attacks at the evaluation's eps",
            "attacks": [_name(m, k) for k in used],
        }
    best = min(full, key=lambda k: m[k]["accuracy"])
    return {
        "accuracy": m[best]["accuracy"],
        "how": f"lowest accuracy at the evaluation's eps ({_name(m, best)})",
        "attacks": [_name(m, best)],
    }


def judge(
    m: dict,
    outcomes: dict | None = None,
    *,
    eps: float,
    eps_step: float,
    ref_steps: int,
    level: float = 0.05,
    min_effect: float = 0.0,
    unbounded_max: float = 0.01,
) -> dict:
    """The audit's checks and verdict from its measurements.

    Args:
      m: measurement key -> record {'accuracy' in [0, 1], 'examples', 'attack' (its name)}.
        Keys used when present: 'clean', 'fgsm', 'pgd_low' (the reference PGD, required),
        'pgd_high' (more steps), 'pgd_low_restarts', 'apgd_ce', 'square', 'spsa' (on the
        first examples only), 'pgd_low_spsa_subset' (the reference on those) and
        'pgd_unbounded' (eps = the input range).
      outcomes: key -> bool [examples] per-example correctness, paired by position (the same
        examples in the same order); None: accuracies only (every discordant pair assumed to
        fall one way, the most significant case).
      eps, eps_step, ref_steps: the evaluation's budget and the reference PGD's step and steps.
      level: significance level of McNemar's exact test.
      min_effect: smallest accuracy difference (fraction) a masking sign needs besides
        significance (`AuditConfig.audit_tolerance`).
      unbounded_max: highest accuracy the unbounded attack may leave.

    Returns:
      {'verdict_kind' (NO_SIGN, NOT_CONVERGED or MASKING), 'verdict' (the text), 'checks'
      (check, kind, finding, masking_sign, n, b, c, p_value, paired, effect, detail, next for
      masking signs), 'masking_signs', 'not_converged' (check names), 'too_weak',
      'recommended' (`recommended`), 'significance' (test, level, min_effect)}.
    """
    outcomes = outcomes or {}
    kw = dict(level=level, min_effect=min_effect)
    ref = _name(m, "pgd_low")
    checks = []
    for key, what in (
        ("pgd_high", "more steps"),
        ("pgd_low_restarts", "more restarts"),
        ("apgd_ce", "APGD-CE"),
    ):
        if key in m:
            checks.append(
                _check(m, outcomes, ["pgd_low"], key, name=key, kind=NOT_CONVERGED, what=what, **kw)
            )
    if "pgd_high" in m:
        checks.append(
            _check(
                m,
                outcomes,
                ["pgd_low"],
                "pgd_high",
                name="steps",
                kind=MASKING,
                rise=True,
                what="accuracy rising with the steps",
                **kw,
            )
        )
    if "fgsm" in m:
        iterative = [k for k in ITERATIVE if k in m]
        checks.append(
            _check(
                m,
                outcomes,
                iterative,
                "fgsm",
                name="single_step",
                kind=MASKING,
                what="single-step attack beating the iterative ones",
                **kw,
            )
        )
    gradient = [k for k in GRADIENT if k in m]
    if "square" in m:
        checks.append(
            _check(
                m,
                outcomes,
                gradient,
                "square",
                name="gradient_free:square",
                kind=MASKING,
                what="gradient-free Square beating the gradient attacks",
                **kw,
            )
        )
    if "spsa" in m:
        n = m["spsa"]["examples"]
        paired = all(k in outcomes for k in gradient) and "spsa" in outcomes
        spsa_ref = gradient if paired else ["pgd_low_spsa_subset"]
        checks.append(
            _check(
                m,
                outcomes,
                spsa_ref,
                "spsa",
                name="gradient_free:spsa",
                kind=MASKING,
                n=n,
                what=f"gradient-free SPSA beating the gradient attacks on the first {n}",
                **kw,
            )
        )
    if UNBOUNDED in m:
        acc = m[UNBOUNDED]["accuracy"]
        checks.append({
            "check": "unbounded", "kind": MASKING, "finding": acc > unbounded_max,
            "masking_sign": acc > unbounded_max, "effect": acc,
            "detail": f"{_name(m, UNBOUNDED)} with every image in reach leaves {100 * acc:.2f}% "
            f"(must be at most {100 * unbounded_max:.1f}%)",
            "next": NEXT["unbounded"],
        })  # fmt: skip
        checks.append(
            _check(
                m,
                outcomes,
                ["pgd_low"],
                UNBOUNDED,
                name="eps",
                kind=MASKING,
                rise=True,
                what="accuracy rising with eps",
                **kw,
            )
        )
    reach = ref_steps * eps_step
    too_weak = reach < eps * (1 - 1e-6)
    if too_weak:
        checks.append({
            "check": "too_weak", "kind": NOT_CONVERGED, "finding": True, "masking_sign": False,
            "detail": f"the reference attack is too weak: {ref} moves at most {ref_steps} x "
            f"{eps_step:g} = {reach:.4g} from its start, less than eps = {eps:g}",
        })  # fmt: skip
    rec = recommended(m, outcomes)
    signs = [c for c in checks if c["masking_sign"]]
    slow = [c for c in checks if c["finding"] and c["kind"] == NOT_CONVERGED]
    rule = f"{TEST}, level {level:g}" + (
        f"; a masking sign also needs at least {100 * min_effect:.1f} points" if min_effect else ""
    )
    number = f"{100 * rec['accuracy']:.2f}% ({rec['how']})"
    if signs:
        kind = MASKING
        text = (
            "SIGNS OF GRADIENT MASKING: "
            + "; ".join(c["detail"] for c in signs)
            + f". Do not trust the gradient attacks' accuracy; the lowest at eps={eps:g} is "
            f"{number}, an upper bound only. Run next: "
            + "; ".join(dict.fromkeys(c["next"] for c in signs))
            + "."
        )
    elif slow:
        kind = NOT_CONVERGED
        text = (
            "ATTACK NOT CONVERGED: "
            + "; ".join(c["detail"] for c in slow)
            + f". This is not a sign of gradient masking: {ref} has not found every adversarial "
            f"example within eps={eps:g}. Report the stronger number, {number}, and run longer "
            "(more steps and restarts, apgd_ce, autoattack)."
        )
    else:
        kind = NO_SIGN
        text = (
            f"NO SIGN of gradient masking or of an unconverged attack in these {len(checks)} "
            f"checks. Report {number}. (Absence of these signs is not proof of robustness.)"
        )
    return {
        "verdict_kind": kind,
        "verdict": f"{text} Rule: {rule}.",
        "checks": checks,
        "masking_signs": [c["check"] for c in signs],
        "not_converged": [c["check"] for c in slow],
        "too_weak": too_weak,
        "recommended": rec,
        "significance": {"test": TEST, "level": level, "min_effect": min_effect},
    }
