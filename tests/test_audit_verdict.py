"""The audit's verdict logic on measurement tables given by hand (issue 18): the paired
significance rule, the three verdicts and the number to report."""

import numpy as np
import pytest

from lrm_tf.eval import audit_verdict as v

N = 200
THREAT = dict(eps=0.3, eps_step=0.01, ref_steps=40)


def _rec(attack, accuracy, examples=N, restarts=1):
    return {"attack": attack, "accuracy": accuracy, "examples": examples, "restarts": restarts}


def _issue_table():
    """Issue 18's table: Madry's MNIST CNN, PGD-5 adversarial training, 200 images."""
    return {
        "clean": _rec("clean", 0.97),
        "fgsm": _rec("fgsm_xent", 0.905),
        "pgd_low": _rec("pgd40_xent", 0.88),
        "pgd_high": _rec("pgd400_xent", 0.855),
        "pgd_low_restarts": _rec("pgd40_xent", 0.85, restarts=5),
        "pgd_low_spsa_subset": _rec("pgd40_xent", 0.92, 50),
        "spsa": _rec("spsa50", 0.92, 50),
        "pgd_unbounded": _rec("pgd100_xent", 0.0),
    }


def _correct(broken, n=N):
    """bool [n]: True (still correct) except at the indices in `broken`."""
    out = np.ones(n, bool)
    out[list(broken)] = False
    return out


def _by_check(result):
    return {c["check"]: c for c in result["checks"]}


def test_three_of_200_flips_are_not_significant_thirty_are():
    ref = _correct(range(20))
    b, c, p = v.mcnemar_exact(ref, _correct(range(23)))
    assert (b, c) == (3, 0) and p == pytest.approx(0.25) and p > 0.05
    b, c, p = v.mcnemar_exact(ref, _correct(range(50)))
    assert (b, c) == (30, 0) and p == pytest.approx(2 * 0.5**30) and p < 1e-8
    # Flips both ways cancel: 30 one way and 25 the other are not significant.
    b, c, p = v.mcnemar_exact(_correct(range(25)), _correct(range(25, 55)))
    assert (b, c) == (30, 25) and p > 0.5
    with pytest.raises(ValueError):
        v.mcnemar_exact(ref, ref[:10])


def test_issue_case_is_an_unconverged_attack_not_masking():
    result = v.judge(_issue_table(), **THREAT)
    assert result["verdict_kind"] == v.NOT_CONVERGED
    assert result["verdict"].startswith("ATTACK NOT CONVERGED")
    assert "not a sign of gradient masking" in result["verdict"]
    assert result["masking_signs"] == []
    assert "pgd_low_restarts" in result["not_converged"]
    # The number to report: 85.0% at eps 0.3, never the unbounded check's 0%.
    assert result["recommended"]["accuracy"] == pytest.approx(0.85)
    assert "85.00%" in result["verdict"] and "0.00% (" not in result["verdict"]
    # The rule is stated: test, level, counts.
    assert "McNemar" in result["verdict"] and "0.05" in result["verdict"]
    restarts = _by_check(result)["pgd_low_restarts"]
    assert (restarts["n"], restarts["b"], restarts["c"]) == (200, 6, 0)
    assert restarts["p_value"] == pytest.approx(2 * 0.5**6)


def test_issue_case_with_outcomes_recommends_the_per_example_worst_case():
    m = _issue_table()
    outcomes = {
        "clean": _correct(range(6)),
        "fgsm": _correct(range(19)),
        "pgd_low": _correct(range(24)),
        "pgd_high": _correct(range(29)),  # 5 more than PGD-40
        "pgd_low_restarts": _correct([*range(24), *range(100, 106)]),  # 6 others
        "pgd_unbounded": _correct(range(N)),
    }
    outcomes["pgd_low_spsa_subset"] = outcomes["pgd_low"][:50]
    outcomes["spsa"] = _correct(range(4), 50)
    result = v.judge(m, outcomes, **THREAT)
    assert result["verdict_kind"] == v.NOT_CONVERGED
    # 24 + 5 + 6 broken: 165 of 200, below every single attack's accuracy.
    assert result["recommended"]["accuracy"] == pytest.approx(165 / 200)
    assert result["recommended"]["accuracy"] < min(e["accuracy"] for e in m.values() if e["accuracy"])
    assert "worst case" in result["recommended"]["how"]


def test_fgsm_beating_the_iterative_attacks_is_masking():
    m = _issue_table()
    m["fgsm"] = _rec("fgsm_xent", 0.70)
    result = v.judge(m, **THREAT)
    assert result["verdict_kind"] == v.MASKING
    assert result["masking_signs"] == ["single_step"]
    assert result["verdict"].startswith("SIGNS OF GRADIENT MASKING: single-step attack beating")
    assert "Run next:" in result["verdict"] and "Athalye" in result["verdict"]
    assert result["recommended"]["accuracy"] == pytest.approx(0.70)


@pytest.mark.parametrize("key", ["square", "spsa"])
def test_gradient_free_attack_beating_the_gradient_attacks_is_masking(key):
    m = _issue_table()
    if key == "square":
        m["square"] = _rec("square1000", 0.40)
    else:
        m["spsa"] = _rec("spsa50", 0.40, 50)
    result = v.judge(m, **THREAT)
    assert result["verdict_kind"] == v.MASKING
    assert result["masking_signs"] == [f"gradient_free:{key}"]
    assert f"gradient-free {key.upper() if key == 'spsa' else 'Square'}" in result["verdict"]
    assert "autoattack" in result["verdict"]


def test_unbounded_attack_above_one_percent_is_masking():
    m = _issue_table()
    m["pgd_unbounded"] = _rec("pgd100_xent", 0.05)
    result = v.judge(m, **THREAT)
    assert result["verdict_kind"] == v.MASKING
    assert "unbounded" in result["masking_signs"]
    assert "leaves 5.00% (must be at most 1.0%)" in result["verdict"]
    # The unbounded check is another threat model: never the number to report.
    assert result["recommended"]["accuracy"] == pytest.approx(0.85)


def test_accuracy_rising_with_the_steps_is_masking():
    m = _issue_table()
    m["pgd_high"] = _rec("pgd400_xent", 0.97)
    result = v.judge(m, **THREAT)
    assert "steps" in result["masking_signs"]
    assert "accuracy rising with the steps" in result["verdict"]


def test_small_gaps_are_no_sign():
    m = _issue_table()
    m["pgd_high"] = _rec("pgd400_xent", 0.87)
    m["pgd_low_restarts"] = _rec("pgd40_xent", 0.865, restarts=5)
    result = v.judge(m, **THREAT)
    assert result["verdict_kind"] == v.NO_SIGN
    assert result["verdict"].startswith("NO SIGN")
    assert result["recommended"]["accuracy"] == pytest.approx(0.865)


def test_a_significant_masking_gap_below_the_minimum_effect_is_not_a_sign():
    m = _issue_table()
    m["fgsm"] = _rec("fgsm_xent", 0.80)  # 5 points below the iterative attacks' lowest
    assert v.judge(m, **THREAT)["masking_signs"] == ["single_step"]
    assert v.judge(m, **THREAT, min_effect=0.10)["masking_signs"] == []


def test_reference_that_cannot_reach_eps_is_too_weak_not_masking():
    """The quickstart's old reference: PGD-20 of 0.01 at eps 0.3 (issue 13), on an undefended
    model: PGD-20 4.72%, PGD-200 0.00%, FGSM 1.11%, APGD-CE 0%."""
    m = {
        "clean": _rec("clean", 0.99),
        "fgsm": _rec("fgsm_xent", 0.0111),
        "pgd_low": _rec("pgd20_xent", 0.0472),
        "pgd_high": _rec("pgd200_xent", 0.0),
        "pgd_low_restarts": _rec("pgd20_xent", 0.02, restarts=10),
        "apgd_ce": _rec("apgd_ce", 0.0),
        "pgd_unbounded": _rec("pgd100_xent", 0.0),
    }
    result = v.judge(m, eps=0.3, eps_step=0.01, ref_steps=20)
    assert result["verdict_kind"] == v.NOT_CONVERGED
    assert result["too_weak"] and "too_weak" in result["not_converged"]
    assert "the reference attack is too weak" in result["verdict"]
    assert result["recommended"]["accuracy"] == 0.0
