"""Settings built from Python check themselves: a bad value raises a ValueError naming the
field, without TensorFlow and without the command line."""

import dataclasses

import pytest

from lrm_tf import config

THREAT = {"eps": 0.3, "eps_step": 0.01}

BAD = [
    (config.Objective, {"logit_squeeze": -1}, "logit_squeeze"),
    (config.Objective, {"logit_similarity": -0.1}, "logit_similarity"),
    (config.Objective, {"label_smoothing": 1.5}, "label_smoothing"),
    (config.Objective, {"label_smoothing_form": "szegedy"}, "label_smoothing_form"),
    (config.Objective, {"noise_sigma": -0.1}, "noise_sigma"),
    (config.Objective, {"clean_pairing": -1.0}, "clean_pairing"),
    (config.Objective, {"adv_alpha": 1.5}, "adv_alpha"),
    (config.Objective, {"alp_weight": 0.5}, "alp_weight"),  # needs adv_train
    (config.Objective, {"pairing_distance": "cosine"}, "pairing_distance"),
    (config.Objective, {"mixup": "cutmix"}, "mixup"),
    (config.Objective, {"mixup": "mixup", "mixup_alpha": 0.0}, "mixup_alpha"),
    (config.Objective, {"adv_train_eps": 0.0}, "adv_train_eps"),
    (config.Objective, {"logit_squeeze": "0.5"}, "logit_squeeze"),
    (config.TrainConfig, {"batch_size": 0}, "batch_size"),
    (config.TrainConfig, {"train_epochs": 0}, "train_epochs"),
    (config.TrainConfig, {"train_steps": -5}, "train_steps"),
    (config.TrainConfig, {"weight_decay": -1e-4}, "weight_decay"),
    (config.TrainConfig, {"momentum": -0.9}, "momentum"),
    (config.TrainConfig, {"optimizer": "rmsprop"}, "optimizer"),
    (config.TrainConfig, {"lr_values": (0.1, 0.01)}, "lr_values"),
    (config.TrainConfig, {"lr_values": (0.1, -0.01, 0.001)}, "lr_values"),
    (config.TrainConfig, {"lr_boundaries": (150, 100)}, "lr_boundaries"),
    (config.TrainConfig, {"mixed_precision": "float8"}, "mixed_precision"),
    (config.Threat, {**THREAT, "eps": 0.0}, "eps"),
    (config.Threat, {**THREAT, "eps_step": -0.01}, "eps_step"),
    (config.Threat, {**THREAT, "restarts": 0}, "restarts"),
    (config.Threat, {**THREAT, "clip_min": 1.0}, "clip_min"),
    (config.SpsaOptions, {"spsa_samples": 0}, "spsa_samples"),
    (config.AuditConfig, {"audit_steps": (100, 20)}, "audit_steps"),
    (config.AuditConfig, {"audit_tolerance": 1.5}, "audit_tolerance"),
    (config.DistributeConfig, {"cpu_replicas": 2}, "cpu_replicas"),
    (config.DataConfig, {"svhn_extra": True}, "svhn_extra"),
    (config.ModelConfig, {"width": 0}, "width"),
    # The input scale: beyond the width of the input range (8 meant as 8/255).
    (config.Objective, {"noise_sigma": 8.0}, "noise_sigma"),
    (config.Objective, {"adv_train_eps": 8.0}, "adv_train_eps"),
    (config.Objective, {"adv_train_eps_step": 2.0}, "adv_train_eps_step"),
    (config.SpsaOptions, {"spsa_delta": 2.0}, "spsa_delta"),
]


@pytest.mark.parametrize("cls,kwargs,field", BAD, ids=[f"{c.__name__}-{f}" for c, _, f in BAD])
def test_bad_value_raises_value_error_naming_the_field(cls, kwargs, field):
    with pytest.raises(ValueError) as info:
        cls(**kwargs)
    assert isinstance(info.value, config.ConfigError) and info.value.field == field
    assert str(info.value).startswith(f"{field}=")


def test_a_checked_copy():
    objective = config.Objective(logit_squeeze=0.5)
    assert objective.replace(logit_squeeze=0.1).logit_squeeze == 0.1
    with pytest.raises(ValueError, match="^logit_squeeze="):
        objective.replace(logit_squeeze=-1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        objective.logit_squeeze = 2.0


def test_lists_become_tuples_and_threat_has_no_default_eps():
    cfg = config.TrainConfig(lr_values=[0.1, 0.01], lr_boundaries=[5])
    assert cfg.lr_values == (0.1, 0.01) and cfg.lr_boundaries == (5,)
    with pytest.raises(TypeError):
        config.Threat()  # eps and eps_step are the user's choice (or the dataset's, on the command line)


def test_other_settings_named_in_a_reason_render_as_flags():
    with pytest.raises(config.ConfigError) as info:
        config.Objective(pairing_beta=1e-3, adv_train="pgd3_xent")
    assert str(info.value) == ("pairing_beta=0.001: is part of the decoupled pairing: set pairing_ratio > 0")
    assert info.value.render("--").endswith("set --pairing_ratio > 0")


def test_every_flag_setting_has_help_and_a_known_kind():
    for cls in config.FLAG_CONFIGS:
        for f in dataclasses.fields(cls):
            assert f.metadata["help"], f"{cls.__name__}.{f.name}: no help"
            assert f.metadata["kind"] in ("bool", "int", "float", "str", "floats", "ints", "strs")


SCALE = [
    # (threat, norm, field): an L-inf budget or step beyond the input range (8 meant as 8/255)
    ({"eps": 8.0, "eps_step": 2.0}, "linf", "eps"),
    ({**THREAT, "eps_step": 2.0}, "linf", "eps_step"),
    ({"eps": 2.5, "eps_step": 0.1, "clip_min": -1.0, "clip_max": 1.0}, "linf", "eps"),
]


@pytest.mark.parametrize("kwargs,norm,field", SCALE, ids=[f for _, _, f in SCALE])
def test_linf_budget_beyond_the_input_range_is_refused(kwargs, norm, field):
    threat = config.Threat(**kwargs)
    with pytest.raises(config.ConfigError) as info:
        threat.check_norm(norm)  # build_attack and the command line run this check
    assert info.value.field == field and "input" in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_input_scale_errors_name_the_scale_and_the_meant_value():
    with pytest.raises(config.ConfigError) as info:
        config.Threat(eps=8, eps_step=2).check_norm("linf")
    assert str(info.value) == (
        "eps=8: must be at most 1: values are in the [0, 1] input scale; did you mean 8/255 = 0.03137?"
    )
    assert info.value.render("--").startswith("--eps=8: ")
    # L2 budgets are norms over all pixels (1.5 on CIFAR-10, Shafahi et al.'s poster).
    config.Threat(eps=1.5, eps_step=0.1875).check_norm("l2")
    assert config.Objective(adv_train="pgd7_l2_xent", adv_train_eps=1.5).adv_train_eps == 1.5
    # The whole range is the limit, whatever the range: [-1, 1] allows eps up to 2.
    config.Threat(eps=1.5, eps_step=0.5, clip_min=-1.0, clip_max=1.0).check_norm("linf")
    config.Threat(eps=1.0, eps_step=1.0).check_norm("linf")
    assert config.Objective(noise_sigma=0.0).noise_sigma == 0.0
