"""Attack names: the grammar parses and round-trips; bad names raise one clear ValueError."""

import dataclasses

import pytest
import tensorflow as tf

from lrm_tf.attacks import (
    FAMILIES,
    KURAKIN_SUITE,
    AttackSpec,
    FgsmOptions,
    build_attack,
    ensemble,
    evaluated_examples,
    family_options,
    format_attack,
    grammar,
    parse_attack,
)
from lrm_tf.config import SpsaOptions, Threat

GOOD = {
    "clean": ("clean", 0, "none", "none", False, "none"),
    "fgsm_xent": ("fgsm", 1, "xent", "linf", False, "none"),
    "fgsm_cw": ("fgsm", 1, "cw", "linf", False, "none"),
    "fgsm_l2_xent": ("fgsm", 1, "xent", "l2", False, "none"),
    "rfgsm_xent": ("fgsm", 1, "xent", "linf", True, "none"),
    "pgd20_xent": ("pgd", 20, "xent", "linf", True, "none"),
    "pgd20_cw": ("pgd", 20, "cw", "linf", True, "none"),
    "pgd1000_xent": ("pgd", 1000, "xent", "linf", True, "none"),
    "pgd40_l2_xent": ("pgd", 40, "xent", "l2", True, "none"),
    "pgd7_linf_cw": ("pgd", 7, "cw", "linf", True, "none"),
    "spsa100": ("spsa", 100, "margin", "linf", True, "none"),
    "spsa100_ll": ("spsa", 100, "margin", "linf", True, "ll"),
    "step_ll": ("fgsm", 1, "xent", "linf", False, "ll"),
    "step_rand": ("fgsm", 1, "xent", "linf", False, "rand"),
    "r_step_ll": ("fgsm", 1, "xent", "linf", True, "ll"),
    "r_step_rand": ("fgsm", 1, "xent", "linf", True, "rand"),
    "iter10_ll": ("pgd", 10, "xent", "linf", False, "ll"),
    "iter10_rand": ("pgd", 10, "xent", "linf", False, "rand"),
    "iter20_xent": ("pgd", 20, "xent", "linf", False, "none"),
    "pgd10_ll": ("pgd", 10, "xent", "linf", True, "ll"),
    "pgd10_rand": ("pgd", 10, "xent", "linf", True, "rand"),
}

BAD = [
    "",
    "pgd",
    "pgd_xent",
    "pgd20",
    "pgd0_xent",
    "fgsm20_xent",
    "fgsm",
    "spsa",
    "spsa100_xent",
    "spsa100_l2",
    "step_xent",
    "rfgsm_ll",
    "r_step20_ll",
    "pgd20_l1_xent",
    "pgd20_xent_l2",
    "PGD20_xent",
    "clean_xent",
    "clean5",
    "bim10_xent",
    "pgd20_xent ",
]


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_names_parse(name):
    expected = AttackSpec(*GOOD[name], name=name)
    assert parse_attack(name) == expected


@pytest.mark.parametrize("name", BAD)
def test_bad_names_raise_one_line_with_grammar(name):
    with pytest.raises(ValueError) as error:
        parse_attack(name)
    message = str(error.value)
    assert "\n" not in message
    assert repr(name) in message and grammar() in message


def test_spec_is_frozen():
    spec = parse_attack("pgd20_xent")
    with pytest.raises(Exception):  # noqa: B017 (FrozenInstanceError)
        spec.steps = 3


def test_kurakin_suite_names_parse_as_targeted():
    for paper_name, name in KURAKIN_SUITE.items():
        spec = parse_attack(name)
        assert spec.target == ("ll" if paper_name.endswith("LL") else "rand")
        assert spec.rand_init == (paper_name.startswith(("R+", "PGD")))


def test_every_registered_family_builds(logits_fn, batch):
    x, y = batch
    for family in FAMILIES:
        if ensemble.stages(family) is not None:
            continue  # ensembles of the families here: tests/eval/test_autoattack.py
        name = {
            "clean": "clean",
            "fgsm": "fgsm_xent",
            "pgd": "pgd2_xent",
            "spsa": "spsa1",
            "apgd": "apgd2_ce",
            "fab": "fab2_t",
            "square": "square2",
        }[family]
        x_adv = build_attack(name, logits_fn, Threat(eps=0.05, eps_step=0.01), SpsaOptions(spsa_samples=4))(
            x, y, tf.constant([0, 0])
        )
        assert x_adv.shape == x.shape


def test_build_attack_rejects_bad_random_step(logits_fn):
    with pytest.raises(ValueError, match="random step"):
        build_attack("rfgsm_xent", logits_fn, Threat(eps=0.1, eps_step=0.1), FgsmOptions(rand_step_alpha=0.2))


@pytest.mark.parametrize("name", sorted(GOOD))
def test_format_attack_is_the_inverse_of_parse(name):
    spec = parse_attack(name)
    assert parse_attack(format_attack(spec)) == dataclasses.replace(spec, name=format_attack(spec))


def test_replace_renames_the_variant():
    spec = parse_attack("pgd20_cw").replace(steps=1000)
    assert spec == parse_attack("pgd1000_cw")
    assert parse_attack("iter10_ll").replace(steps=3).name == "iter3_ll"
    assert parse_attack("pgd40_l2_xent").replace(loss="cw").name == "pgd40_l2_cw"
    with pytest.raises(ValueError):
        parse_attack("spsa100").replace(norm="l2")


def test_family_options_and_evaluated_examples():
    spsa = SpsaOptions(spsa_samples=8, spsa_examples=12)
    assert family_options("spsa10", spsa) is spsa
    assert family_options("spsa10") == SpsaOptions()
    assert family_options("pgd10_xent", spsa) is None  # another family's options: ignored
    assert family_options("rfgsm_xent", spsa) == FgsmOptions()
    assert evaluated_examples("spsa10", spsa) == 12 and evaluated_examples("pgd10_xent", spsa) == 0
    with pytest.raises(TypeError, match="SpsaOptions"):
        family_options("spsa10", {"spsa_samples": 8})
