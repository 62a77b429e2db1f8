"""A run that does not learn stops before anything is reported (issue 14, scope 1): training
accuracy at chance, or a loss mostly weight decay and not falling; exit status 5, one line,
run_state.json. Runs too short to judge, synthetic data and adversarial accuracy are not judged
(lrm_tf/training/health.py)."""

import contextlib
import io
import json

import keras
import numpy as np
import pytest

from lrm_tf import data, main, models, training
from lrm_tf.config import Objective, TrainConfig
from lrm_tf.training import health

# A tiny model (Madry's CNN on the embedded 8x8 digits, real data) at a learning rate far too high.
TOO_HIGH = [
    "--dataset=digits",
    "--model=mnist_cnn",
    "--train_steps=200",
    "--batch_size=16",
    "--optimizer=momentum",
    "--lr_values=5",
    "--lr_boundaries=",
    "--weight_decay=0",
    "--eval_attacks=clean",
    "--verbose=0",
]


def _run(*args):
    stderr, stdout = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        code = main.run_argv(["lrm_tf", *args])
    return code, [line for line in stderr.getvalue().splitlines() if line.strip()]


def test_learning_rate_far_too_high_stops_in_one_line(tmp_path):
    run = tmp_path / "run"
    code, err = _run(*TOO_HIGH, f"--model_dir={run}")
    assert code == 5 and len(err) == 1, err
    assert err[0].startswith("error: the run did not learn: training accuracy")
    assert "at chance" in err[0] and "Lower --lr_values (now 5" in err[0]
    assert "--stop_if_not_learning=false" in err[0]
    state = json.loads((run / "run_state.json").read_text())
    assert state["status"] == "not_learning" and state["message"] == err[0][len("error: ") :]
    assert state["accuracy"] <= state["chance"] + 0.05 and state["steps"] == 200
    for reported in ("results.json", "results.md", "saved_model", "model.keras", "provenance.json"):
        assert not (run / reported).exists(), reported
    assert (run / "checkpoints").is_dir() and (run / "metrics.csv").exists()
    # Running the same command again does not resume into an evaluation of the failed model.
    code, err = _run(*TOO_HIGH, f"--model_dir={run}")
    assert code == 2 and len(err) == 1 and "did not learn" in err[0] and "--overwrite" in err[0]


def test_the_check_can_be_turned_off(tmp_path):
    run = tmp_path / "run"
    code, err = _run(*TOO_HIGH, "--stop_if_not_learning=false", "--export=false", f"--model_dir={run}")
    assert code == 0, err
    assert json.loads((run / "run_state.json").read_text())["status"] == "finished"


def test_synthetic_data_is_not_judged(tmp_path):
    run = tmp_path / "run"
    code, err = _run(*TOO_HIGH, "--synthetic_data=64", "--export=false", f"--model_dir={run}")
    assert code == 0, err


def test_step_log_is_what_the_trackers_log():
    """Each step's accuracy and loss, summed over an epoch, give fit's epoch means."""
    arrays = data.load_arrays("digits")
    cfg = TrainConfig(batch_size=32, lr_values=(0.02,), lr_boundaries=(), weight_decay=1e-3)
    net = models.build_model("mnist_cnn", (8, 8, 1), 10, seed=0)
    trainer = training.build_trainer(net, Objective(), 10, cfg, steps_per_epoch=44)
    steps = health.StepLog()
    history = trainer.fit(
        data.train_dataset(arrays, 32, seed=0, epoch=0), epochs=1, callbacks=[steps], shuffle=False, verbose=0
    )
    rows = np.asarray(steps.rows)
    assert len(rows) == 44 and rows[:, 1].sum() == 44 * 32
    np.testing.assert_allclose(rows[:, 0].sum() / rows[:, 1].sum(), history.history["accuracy"][0], atol=1e-6)
    np.testing.assert_allclose(rows[:, 2].mean(), history.history["loss"][0], rtol=1e-4)
    np.testing.assert_allclose(rows[:, 3].mean(), history.history["weight_decay"][0], rtol=1e-4)
    keras.backend.clear_session()


# ----------------------------------------------------------------------------- the judgement
LABELS = np.arange(1000) % 10  # chance 10%, label entropy ln 10
CFG = TrainConfig(lr_values=(0.1,), lr_boundaries=(), weight_decay=2e-4)


def _rows(n, accuracy, loss, wd=0.0, first_loss=None, batch=100):
    """n steps of `batch` examples; the first quarter at `first_loss` (default: `loss`)."""
    first = loss if first_loss is None else first_loss
    return [(accuracy * batch, batch, first if i < n // 4 else loss, wd) for i in range(n)]


def _judge(rows, adversarial=False, warmup=0, final_step=None):
    health.judge(rows, LABELS, CFG, adversarial, warmup, len(rows) if final_step is None else final_step)


def test_at_chance_is_stopped_with_what_to_change():
    with pytest.raises(health.NotLearningError) as e:
        _judge(_rows(400, 0.104, 2.31, first_loss=2.3))
    assert e.value.stats["accuracy"] == 0.104 and e.value.stats["chance"] == 0.1
    assert e.value.stats["steps_judged"] == 100 and e.value.stats["steps"] == 400
    assert "Lower --lr_values (now 0.1, --optimizer=momentum) or --weight_decay (now 0.0002)" in (
        e.value.render("--")
    )
    assert "\n" not in str(e.value) and "{" not in str(e.value)


def test_weight_decay_dominated_loss_not_falling_is_stopped():
    """The issue's MNIST run: loss 7.27, of which weight decay 4.59, not falling."""
    with pytest.raises(health.NotLearningError, match="weight decay is 63% of the loss 7.27"):
        _judge(_rows(400, 0.3, 7.27, wd=4.59, first_loss=3.0), adversarial=True)


@pytest.mark.parametrize(
    "rows,kwargs",
    [
        (_rows(400, 0.9, 0.3), {}),  # learning
        (_rows(400, 0.2, 2.0), {}),  # slow but above chance
        (_rows(199, 0.1, 2.3), {}),  # too short to judge
        (_rows(400, 0.1, 2.3), {"warmup": 300}),  # mostly warm-up
        (_rows(400, 0.1, 2.3), {"adversarial": True}),  # adversarial accuracy starts at chance
        (_rows(400, 1.0, 0.32, wd=0.3), {}),  # end of a long run: mostly weight decay, data fit
    ],
    ids=["learning", "slow", "short", "warmup", "adversarial", "long_run_weight_decay"],
)
def test_legitimate_runs_are_not_stopped(rows, kwargs):
    _judge(rows, **kwargs)
