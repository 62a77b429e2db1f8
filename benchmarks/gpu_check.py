"""GPU readiness check (issue 14, scope 7): what a GPU machine must show, as one table.

`benchmarks/gpu_check.sh` runs the parts below in this order, each in its own process under a
hard time limit (one slow part cannot eat the others' time; the table shows what finished),
then prints one table with a row per measurement (name, setting, value, unit, note).
`--dry-run` is the CPU rehearsal: the same parts at tiny sizes, GPUs hidden.

  env         TensorFlow, Keras and the devices TensorFlow sees. Without --dry-run, a process
              whose TensorFlow sees no GPU stops the check here (exit status 3).
  gpu_tests   MirroredStrategy on the real device: the visible GPUs (one GPU: split into two
              logical GPUs) against one device. PASS/FAIL rows: the weights after a few
              training steps of a small model (regular and LRM objectives, synchronised
              batch norm), and a PGD attack's adversarial examples (random start keyed per
              example), each within a stated tolerance. TF32 is off in this part, so that
              float32 differences are rounding only.
  steps       training-step times of resnet_simple at batch 128 on a synthetic CIFAR-10-shaped
              batch: regular, PGD-7 (Madry's objective: adversarial loss only) and LRM, each
              with XLA off, on the training attack's step (--attack_xla_step) and on the whole
              step (--jit_compile), in float32, mixed_bfloat16 and mixed_float16
              (--mixed_precision). Most telling first: a timed-out part keeps what finished.
  draws       the per-example keyed random draws of lrm_tf.attacks._common (example_keys +
              per_example_uniform: PGD's random start) against a plain batched tf.random draw
              of the same shape, alone and inside one PGD step, beside a whole PGD-7 attack.
  autoattack  one `autoattack` pass over 1,000 synthetic CIFAR-shaped images on a fresh
              resnet_simple, labels = its own predictions so that every point enters the first
              stage. The time is the measurement; the accuracies mean nothing.

    benchmarks/gpu_check.sh [--dry-run]                      # the whole check, one table
    python benchmarks/gpu_check.py --plan [--dry-run]        # "part seconds" lines
    python benchmarks/gpu_check.py --part steps --results DIR [--dry-run]
    python benchmarks/gpu_check.py --table --results DIR [--dry-run]

Timing: `bench_train.timed` (wall seconds, the result read back so the device has finished)
of the trainer's `train_function` as `bench_train.py` runs it, and `bench_attacks.Batch` for
PGD-7; medians. BUILD_NOTES.md, "GPU readiness check".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # lrm_tf from this checkout
sys.path.insert(0, HERE)  # bench_train, bench_attacks

from bench_train import EPS, EPS_STEP, fitted_trainer, objectives, timed, train_step_fn  # noqa: E402

PARTS = ("env", "gpu_tests", "steps", "draws", "autoattack")
GPU_LIMIT_S = 480  # issue 14: the whole check in under 8 minutes on one GPU
KILL_AFTER_S = 5  # gpu_check.sh: SIGKILL this long after a part's SIGTERM
NO_GPU = 3  # env's exit status when TensorFlow sees no GPU (without --dry-run)
MIXED = ("none", "mixed_bfloat16", "mixed_float16")
XLA = {"off": (False, False), "attack_xla_step": (False, True), "jit_compile": (True, False)}
OBJECTIVES = ("regular", "pgd7", "lrm")
MIRROR_WEIGHT_TOL = 1e-4  # max |weight difference|, mirrored vs one device
MIRROR_PIXEL_SHARE = 1e-3  # share of adversarial pixels that may differ (sign flips of ~0 gradients)
LOGICAL_GPU_MIB = 20_000  # each of the two logical GPUs one physical GPU is split into
# autoattack: an eps at which a fresh model's points mostly survive, so every stage runs on
# (nearly) every point, as on a robust model; the iterations do not depend on eps.
AA_EPS = 0.25 / 255
MINI_AA = "gpu_check_mini_aa"  # --dry-run: AutoAttack's four stages with few iterations
MINI_STAGES = (("apgd5_ce", 0, False), ("apgd5_t", 9, False), ("fab5_t", 9, False), ("square20", 0, True))


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What each part measures, and its time limit in seconds (`budgets`, in run order)."""

    model: str
    batch: int
    step_repeats: int
    mirror_model: str
    mirror_batch: int
    mirror_steps: int
    mirror_images: int
    draw_batches: tuple[int, ...]
    draw_repeats: int
    aa_images: int
    aa_batch: int
    aa_attack: str
    budgets: tuple[tuple[str, int], ...]


FULL = Sizes(
    model="resnet_simple",
    batch=128,
    step_repeats=10,
    mirror_model="resnet8",
    mirror_batch=32,
    mirror_steps=3,
    mirror_images=64,
    draw_batches=(128, 500),
    draw_repeats=20,
    aa_images=1000,
    aa_batch=500,
    aa_attack="autoattack",
    budgets=(("env", 30), ("gpu_tests", 60), ("steps", 200), ("draws", 35), ("autoattack", 110)),
)
# The CPU rehearsal: the same parts and configurations, tiny sizes.
DRY = dataclasses.replace(
    FULL,
    model="resnet8",
    batch=8,
    step_repeats=2,
    mirror_batch=8,
    mirror_steps=2,
    mirror_images=16,
    draw_batches=(8,),
    draw_repeats=2,
    aa_images=16,
    aa_batch=8,
    aa_attack=MINI_AA,
    budgets=(("env", 60), ("gpu_tests", 150), ("steps", 600), ("draws", 90), ("autoattack", 150)),
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--plan", action="store_true", help="print 'part seconds' lines, in run order")
    what.add_argument("--part", choices=PARTS, help="run one part, appending its rows to --results")
    what.add_argument("--table", action="store_true", help="print the table of --results")
    p.add_argument("--results", default="", help="folder of the rows (PART.jsonl) and statuses")
    p.add_argument("--dry-run", action="store_true", help="CPU rehearsal: GPUs hidden, tiny sizes")
    args = p.parse_args(argv)
    if (args.part or args.table) and not args.results:
        p.error("--part and --table need --results")
    args.sizes = DRY if args.dry_run else FULL
    return args


def step_configs():
    """(objective, xla, mixed precision) of the steps part, most telling first: per precision
    the regular step and the adversarial steps without and with the XLA attack step; then the
    adversarial steps under --jit_compile."""
    first, last = [], []
    for mp in MIXED:
        for obj in OBJECTIVES:
            for xla in XLA:
                if obj == "regular" and xla == "attack_xla_step":
                    continue  # no attack to compile
                (last if obj != "regular" and xla == "jit_compile" else first).append((obj, xla, mp))
    return first + last


# ----------------------------------------------------------------------------------- rows


def row(name, setting="", value=None, unit="", note="") -> dict:
    return {"name": name, "setting": setting, "value": value, "unit": unit, "note": note}


class Rows:
    """Appends a part's rows to RESULTS/PART.jsonl, one line each as it is measured (a part
    killed at its time limit keeps what it wrote), and echoes them to the part's log."""

    def __init__(self, results: str, part: str):
        self.path = os.path.join(results, f"{part}.jsonl")

    def add(self, name, setting="", value=None, unit="", note=""):
        line = row(name, setting, value, unit, note)
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")
        print(table_line(line), flush=True)

    def check(self, name, setting, value, ok: bool, note: str):
        """A PASS/FAIL row."""
        self.add(name, setting, value, "", ("PASS: " if ok else "FAIL: ") + note)


def format_value(value) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_line(r: dict) -> str:
    cells = [r["name"], r["setting"], format_value(r["value"]), r["unit"], r["note"]]
    return "| " + " | ".join(str(c).replace("|", "/").replace("\n", " ") for c in cells) + " |"


def read_rows(results: str, part: str) -> list[dict]:
    path = os.path.join(results, f"{part}.jsonl")
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by the time limit's kill
                pass
    return out


def part_status(results: str, part: str, limit: int) -> dict:
    """The row saying how a part ended, from RESULTS/PART.status ('rc seconds', written by
    gpu_check.sh)."""
    path = os.path.join(results, f"{part}.status")
    if not os.path.exists(path):
        return row(f"part {part}", f"limit {limit} s", note="not run")
    with open(path) as f:
        rc, seconds = (int(v) for v in f.read().split()[:2])
    if rc == 0:
        note = "finished"
    elif rc in (124, 137):
        note = "TIMED OUT: the rows above are what finished"
    elif part == "env" and rc == NO_GPU:
        note = "STOPPED: TensorFlow sees no GPU (CUDA libraries? --dry-run on a CPU)"
    else:
        note = f"FAILED (exit status {rc}): see {part}.log"
    return row(f"part {part}", f"limit {limit} s", seconds, "s", note)


def fastest_rows(step_rows: list[dict]) -> list[dict]:
    """Per objective: its fastest setting, and the speed-up over float32 without XLA."""
    out = []
    for obj in OBJECTIVES:
        times = {
            r["setting"]: r["value"]
            for r in step_rows
            if r["name"] == f"step {obj}" and isinstance(r["value"], (int, float))
        }
        if not times:
            continue
        best = min(times, key=times.get)
        base = times.get("xla=off, none")
        note = f"{base / times[best]:.2f}x faster than xla=off, none" if base else "no float32 baseline"
        out.append(row(f"fastest {obj}", best, times[best], "ms", note))
    return out


def table(results: str, sizes: Sizes, dry_run: bool) -> str:
    """The markdown table of every part's rows and how each part ended."""
    lines = [
        f"## gpu_check ({'DRY RUN: CPU, tiny sizes' if dry_run else 'GPU'}); rows and logs in {results}",
        "",
        "| name | setting | value | unit | note |",
        "|---|---|---:|---|---|",
    ]
    total = 0
    for part, limit in sizes.budgets:
        rows = read_rows(results, part)
        status = part_status(results, part, limit)
        total += status["value"] or 0
        if part == "steps":
            rows += fastest_rows(rows)
        lines += [table_line(r) for r in rows] + [table_line(status)]
    limit = sum(s for _, s in sizes.budgets)
    note = f"the parts' limits add up to {limit} s"
    note += "" if dry_run else f"; issue 14: under {GPU_LIMIT_S} s"
    lines.append(table_line(row("total", "", total, "s", note)))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- parts


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # before TensorFlow: what lrm_tf.main uses on CPUs
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


def _error(e: BaseException) -> str:
    """One line: the ops XLA has no kernel for, or the start of the message."""
    text = " ".join(str(e).split())
    ops = sorted(set(re.findall(r"No registered '(\w+)' OpKernel for XLA", text)))
    if ops:
        return f"ERROR: XLA cannot compile {', '.join(ops)} (no XLA kernel)"
    return f"ERROR {type(e).__name__}: {text[:160]}"


def part_env(sizes, rows, dry_run):
    tf = _tf()
    import keras

    build = tf.sysconfig.get_build_info()
    rows.add("TensorFlow", tf.__version__, None, "", f"built for CUDA {build.get('cuda_version', '-')}, "
             f"cuDNN {build.get('cudnn_version', '-')}; Keras {keras.__version__}")  # fmt: skip
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        rows.add("GPU", gpu.name, None, "", f"{details.get('device_name', '?')}, compute capability "
                 f"{details.get('compute_capability', '?')}")  # fmt: skip
    rows.add("CPUs", "", os.cpu_count(), "", f"load average {os.getloadavg()[0]:.1f}")
    rows.add("data", "", None, "", "synthetic CIFAR-10-shaped images everywhere (no data set needed)")
    if not gpus and not dry_run:
        rows.add("GPU", "", 0, "", "FAIL: TensorFlow sees no GPU; the check stops")
        return NO_GPU
    return 0


def _mirror_devices(tf):
    """(replica devices, cross-device ops, description); before TensorFlow initialises."""
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        return [f"/gpu:{i}" for i in range(len(gpus))], None, f"{len(gpus)} GPUs (NCCL)"
    if gpus:
        config = tf.config.LogicalDeviceConfiguration(memory_limit=LOGICAL_GPU_MIB)
        tf.config.set_logical_device_configuration(gpus[0], [config, config])
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        # NCCL refuses two ranks on one physical GPU.
        return devices, tf.distribute.ReductionToOneDevice(), "1 GPU split into 2 logical GPUs"
    from lrm_tf.training import distribute

    return distribute.split_logical_cpus(2), tf.distribute.ReductionToOneDevice(), "2 logical CPUs"


def part_gpu_tests(sizes, rows, dry_run):
    tf = _tf()
    devices, cross, where = _mirror_devices(tf)
    tf.config.experimental.enable_tensor_float_32_execution(False)
    import numpy as np

    from lrm_tf import data, models, training
    from lrm_tf.config import Threat
    from lrm_tf.eval import evaluation

    mirrored = tf.distribute.MirroredStrategy(devices, cross_device_ops=cross)
    single = tf.distribute.get_strategy()
    threat = Threat(eps=EPS, eps_step=EPS_STEP)
    b, steps = sizes.mirror_batch, sizes.mirror_steps
    arrays = data.synthetic_arrays("cifar10", b * steps, sizes.mirror_images, seed=3)
    x, y = arrays.x_train.astype("float32") / 255.0, arrays.y_train
    cheap, adversarial = objectives("pgd3_xent")
    failures = 0

    def net_for(strategy):
        with strategy.scope():
            return models.build_model(
                sizes.mirror_model, (32, 32, 3), 10, seed=0, synchronized_bn=strategy is mirrored
            )

    def trained(strategy, objective):
        net = net_for(strategy)
        cfg = training.TrainConfig(batch_size=b, lr_values=(0.01,), lr_boundaries=(), seed=5, verbose=0)
        with strategy.scope():
            trainer = training.build_trainer(net, objective, 10, cfg, steps_per_epoch=steps, threat=threat)
        before = [w.numpy() for w in net.trainable_weights]
        trainer.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(b), epochs=1, verbose=0, shuffle=False)
        moved = max(float(np.abs(p - q.numpy()).max()) for p, q in zip(before, net.trainable_weights))
        return [w.numpy() for w in net.weights], moved

    for name, objective in (("regular", cheap["regular"]), ("lrm (PGD-3)", adversarial["lrm"])):
        setting = f"{sizes.mirror_model}, {steps} steps of batch {b}, {where}"
        try:
            one, moved = trained(single, objective)
            two, _ = trained(mirrored, objective)
            diff = max(float(np.abs(p - q).max()) for p, q in zip(one, two))
            ok = diff <= MIRROR_WEIGHT_TOL and moved > 10 * MIRROR_WEIGHT_TOL
            note = "max abs weight difference, batch-norm statistics included (tolerance "
            note += f"{MIRROR_WEIGHT_TOL:g}); the steps moved the trainable weights by up to {moved:.3g}"
            rows.check(f"mirrored = one device: train {name}", setting, diff, ok, note)
        except Exception as e:  # noqa: BLE001 - a failed check is a row, the others still run
            traceback.print_exc()
            ok = False
            rows.check(f"mirrored = one device: train {name}", setting, None, ok, _error(e))
        failures += not ok

    attack = "pgd10_xent"
    images, labels = arrays.x_test.astype("float32") / 255.0, arrays.y_test
    setting = f"{attack}, {len(labels)} images, batch {b}, {where}"
    try:
        x_adv, correct = {}, {}
        for strategy in (single, mirrored):
            net = net_for(strategy)
            x_adv[strategy] = evaluation.adversarial_examples(
                net, images, labels, attack, threat, batch_size=b, strategy=strategy
            )[0]
            correct[strategy] = np.argmax(net.predict(x_adv[strategy], verbose=0), 1) == labels
        delta = np.abs(x_adv[mirrored] - x_adv[single])
        share = float(np.mean(delta > 1e-6))
        same = bool(np.all(correct[mirrored] == correct[single]))
        ok = same and share <= MIRROR_PIXEL_SHARE
        note = f"share of adversarial pixels differing (tolerance {MIRROR_PIXEL_SHARE:g}); "
        note += f"max abs difference {float(delta.max()):.3g}; "
        note += f"per-example outcome {'identical' if same else 'DIFFERS'}"
        rows.check("mirrored = one device: attack", setting, share, ok, note)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        ok = False
        rows.check("mirrored = one device: attack", setting, None, ok, _error(e))
    failures += not ok
    return 1 if failures else 0


def part_steps(sizes, rows, dry_run):
    tf = _tf()
    import keras

    from lrm_tf import data, models, training
    from lrm_tf.config import Threat

    cheap, adversarial = objectives("pgd7_xent")
    chosen = dict(regular=cheap["regular"], pgd7=adversarial["pgd_training_adv_only"], lrm=adversarial["lrm"])
    b = sizes.batch
    arrays = data.synthetic_arrays("cifar10", b, 1, seed=0)
    x, y = data.to_float(arrays.x_train), tf.constant(arrays.y_train)
    for obj, xla, mp in step_configs():
        jit, attack_xla = XLA[xla]
        setting = f"xla={xla}, {mp}"
        try:
            cfg = training.TrainConfig(
                batch_size=b, lr_values=(0.01,), lr_boundaries=(), seed=0, jit_compile=jit,
                mixed_precision=mp, verbose=0,
            )  # fmt: skip
            threat = Threat(eps=EPS, eps_step=EPS_STEP, attack_xla_step=attack_xla)
            t0 = time.perf_counter()
            net = models.build_model(sizes.model, (32, 32, 3), 10, seed=0, mixed_precision=mp)
            step = train_step_fn(fitted_trainer(net, chosen[obj], cfg, threat, x, y), x, y)
            first = time.perf_counter() - t0
            timed(step)  # a warm call
            walls = [timed(step)[0] for _ in range(sizes.step_repeats)]
            note = (f"median of {len(walls)}, batch {b}, {sizes.model}, synthetic CIFAR-10-shaped batch; "
                    f"build + first step {first:.1f} s")  # fmt: skip
            rows.add(f"step {obj}", setting, 1000 * statistics.median(walls), "ms", note)
        except Exception as e:  # noqa: BLE001 - a configuration that fails is a row
            traceback.print_exc()
            rows.add(f"step {obj}", setting, None, "", _error(e))
        keras.backend.clear_session()  # the next configuration starts clean
    return 0


def part_draws(sizes, rows, dry_run):
    tf = _tf()
    from bench_attacks import Batch

    from lrm_tf import models
    from lrm_tf.attacks import _common
    from lrm_tf.attacks.losses import get_loss

    net = models.build_model(sizes.model, (32, 32, 3), 10, seed=0)
    logits_fn = lambda z: net(z, training=False)
    loss_fn = get_loss("xent")
    seed = tf.constant([0, 37], tf.int64)
    eps = tf.constant(EPS, tf.float32)

    def keyed(x):  # PGD's random start (lrm_tf.attacks.pgd)
        return _common.random_lp_vector(x, "linf", eps, seed, _common.example_keys(x))

    def plain(x):
        return tf.random.stateless_uniform(tf.shape(x), seed, -eps, eps, alg=_common.RNG_ALG)

    def pgd_step(start):  # a random start and one PGD step, as lrm_tf.attacks.pgd makes them
        def fn(x, y):
            x0 = tf.clip_by_value(x + start(x), 0.0, 1.0)
            grad = _common.loss_gradient(logits_fn, loss_fn, x0, y, False)
            x1 = tf.clip_by_value(x0 + _common.optimize_linear(grad, EPS_STEP, "linf"), 0.0, 1.0)
            return tf.clip_by_value(x + _common.clip_eta(x1 - x, "linf", EPS), 0.0, 1.0)

        return tf.function(fn)

    for b in sizes.draw_batches:
        batch = Batch(tf, net, b)
        x, y = batch.x, batch.y
        fns = {
            "keys (tf.fingerprint)": (tf.function(_common.example_keys), (x,)),
            "keyed draw": (tf.function(keyed), (x,)),
            "plain draw": (tf.function(plain), (x,)),
            "PGD step, keyed start": (pgd_step(keyed), (x, y)),
            "PGD step, plain start": (pgd_step(plain), (x, y)),
            "PGD-7 (lrm_tf)": (batch.pgd(7, False)[0], ()),
        }
        calls = {name: (lambda fn=fn, a=a: fn(*a)) for name, (fn, a) in fns.items()}
        for call in calls.values():  # tracing and first calls
            timed(call)
        samples = {name: [] for name in calls}
        for _ in range(sizes.draw_repeats):  # interleaved rounds
            for name, call in calls.items():
                samples[name].append(timed(call)[0])
        ms = {name: 1000 * statistics.median(s) for name, s in samples.items()}
        note = f"median of {sizes.draw_repeats} interleaved rounds, [{b}, 32, 32, 3] float32"
        for name, value in ms.items():
            rows.add(f"draws: {name}", f"batch {b}", value, "ms", note)
        extra = ms["PGD step, keyed start"] - ms["PGD step, plain start"]
        rows.add(
            "draws: keyed start's extra cost",
            f"batch {b}",
            extra,
            "ms",
            f"{100 * extra / ms['PGD-7 (lrm_tf)']:.1f}% of a PGD-7 attack (one start per attack)",
        )
    return 0


def _register_mini_aa():
    from lrm_tf.attacks import ensemble, registry

    ensemble.ENSEMBLES[MINI_AA] = tuple(ensemble.Stage(a, targets=t, black_box=k) for a, t, k in MINI_STAGES)
    registry.FAMILIES[MINI_AA] = ensemble.ensemble_family(MINI_AA)


class _StageRows:
    """An ensemble's `log`: a row as each stage ends (a pass killed at its time limit keeps
    the stages that finished), from the lines of lrm_tf.eval.autoattack.run_ensemble."""

    def __init__(self, rows, attack, note):
        self.rows, self.attack, self.note = rows, attack, note
        self.t0, self.points = time.perf_counter(), ""

    def __call__(self, line: str):
        print(line, flush=True)
        started = re.search(r"stage \d+/\d+: \S+ on (\d+) robust points", line)
        ended = re.search(r"robust accuracy after (\S+): ([\d.]+)%", line)
        if started:
            self.t0, self.points = time.perf_counter(), f"{started[1]} points"
        elif ended:
            note = f"{self.note}; robust accuracy after it {ended[2]}%"
            self.rows.add(
                f"{self.attack} stage {ended[1]}", self.points, time.perf_counter() - self.t0, "s", note
            )


def part_autoattack(sizes, rows, dry_run):
    _tf()
    import numpy as np

    from lrm_tf import data, models
    from lrm_tf.config import Threat
    from lrm_tf.eval import evaluation

    if sizes.aa_attack == MINI_AA:
        _register_mini_aa()
    net = models.build_model(sizes.model, (32, 32, 3), 10, seed=0)
    arrays = data.synthetic_arrays("cifar10", 1, sizes.aa_images, seed=1)
    x = arrays.x_test.astype("float32") / 255.0
    y = np.argmax(net.predict(x, batch_size=sizes.aa_batch, verbose=0), 1)
    threat = Threat(eps=AA_EPS, eps_step=AA_EPS / 4)
    stages = "APGD-CE, APGD-T, FAB-T, Square 5000 (standard)"
    if sizes.aa_attack == MINI_AA:
        stages = " -> ".join(a for a, _, _ in MINI_STAGES) + " (AutoAttack's stages, few iterations)"
    log = _StageRows(rows, sizes.aa_attack, "accuracy means nothing (fresh model, synthetic images)")
    t0 = time.perf_counter()
    outcome = evaluation.attack_outcome(
        net, x, y, sizes.aa_attack, threat, batch_size=sizes.aa_batch, progress=False, log=log
    )
    rows.add(
        f"{sizes.aa_attack} pass",
        f"{len(y)} images, batch {sizes.aa_batch}, eps {AA_EPS * 255:g}/255",
        time.perf_counter() - t0,
        "s",
        f"{stages}; one call, tracing included. Fresh {sizes.model}, synthetic images, labels = its "
        f"predictions, eps so small that most points survive every stage: the time of a pass on a model "
        f"robust everywhere (an upper bound); robust accuracy {100 * np.mean(outcome.correct):.1f}% "
        "means nothing",
    )
    return 0


PART_FUNCTIONS = {
    "env": part_env,
    "gpu_tests": part_gpu_tests,
    "steps": part_steps,
    "draws": part_draws,
    "autoattack": part_autoattack,
}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.plan:
        print("\n".join(f"{part} {seconds}" for part, seconds in args.sizes.budgets))
        return 0
    if args.table:
        print(table(args.results, args.sizes, args.dry_run))
        return 0
    if args.dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the CPU rehearsal, also on a GPU machine
    os.makedirs(args.results, exist_ok=True)
    return PART_FUNCTIONS[args.part](args.sizes, Rows(args.results, args.part), args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
