"""Progress of every evaluation mode (issue 15, criterion 1): on tiny inputs, a counter of the
progress calls shows a call every tenth of the work at most (per batch, point, source x
target, measurement, analysis, AutoAttack stage), and a `Task` on a fake clock that makes the
step last longer than a few seconds turns them into a plain line per tenth, with no control
characters. Redirected logs of the command line: tests/eval/test_eval_progress_log.py."""

import io
import re

import keras
import numpy as np
import pytest

from lrm_tf.attacks import ensemble, registry
from lrm_tf.config import Threat
from lrm_tf.eval import analysis, audit, curves, evaluation, transfer
from lrm_tf.report import progress
from tests.test_audit import CONFIG as AUDIT
from tests.test_audit import SPSA as AUDIT_SPSA

SHAPE, CLASSES, N, BATCH = (8, 8, 1), 10, 40, 4  # 10 batches per pass over the examples
THREAT = Threat(eps=0.05, eps_step=0.02)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class Counter:
    """A report that records its calls and passes them on to a file `Task` whose clock moves
    one second per reading (so every step lasts longer than a few seconds)."""

    def __init__(self):
        self.calls = []
        self.seconds = 0.0
        self.stream = io.StringIO()
        self.task = progress.Task("step", self.stream, terminal=False, clock=self._clock, timer=False)

    def _clock(self):
        self.seconds += 1.0
        return self.seconds

    def __call__(self, fraction, note=""):
        self.calls.append((fraction, note))
        self.task(fraction, note)

    def check(self):
        """A call every tenth of the work at most, never backwards, the last at 100%; and a
        line in the log for every tenth."""
        self.task.close()
        fractions = np.array([0.0] + [f for f, _ in self.calls])
        gaps = np.diff(fractions)
        assert gaps.min() >= -1e-12, "progress went back"
        assert gaps.max() <= 0.1 + 1e-9, f"a gap of {gaps.max():.3f} of the work without a call"
        assert fractions[-1] == pytest.approx(1.0)
        log = self.stream.getvalue()
        assert not CONTROL.search(log)
        percents = [int(p) for p in re.findall(r"^step: +(\d+)%", log, re.M)]
        for tenth in range(1, 10):
            assert any(10 * tenth <= p < 10 * tenth + 10 for p in percents), (tenth, log)
        assert percents[-1] == 100
        return log


@pytest.fixture(scope="module")
def model_and_data():
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input(SHAPE),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="tanh"),
            keras.layers.Dense(10),
        ]
    )
    images = np.random.default_rng(0).uniform(0.2, 0.8, (N, *SHAPE)).astype(np.float32)
    labels = np.argmax(model(images, training=False), axis=1).astype(np.int64)  # clean accuracy 100%
    return model, images, labels


def test_evaluation_reports_every_batch(model_and_data):
    counter = Counter()
    evaluation.attack_accuracy(*model_and_data, "pgd5_xent", THREAT, BATCH, progress=counter)
    assert len(counter.calls) == N // BATCH
    assert counter.calls[-1][1].startswith(f"{N}/{N} examples, accuracy ")
    counter.check()


def test_autoattack_reports_its_checks_and_every_stage(model_and_data, monkeypatch):
    stages = (
        ensemble.Stage("fgsm_xent"),
        ensemble.Stage("pgd3_xent"),
        ensemble.Stage("square20", black_box=True),
    )
    monkeypatch.setitem(ensemble.ENSEMBLES, "tiny_aa", stages)
    monkeypatch.setitem(registry.FAMILIES, "tiny_aa", ensemble.ensemble_family("tiny_aa"))
    counter = Counter()
    small = Threat(eps=0.002, eps_step=0.001)  # the points stay robust: every stage has work
    evaluation.attack_outcome(*model_and_data, "tiny_aa", small, BATCH, progress=counter, log=lambda _: None)
    notes = [note for _, note in counter.calls]
    assert notes[0].startswith("tiny_aa checks: ")
    assert any(n.startswith("tiny_aa 3/3 square20: ") and "robust accuracy" in n for n in notes)
    counter.check()


def test_curves_report_every_point(model_and_data):
    counter = Counter()
    curve = curves.eps_sweep(
        *model_and_data, [0.0, 0.05, 0.1], steps=3, threat=THREAT, batch_size=BATCH, progress=counter
    )
    assert len(curve["points"]) == 3
    assert counter.calls[-1][1].startswith("point 3/3, eps 0.1: ")
    counter.check()
    for sweep, values in ((curves.steps_sweep, [1, 4]), (curves.restarts_sweep, [1, 2])):
        counter = Counter()
        sweep(*model_and_data, values, THREAT, batch_size=BATCH, progress=counter)
        counter.check()


def test_transfer_reports_every_source_and_target(model_and_data):
    model = model_and_data[0]
    other = keras.models.clone_model(model)
    counter = Counter()
    transfer.transfer_matrix(
        {"a": model, "b": other},
        {"a": model, "b": other},
        *model_and_data[1:],
        "pgd5_xent",
        THREAT,
        BATCH,
        progress=counter,
    )
    notes = {note.split(":")[0] for _, note in counter.calls}
    assert {"source 1/2 a, attack", "a -> a", "a -> b", "source 2/2 b, attack", "b -> a", "b -> b"} == notes
    counter.check()


def test_audit_reports_every_measurement(model_and_data):
    counter = Counter()
    lines = []
    result = audit.masking_audit(
        *model_and_data,
        THREAT,
        AUDIT,
        BATCH,
        spsa=AUDIT_SPSA,
        log=lines.append,
        progress=counter,
    )
    measured = {note.split(" (")[0] for _, note in counter.calls}
    assert measured == {
        f"{i}/9 {key}"
        for i, key in enumerate(
            [
                "clean",
                "fgsm",
                "pgd_low",
                "pgd_high",
                "pgd_low_restarts",
                "apgd_ce",
                "square",
                "spsa",
                "pgd_unbounded",
            ],
            1,
        )
    }
    assert len(lines) == 1 + 9 + 1 and result["measurements"]["spsa"]["examples"] == 30
    counter.check()


def test_analyses_report_the_attack_and_every_analysis(model_and_data, tmp_path):
    counter = Counter()
    analysis.run_analyses(
        *model_and_data, str(tmp_path), THREAT, batch_size=BATCH, landscape_images=2, landscape_points=5,
        log=lambda _: None, progress=counter,
    )  # fmt: skip
    parts = {note.split(":")[0] for _, note in counter.calls}
    assert parts == {
        f"adversarial examples ({analysis.DEFAULT_ATTACK})",
        "1/4 logits",
        "2/4 eps_l",
        "3/4 landscape",
        "4/4 activations",
    }
    counter.check()


def test_progress_true_writes_plain_lines(model_and_data, capsys):
    """Not on a terminal (pytest captures): plain lines only, the last one 100%."""
    evaluation.evaluate_attacks(*model_and_data, ["clean", "fgsm_xent"], THREAT, BATCH, log=print)
    out = capsys.readouterr().out
    assert not CONTROL.search(out)
    assert re.search(r"^clean: 100% 40/40 examples, accuracy 100.00% \[\d+s\]$", out, re.M)
    assert re.search(r"^fgsm_xent: 100% 40/40 examples, accuracy [\d.]+% \[\d+s\]$", out, re.M)
