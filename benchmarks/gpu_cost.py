"""What reproducing each paper table of flags/ costs on one modern GPU, from FLOP counts.

For every flagfile (lrm_tf/report/published.json maps it to paper, table and row) the script
counts the floating-point work of its training and of its evaluation, groups the flagfiles by
paper table and converts the FLOPs into GPU hours at an assumed effective throughput. Nothing is
trained or attacked; the only TensorFlow work is building each distinct model once and
counting the FLOPs of its graph (well under a minute on the 2-core development machine).

    python benchmarks/gpu_cost.py                          # the table, markdown on stdout
    python benchmarks/gpu_cost.py --details --markdown gpu_cost.md
    python benchmarks/gpu_cost.py --measure --models mnist_cnn,resnet8   # + this machine's speed

FLOPs of one forward pass per image (F)
    Counted by TensorFlow's graph profiler (`tf.compat.v1.profiler`, float_operation) on the
    inference graph of `model(x, training=False)` at batch 1, i.e. every op with registered
    FLOP statistics (convolutions, matmuls, the batch-norm and standardisation arithmetic).
    Checked against an analytic count over the Keras layers, 2 k_h k_w c_in c_out H_out W_out
    per Conv2D and 2 n_in n_out per Dense: the profiler's Conv2D + MatMul FLOPs must equal it
    (to 0.1%) and its total must stay within 5% of it (the rest is element-wise arithmetic).

Cost of a pass, in forward passes over the same images (checked by `check_pass_costs` on the
profiled graphs of mnist_cnn and resnet8, pruned to what their outputs need, as a
tf.function executes them):
    training pass   3 F: forward, backward to the activations, backward to the weights
                    (`tape.gradient(loss, net.trainable_variables)`, training.py).
    attack pass     2 F (--attack_pass_cost): forward and backward to the *input* only
                    (`tape.gradient(loss, x)`, attacks/_common.py loss_gradient). The
                    Conv2DBackpropFilter ops TensorFlow's gradient functions also emit are
                    never fetched, so the function runtime prunes them. The published
                    wall-clock pair of Shafahi et al. (below) agrees with 2 and not with 3.
    forward         1 F: a prediction, an SPSA probe, the scoring of a restart.

Training FLOPs of a flagfile = steps x B x F x u, steps = --train_steps, else
--train_epochs x (training images // B) (training.steps_plan), with u per image of the batch:
    no training attack                              u = 3
        (label smoothing, noise and mixup transform the batch; every term of the objective
        term table, lrm_tf/objectives/terms.py, is a function of the one pass's logits)
    PGD-k / FGSM training attack                    u = k a + 3 m
        a = attack pass cost; m = 2 when an active term of the term table needs the clean
        logits (`terms.needs_clean_logits`: the clean cross-entropy with adv_alpha > 0, ALP,
        the decoupled pairing / LRM, CLP) and clean and adversarial images go through one
        concatenated pass of 2B (compose.py); m = 1 for adversarial examples only.
Evaluation FLOPs per attack and example, times F, over --eval_examples (0: the test set):
    clean 1; FGSM a + 1; PGD-k R k a + 1; SPSA-n R n s + 1 on the first --spsa_examples only,
    s = --spsa_samples: each iteration evaluates s probes x +/- delta v (s/2 mirrored
    pairs, attacks/spsa.py), not 2 s. R = --restarts for randomised attacks (PGD, SPSA,
    R+FGSM), else 1; with R > 1 each restart's result is scored by one forward more
    (attacks/restarts.py). The final 1 is the prediction on the adversarial images
    (evaluation.attack_accuracy). --mode=transfer: each source model's attack (without the
    prediction) plus one forward per target model (transfer.transfer_matrix).

GPU hours
    hours = FLOPs / effective throughput, shown as a range between --gpu_tflops_high and
    --gpu_tflops_low. The defaults, 200 and 60 effective TFLOP/s, are for one H100 running
    these TensorFlow fp32 models, whose convolutions and matmuls TensorFlow runs on the TF32
    tensor cores by default (H100 SXM: 495 dense TF32 TFLOP/s, 67 TFLOP/s plain fp32). Small
    32x32 images at batch 50-128, batch norm and the element-wise ops keep convolution nets
    far from peak: 60 is about 12% of the TF32 peak (no better than plain fp32 at full
    speed), 200 about 40%. For scale, the published wall-clock figures below imply about
    6 effective TFLOP/s on Shafahi et al.'s ~2018 GPU (half a GTX 1080 Ti's 11.3 fp32 peak,
    40% of a V100's 15.7 without tensor cores) and 1.75 per GTX 1080 Ti for LRM's SPSA.
    Small models cannot fill a GPU at all: every network pass also costs a fixed latency
    (kernel launches, the per-step Python of `fit`), --pass_latency_ms, 0.3 ms by default
    (a guess; measure it with --measure on the GPU). A flagfile's training and its
    evaluation each take max(FLOP time, sequential passes x latency); the "floor h" column
    is that latency total alone. For the MNIST rows the floor dominates.

Reference points printed with the table (published wall-clock times):
    Shafahi et al. sec. 6: CIFAR-100 logit squeezing, 160k iterations, 28.8 hours, vs the
    PGD-2 adversarially trained model, 34.3 hours (their GPU is not named).
    Summers & Dinneen (LRM) sec. 5.3: SPSA on the whole 10,000-image test set "would take
    roughly 90 hours" (100 iterations x 8192 samples, two GTX 1080 Ti).

--measure times on *this* machine, per model, a training step (the trainer's
train_function with the plain objective) and an attack pass at --measure_batch and reports
the achieved GFLOP/s; on a GPU machine it gives the throughput and latency to put in the
flags above. It is off by default: it runs the models.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import statistics
import sys
import time
from collections import defaultdict

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # this checkout's lrm_tf (its flags), not another installed copy


TRAIN_PASS_COST = 3.0  # forward + backward to activations + backward to weights, in F
SPSA_CHUNK_SAMPLES = 32  # build_attack's default; evaluation does not override it

# Published wall-clock figures used as reference points (see the module docstring).
SHAFAHI_SQUEEZE = ("shafahi_t5_cifar100_squeeze_b5_s20_k160k", 28.8)
SHAFAHI_ADVERSARIAL = ("shafahi_t5_cifar100_adv_pgd2", 34.3)
# stem: a flagfile training the model LRM's table 6 evaluates (resnet_simple on CIFAR-10).
LRM_SPSA = dict(stem="lrm_t1_cifar10_lrm", iterations=100, samples=8192, examples=10000, hours=90.0, gpus=2)
# Models whose pass costs are checked on their pruned gradient graphs (small and quick).
CHECKED_MODELS = (("mnist_cnn", "mnist"), ("resnet8", "svhn_cropped"))


# ----------------------------------------------------------------------------- flagfiles


@dataclasses.dataclass
class Flagfile:
    stem: str
    flags: dict[str, object]  # every lrm_tf.main flag: the file's value, else the default

    def __getattr__(self, name):
        try:
            return self.flags[name]
        except KeyError:
            raise AttributeError(name) from None


def flag_definitions():
    """lrm_tf.main's absl flags (importing main defines them; nothing parses argv)."""
    import lrm_tf.main

    return lrm_tf.main.FLAGS


def read_flagfile(path: str, definitions) -> Flagfile:
    """A flagfile's flags (base recipes included, through lrm_tf.cli.flagfile, the project's one
    reader) parsed by each flag's own absl parser, on top of every flag's default; a
    `--noname` line sets the boolean `name` to false."""
    from lrm_tf.cli import flagfile

    values = {name: definitions[name].default for name in definitions}
    for name, text in flagfile.read_flagfile(path).items():
        if name not in definitions and name.startswith("no") and text == "true":
            name, text = name[2:], "false"
        if name not in definitions:
            raise ValueError(f"{path}: unknown flag --{name}")
        values[name] = definitions[name].parser.parse(text)
    return Flagfile(os.path.basename(path)[: -len(".cfg")], values)


def read_index():
    """The published rows (lrm_tf/report/published.json): {stem: (paper key, table cell, row)}
    and {paper key: paper title}, papers in the data file's order."""
    from lrm_tf.report.published import PAPERS, PUBLISHED

    index = {stem: (e["paper"], e["table"], e["row"]) for stem, e in PUBLISHED.items()}
    return index, {key: paper["title"] for key, paper in PAPERS.items()}


def table_label(cell: str) -> str:
    """The table a flagfile's cost counts towards: README's cell without remarks, e.g.
    "2 (source)" -> "2", "2 (= 6) and 1" -> "2 (= 6)", "1 and 7" -> "1" (a black-box
    source serves both tables; it is counted once, under the first)."""
    cell = re.sub(r"\s*\((?!=)[^)]*\)", "", cell)
    return cell.split(" and ")[0].strip()


# ----------------------------------------------------------------------------- FLOPs


@dataclasses.dataclass(frozen=True)
class ModelKey:
    model: str
    dataset: str
    depth: int | None = None  # wide_resnet only (the other models take no depth/width)
    width: int | None = None

    @staticmethod
    def of(flagfile: Flagfile) -> ModelKey:
        wide = flagfile.model == "wide_resnet"
        return ModelKey(
            flagfile.model,
            flagfile.dataset,
            flagfile.depth if wide else None,
            flagfile.width if wide else None,
        )

    def __str__(self):
        arch = f"{self.model}-{self.depth}-{self.width}" if self.model == "wide_resnet" else self.model
        return f"{arch}/{self.dataset}"

    def build(self):
        from lrm_tf import data, models

        info = data.DATASETS[self.dataset]
        shape = (
            {"depth": self.depth or 28, "width": self.width or 10}
            if "depth" in models.model_arguments(self.model)
            else {}
        )
        return models.build_model(self.model, info.image_shape, info.num_classes, seed=0, **shape)

    @property
    def image_shape(self):
        from lrm_tf import data

        return data.DATASETS[self.dataset].image_shape


def _profile_flops(graph, op_types=None) -> int:
    """Float operations of `graph` by TensorFlow's profiler (ops with registered FLOP
    statistics), optionally only of the op types in `op_types`."""
    import tensorflow as tf

    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output()
    if op_types:
        options = options.with_accounted_types([f"^{t}$" for t in op_types])
    result = tf.compat.v1.profiler.profile(graph, options=options.build())
    return int(result.total_float_ops)


def _inference_graph(net, image_shape):
    import tensorflow as tf

    spec = tf.TensorSpec([1, *image_shape], tf.float32)
    return tf.function(lambda x: net(x, training=False)).get_concrete_function(spec).graph


def profiled_forward_flops(net, image_shape) -> tuple[int, int]:
    """(all FLOPs, Conv2D + MatMul FLOPs) of one image's forward pass, by the profiler."""
    graph = _inference_graph(net, image_shape)
    return _profile_flops(graph), _profile_flops(graph, ["Conv2D", "MatMul"])


def analytic_forward_flops(net) -> int:
    """2 x multiply-adds of every Conv2D and Dense layer for one image."""
    from keras import layers

    total = 0
    for layer in net.layers:
        if isinstance(layer, layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, h_out, w_out, _ = layer.output.shape
            total += 2 * kh * kw * cin * cout * h_out * w_out
        elif isinstance(layer, layers.Dense):
            n_in, n_out = layer.kernel.shape
            total += 2 * n_in * n_out
    return total


@dataclasses.dataclass
class ModelFlops:
    key: ModelKey
    params: int
    profiled: int  # the forward FLOPs used for costs
    profiled_conv_matmul: int
    analytic: int


def count_model_flops(key: ModelKey) -> ModelFlops:
    net = key.build()
    profiled, conv_matmul = profiled_forward_flops(net, key.image_shape)
    analytic = analytic_forward_flops(net)
    # The cross-check: the profiler's convolutions and matmuls are the layers' own
    # multiply-adds, and everything else it counts is a few per cent of element-wise work.
    if abs(conv_matmul - analytic) > 1e-3 * analytic:
        raise AssertionError(f"{key}: profiler Conv2D+MatMul {conv_matmul} != analytic {analytic}")
    if abs(profiled - analytic) > 0.05 * analytic:
        raise AssertionError(f"{key}: profiler total {profiled} is more than 5% from the analytic {analytic}")
    return ModelFlops(key, net.count_params(), profiled, conv_matmul, analytic)


def _pruned_gradient_flops(net, image_shape, wrt: str) -> int:
    """Profiler FLOPs of one image's loss gradient w.r.t. the input or the weights, on the
    graph pruned to the gradient's own inputs (what the function runtime executes).

    Inference-mode batch norm, so variables can be frozen into constants (their shapes are
    what the profiler needs after the pruning); the convolutions are the same in both modes.
    """
    import tensorflow as tf
    from tensorflow.python.framework import convert_to_constants

    def gradient(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = net(x, training=False)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        return tape.gradient(loss, x if wrt == "input" else net.trainable_variables)

    concrete = tf.function(gradient).get_concrete_function(
        tf.TensorSpec([1, *image_shape], tf.float32), tf.TensorSpec([1], tf.int64)
    )
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(
        frozen.graph.as_graph_def(), [t.op.name for t in frozen.outputs]
    )
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    return _profile_flops(graph)


def check_pass_costs(flops: ModelFlops) -> tuple[float, float]:
    """(weight-gradient pass, input-gradient pass) FLOPs over the forward FLOPs."""
    net = flops.key.build()
    shape = flops.key.image_shape
    return (
        _pruned_gradient_flops(net, shape, "weights") / flops.profiled,
        _pruned_gradient_flops(net, shape, "input") / flops.profiled,
    )


# ----------------------------------------------------------------------------- costs


@dataclasses.dataclass
class Cost:
    """FLOPs and sequential network passes (for the latency floor) of one job."""

    flops: float = 0.0
    passes: float = 0.0

    def __add__(self, other):
        return Cost(self.flops + other.flops, self.passes + other.passes)


@dataclasses.dataclass
class AttackUnits:
    """Per example: forward-pass equivalents; per batch: sequential network calls."""

    per_example: float
    calls_per_batch: float


def attack_units(
    name: str,
    attack_pass_cost: float,
    restarts: int,
    spsa_samples: int,
    attack_true_labels: bool = True,
    predict: bool = True,
) -> AttackUnits:
    """The work of attack `name` (then, with `predict`, one prediction) per example."""
    from lrm_tf import attacks

    spec = attacks.parse_attack(name)
    if spec.family == "clean":
        work, calls, randomized = 0.0, 0, False
    elif spec.family == "fgsm":
        work, calls, randomized = attack_pass_cost, 1, spec.rand_init
    elif spec.family == "pgd":
        work, calls, randomized = spec.steps * attack_pass_cost, spec.steps, spec.rand_init
    elif spec.family == "spsa":
        # Every iteration evaluates spsa_samples probes (spsa_samples/2 mirrored pairs), in
        # chunks of at most SPSA_CHUNK_SAMPLES probes per example per model call.
        pairs = spsa_samples // 2
        limit = max(1, min(pairs, SPSA_CHUNK_SAMPLES // 2))
        chunks = pairs // max(d for d in range(1, limit + 1) if pairs % d == 0)
        work, calls, randomized = spec.steps * spsa_samples, spec.steps * chunks, True
    else:
        # APGD, FAB, Square and the ensembles: the library's progress cost model
        # (lrm_tf.eval.cost, a gradient pass = 3 forward) with its gradient passes at
        # attack_pass_cost instead; one sequential call per step.
        from lrm_tf.config import Threat
        from lrm_tf.eval.cost import GRADIENT, attack_cost

        passes = attack_cost(spec, Threat(eps=1.0, eps_step=1.0, restarts=restarts)) - 1
        work, calls, randomized = passes * attack_pass_cost / GRADIENT, passes / GRADIENT, False
    runs = restarts if randomized else 1
    work, calls = runs * work, runs * calls
    if runs > 1:  # worst_case_over_restarts scores every restart's result once
        work, calls = work + runs, calls + runs
    if spec.targeted or (not attack_true_labels and spec.family != "clean"):
        work, calls = work + 1, calls + 1  # clean logits for the targets / predicted labels
    if predict:
        work, calls = work + 1, calls + 1
    return AttackUnits(work, calls)


def needs_clean_logits(flagfile: Flagfile) -> bool:
    """Whether a training step also runs the clean images: the term table's own rule
    (lrm_tf.objectives.terms.needs_clean_logits) on this flagfile's objective."""
    from lrm_tf.config import Objective
    from lrm_tf.objectives import terms

    fields = [f.name for f in dataclasses.fields(Objective)]
    return terms.needs_clean_logits(
        Objective(**{n: flagfile.flags[n] for n in fields if n in flagfile.flags})
    )


def training_steps(flagfile: Flagfile) -> int:
    from lrm_tf.data.registry import training_images  # split sizes: the dataset registry

    n_train = training_images(flagfile.dataset, extra=flagfile.svhn_extra)
    if flagfile.train_limit:
        n_train = min(n_train, flagfile.train_limit)
    from lrm_tf.training import TrainConfig, steps_plan

    return steps_plan(
        n_train,
        TrainConfig(
            batch_size=flagfile.batch_size,
            train_epochs=flagfile.train_epochs,
            train_steps=flagfile.train_steps,
        ),
    )[1]


def units_per_image(flagfile: Flagfile, attack_pass_cost: float) -> tuple[float, float, str]:
    """(forward equivalents per image of the batch, sequential passes per step, formula)."""
    if not flagfile.adv_train:
        return TRAIN_PASS_COST, 1, "3"
    # The training attack: build_attack's defaults (one start, true labels), no prediction.
    attack = attack_units(
        flagfile.adv_train, attack_pass_cost, restarts=1, spsa_samples=flagfile.spsa_samples, predict=False
    )
    m = 2 if needs_clean_logits(flagfile) else 1
    return (
        attack.per_example + TRAIN_PASS_COST * m,
        attack.calls_per_batch + 1,
        f"{attack.per_example:g} + 3x{m}",
    )


def training_cost(flagfile: Flagfile, forward: float, attack_pass_cost: float) -> Cost:
    steps = training_steps(flagfile)
    units, passes, _ = units_per_image(flagfile, attack_pass_cost)
    return Cost(steps * flagfile.batch_size * units * forward, steps * passes)


def _attacked_examples(flagfile: Flagfile, attack: str) -> int:
    from lrm_tf import attacks
    from lrm_tf.data.registry import dataset_info

    test_size = dataset_info(flagfile.dataset).test_size
    n = min(flagfile.eval_examples or test_size, test_size)
    if attacks.parse_attack(attack).family == "spsa" and flagfile.spsa_examples:
        n = min(n, flagfile.spsa_examples)
    return n


def _attack_cost(
    flagfile: Flagfile, attack: str, forward: float, attack_pass_cost: float, predict: bool
) -> Cost:
    n = _attacked_examples(flagfile, attack)
    units = attack_units(
        attack,
        attack_pass_cost,
        flagfile.restarts,
        flagfile.spsa_samples,
        flagfile.attack_true_labels,
        predict=predict,
    )
    batches = math.ceil(n / flagfile.eval_batch_size)
    return Cost(n * units.per_example * forward, batches * units.calls_per_batch)


def evaluation_cost(flagfile: Flagfile, forward_of, attack_pass_cost: float) -> Cost:
    """White-box evaluation (train, eval) or the black-box matrix (transfer).

    forward_of(run dir) -> F of the model trained there; "" is this flagfile's own model.
    """
    cost = Cost()
    if flagfile.mode == "transfer":
        sources = [p for p in flagfile.load_from.split(",") if p]
        targets = flagfile.transfer_targets or sources
        for attack in (a for a in flagfile.eval_attacks if a != "clean"):
            n = _attacked_examples(flagfile, attack)
            for source in sources:
                cost += _attack_cost(flagfile, attack, forward_of(source), attack_pass_cost, predict=False)
                for target in targets:  # one prediction per example and target
                    cost += Cost(n * forward_of(target), math.ceil(n / flagfile.eval_batch_size))
        return cost
    model = flagfile.load_from if flagfile.mode == "eval" else ""
    for attack in flagfile.eval_attacks:
        cost += _attack_cost(flagfile, attack, forward_of(model), attack_pass_cost, predict=True)
    return cost


# ----------------------------------------------------------------------------- the catalogue


@dataclasses.dataclass
class Row:
    flagfile: Flagfile
    model: ModelKey  # the model it trains or evaluates (the first source when transferring)
    train: Cost
    evaluation: Cost
    paper: str
    table: str

    def hours(self, tflops: float, latency_s: float) -> float:
        def part(cost):
            return max(cost.flops / (tflops * 1e12), cost.passes * latency_s) / 3600

        return part(self.train) + part(self.evaluation)

    def floor_hours(self, latency_s: float) -> float:
        return (self.train.passes + self.evaluation.passes) * latency_s / 3600


def load_catalogue(flags_dir: str):
    definitions = flag_definitions()
    flagfiles = [
        read_flagfile(os.path.join(flags_dir, name), definitions)
        for name in sorted(os.listdir(flags_dir))
        if name.endswith(".cfg")
    ]
    index, titles = read_index()
    return flagfiles, index, titles


def run_models(flagfiles: list[Flagfile]) -> dict[str, ModelKey]:
    """Run directory -> the model trained there, for eval and transfer flagfiles."""
    return {os.path.normpath(f.model_dir): ModelKey.of(f) for f in flagfiles if f.mode == "train"}


def model_of(flagfile: Flagfile, trained: dict[str, ModelKey], run_dir: str = "") -> ModelKey:
    if not run_dir:
        return ModelKey.of(flagfile)
    try:
        return trained[os.path.normpath(run_dir)]
    except KeyError:
        raise ValueError(f"{flagfile.stem}: no training flagfile writes {run_dir}") from None


def used_models(flagfile: Flagfile, trained) -> list[ModelKey]:
    if flagfile.mode == "train":
        return [ModelKey.of(flagfile)]
    dirs = [p for p in flagfile.load_from.split(",") if p] + list(flagfile.transfer_targets)
    return [model_of(flagfile, trained, d) for d in dirs]


def cost_rows(
    flagfiles, index, trained, flops: dict[ModelKey, ModelFlops], attack_pass_cost: float
) -> list[Row]:
    rows = []
    for f in flagfiles:
        if f.mode not in ("train", "eval", "transfer"):
            raise ValueError(f"{f.stem}: --mode={f.mode} has no cost model")
        forward_of = lambda run_dir, f=f: flops[model_of(f, trained, run_dir)].profiled
        train = training_cost(f, forward_of(""), attack_pass_cost) if f.mode == "train" else Cost()
        evaluation = evaluation_cost(f, forward_of, attack_pass_cost)
        paper, cell, _ = index.get(f.stem, ("starting point", "-", ""))
        rows.append(Row(f, used_models(f, trained)[0], train, evaluation, paper, table_label(cell)))
    return rows


# ----------------------------------------------------------------------------- report


def _natural(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _hours(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2g}" if value < 1 else f"{value:.1f}"


def flops_markdown(flops: dict[ModelKey, ModelFlops], pass_checks) -> list[str]:
    lines = [
        "## Forward FLOPs per image",
        "",
        "| model / dataset | parameters | profiler total | profiler Conv2D+MatMul | "
        "analytic conv+dense | total / analytic |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key in sorted(flops, key=lambda k: flops[k].profiled):
        m = flops[key]
        lines.append(
            f"| {key} | {m.params:,} | {m.profiled / 1e6:,.2f} M | "
            f"{m.profiled_conv_matmul / 1e6:,.2f} M | {m.analytic / 1e6:,.2f} M | "
            f"{m.profiled / m.analytic:.4f} |"
        )
    lines += ["", "Pass costs on the pruned gradient graphs (profiler FLOPs / forward FLOPs):", ""]
    for key, (weights, inputs) in pass_checks.items():
        lines.append(
            f"- {key}: gradient w.r.t. the weights {weights:.3f} x forward, "
            f"w.r.t. the input {inputs:.3f} x forward"
        )
    return lines + [""]


def table_markdown(rows: list[Row], titles, args) -> list[str]:
    low, high = args.gpu_tflops_low, args.gpu_tflops_high
    latency = args.pass_latency_ms / 1000
    groups = defaultdict(list)
    for row in rows:
        groups[(row.paper, row.table)].append(row)
    papers = list(titles) + ["starting point"]
    order = sorted(groups, key=lambda g: (papers.index(g[0]), _natural(g[1])))
    lines = [
        f"## Cost per paper table: one GPU at {low:g}-{high:g} effective TFLOP/s, "
        f"{args.pass_latency_ms:g} ms per network pass",
        "",
        "| paper | table | flagfiles | train PFLOP | eval PFLOP | GPU h (low-high) | "
        "floor h | dominant flagfile (share of high h) |",
        "|---|---|---:|---:|---:|---|---:|---|",
    ]
    totals = defaultdict(float)
    for paper, table in order:
        members = groups[(paper, table)]
        train = sum(r.train.flops for r in members) / 1e15
        evaluation = sum(r.evaluation.flops for r in members) / 1e15
        h_low = sum(r.hours(high, latency) for r in members)
        h_high = sum(r.hours(low, latency) for r in members)
        floor = sum(r.floor_hours(latency) for r in members)
        top = max(members, key=lambda r: r.hours(low, latency))
        share = top.hours(low, latency) / h_high if h_high else 0
        lines.append(
            f"| {paper} | {table} | {len(members)} | {train:,.2f} | {evaluation:,.2f} | "
            f"{_hours(h_low)}-{_hours(h_high)} | {_hours(floor)} | "
            f"`{top.flagfile.stem}` ({share:.0%}) |"
        )
        if paper != "starting point":
            for name, value in (
                ("n", len(members)),
                ("train", train),
                ("eval", evaluation),
                ("low", h_low),
                ("high", h_high),
                ("floor", floor),
            ):
                totals[name] += value
    lines.append(
        f"| **total (table rows)** | | {totals['n']:.0f} | {totals['train']:,.1f} | "
        f"{totals['eval']:,.1f} | **{_hours(totals['low'])}-{_hours(totals['high'])}** | "
        f"{_hours(totals['floor'])} | |"
    )
    lines += [
        "",
        "GPU h: max(FLOPs / throughput, passes x latency) for training and for "
        "evaluation, summed; low at the high throughput. floor h: the latency term alone. "
        "Black-box sources are counted under the first table they serve; the "
        "starting points (not table rows) are left out of the total.",
        "",
        "Papers: " + "; ".join(f"`{p}` {t}" for p, t in titles.items()),
        "",
    ]
    return lines


def details_markdown(rows: list[Row], args) -> list[str]:
    latency = args.pass_latency_ms / 1000
    lines = [
        "## Per flagfile",
        "",
        "| flagfile | mode | model | steps x B | fwd units per image (attack + 3 x m) | "
        "train PFLOP | eval PFLOP | GPU h (low-high) |",
        "|---|---|---|---:|---|---:|---:|---|",
    ]
    for row in sorted(rows, key=lambda r: -r.hours(args.gpu_tflops_low, latency)):
        f = row.flagfile
        if f.mode == "train":
            units = units_per_image(f, args.attack_pass_cost)
            plan, formula = f"{training_steps(f):,} x {f.batch_size}", units[2]
        else:
            plan, formula = "-", "-"
        lines.append(
            f"| `{f.stem}` | {f.mode} | {row.model} | {plan} | {formula} | "
            f"{row.train.flops / 1e15:,.3f} | {row.evaluation.flops / 1e15:,.3f} | "
            f"{_hours(row.hours(args.gpu_tflops_high, latency))}-"
            f"{_hours(row.hours(args.gpu_tflops_low, latency))} |"
        )
    return lines + [""]


def reference_markdown(rows: list[Row], flops, args) -> list[str]:
    """Effective throughput implied by the published wall-clock times."""
    by_stem = {r.flagfile.stem: r for r in rows}
    lines = ["## Reference points: throughput implied by published wall-clock times", ""]
    implied = {}
    for stem, hours in (SHAFAHI_SQUEEZE, SHAFAHI_ADVERSARIAL):
        if stem not in by_stem:
            lines.append(f"- `{stem}`: no such flagfile, skipped")
            continue
        row, f = by_stem[stem], by_stem[stem].flagfile
        implied[stem] = row.train.flops / (hours * 3600) / 1e12
        lines.append(
            f"- Shafahi et al. sec. 6, `{stem}` ({row.model}, batch {f.batch_size}, "
            f"{training_steps(f):,} steps, training attack {f.adv_train or 'none'}): "
            f"{row.train.flops / 1e15:,.0f} PFLOP in {hours} h -> "
            f"**{implied[stem]:.2f} effective TFLOP/s** on their (unnamed, ~2018) GPU"
        )
    if len(implied) == 2:
        squeeze, adversarial = (by_stem[s].flagfile for s in (SHAFAHI_SQUEEZE[0], SHAFAHI_ADVERSARIAL[0]))
        published = SHAFAHI_ADVERSARIAL[1] / SHAFAHI_SQUEEZE[1]
        predicted = {
            cost: (training_steps(adversarial) * units_per_image(adversarial, cost)[0])
            / (training_steps(squeeze) * units_per_image(squeeze, cost)[0])
            for cost in (2.0, 3.0)
        }
        lines.append(
            f"- time ratio adversarial / squeezed: published {published:.3f}; "
            f"predicted {predicted[2.0]:.3f} with attack passes at 2 F, "
            f"{predicted[3.0]:.3f} at 3 F (the adversarial row's 80k steps are "
            f"README D15's assumption)"
        )
    spsa = LRM_SPSA
    if spsa["stem"] in by_stem:
        model = by_stem[spsa["stem"]].model
        work = spsa["examples"] * spsa["iterations"] * spsa["samples"] * flops[model].profiled
        rate = work / (spsa["hours"] * 3600) / 1e12
        lines.append(
            f"- LRM sec. 5.3, SPSA ({spsa['iterations']} iterations x "
            f"{spsa['samples']} samples) on {spsa['examples']:,} images of {model}: "
            f"{work / 1e15:,.0f} PFLOP of forward passes in ~{spsa['hours']:g} h -> "
            f"**{rate:.2f} effective TFLOP/s** on {spsa['gpus']} GTX 1080 Ti "
            f"({rate / spsa['gpus']:.2f} per GPU, of 11.3 peak fp32)"
        )
    lines += [
        "",
        f"This report assumes {args.gpu_tflops_low:g}-{args.gpu_tflops_high:g} "
        "effective TFLOP/s on one H100.",
        "",
    ]
    return lines


# ----------------------------------------------------------------------------- --measure


def _median_seconds(fn, repeats: int) -> float:
    fn()  # trace, compile, warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        if hasattr(out, "numpy"):
            out.numpy()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_markdown(
    flops: dict[ModelKey, ModelFlops], models: list[str], batch: int, repeats: int
) -> list[str]:
    """Times a training step and an attack pass of each model on this machine."""
    import tensorflow as tf

    from lrm_tf import data, training
    from lrm_tf.attacks import _common
    from lrm_tf.attacks.losses import get_loss
    from lrm_tf.config import Objective

    keys = [k for k in sorted(flops, key=lambda k: flops[k].profiled) if not models or k.model in models]
    devices = ", ".join(d.device_type for d in tf.config.list_logical_devices())
    lines = [
        f"## Measured on this machine ({devices}; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at start), batch {batch}, median of {repeats}",
        "",
        "| model / dataset | train step ms | GFLOP/s (3 F B / step) | attack pass ms | "
        "GFLOP/s (2 F B / pass) | attack pass / train step |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key in keys:
        info = data.DATASETS[key.dataset]
        x = tf.random.uniform([batch, *info.image_shape], seed=1)
        y = tf.random.uniform([batch], maxval=info.num_classes, dtype=tf.int64, seed=2)
        cfg = training.TrainConfig(batch_size=batch, lr_values=(0.01,), lr_boundaries=(), verbose=0)
        trainer = training.build_trainer(key.build(), Objective(), info.num_classes, cfg, steps_per_epoch=1)
        trainer.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, verbose=0)  # builds it
        step = _median_seconds(lambda: trainer.train_function([(x, y)])["loss"], repeats)
        net = trainer.net
        loss_fn = get_loss("xent")
        attack_pass = tf.function(
            lambda x, y: _common.loss_gradient(lambda z: net(z, training=False), loss_fn, x, y, False)
        )
        grad = _median_seconds(lambda: attack_pass(x, y), repeats)
        forward = flops[key].profiled
        lines.append(
            f"| {key} | {1e3 * step:.1f} | {3 * forward * batch / step / 1e9:.1f} | "
            f"{1e3 * grad:.1f} | {2 * forward * batch / grad / 1e9:.1f} | "
            f"{grad / step:.2f} |"
        )
    lines += [
        "",
        f"Load average at end {os.getloadavg()[0]:.1f}. The attack pass / train step "
        "ratio is 2/3 if the FLOP model holds (the train step also updates the weights).",
        "",
    ]
    return lines


# ----------------------------------------------------------------------------- main


FLOPS_FILE = os.path.join(REPO, "lrm_tf", "reproduce", "forward_flops.json")


def write_flops(flops: dict[ModelKey, ModelFlops], path: str = FLOPS_FILE) -> None:
    """Writes {"<model>/<dataset>": forward FLOPs per image (profiled)} for the plan's costs."""
    import json

    about = "forward FLOPs per image, TensorFlow's profiler: python benchmarks/gpu_cost.py --write_flops"
    data = {"_about": about}
    data.update({str(key): flops[key].profiled for key in sorted(flops, key=str)})
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print(f"wrote {path}")


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--flags_dir", default=os.path.join(REPO, "flags"))
    p.add_argument(
        "--gpu_tflops_low",
        type=float,
        default=60.0,
        help="pessimistic effective TFLOP/s of one GPU (the high hours)",
    )
    p.add_argument(
        "--gpu_tflops_high",
        type=float,
        default=200.0,
        help="optimistic effective TFLOP/s of one GPU (the low hours)",
    )
    p.add_argument(
        "--pass_latency_ms",
        type=float,
        default=0.3,
        help="fixed cost of one network pass (launches, per-step Python); 0: FLOPs only",
    )
    p.add_argument(
        "--attack_pass_cost",
        type=float,
        default=2.0,
        help="an attack's forward+backward to the input, in forward passes",
    )
    p.add_argument("--details", action="store_true", help="also a table per flagfile")
    p.add_argument("--markdown", default="", help="also write the report to this file")
    p.add_argument(
        "--measure", action="store_true", help="time a training step and an attack pass of each model here"
    )
    p.add_argument(
        "--models",
        default="",
        help="--measure: comma list of model names "
        "(e.g. mnist_cnn,resnet8; default: every model the flagfiles use)",
    )
    p.add_argument(
        "--write_flops",
        action="store_true",
        help="write every model's forward FLOPs per image to lrm_tf/reproduce/forward_flops.json "
        "(what --mode=reproduce --plan estimates costs from)",
    )
    p.add_argument("--measure_batch", type=int, default=32)
    p.add_argument("--measure_repeats", type=int, default=5)
    args = p.parse_args(argv)
    if not 0 < args.gpu_tflops_low <= args.gpu_tflops_high:
        p.error("need 0 < --gpu_tflops_low <= --gpu_tflops_high")

    import tensorflow as tf
    from absl import logging

    tf.get_logger().setLevel("ERROR")
    logging.set_verbosity(logging.ERROR)
    t0 = time.time()

    flagfiles, index, titles = load_catalogue(args.flags_dir)
    trained = run_models(flagfiles)
    keys = {key for f in flagfiles for key in used_models(f, trained)}
    flops = {key: count_model_flops(key) for key in sorted(keys, key=str)}
    pass_checks = {}
    for model, dataset in CHECKED_MODELS:
        key = ModelKey(model, dataset)
        pass_checks[key] = check_pass_costs(flops.get(key) or count_model_flops(key))
    if args.write_flops:
        write_flops(flops)
    rows = cost_rows(flagfiles, index, trained, flops, args.attack_pass_cost)

    lines = [
        f"# GPU cost of the flags/ catalogue ({len(flagfiles)} flagfiles)",
        "",
        f"Attack passes at {args.attack_pass_cost:g} F, training passes at "
        f"{TRAIN_PASS_COST:g} F (F: one image's forward FLOPs); see "
        "benchmarks/gpu_cost.py's docstring for the cost model.",
        "",
    ]
    lines += table_markdown(rows, titles, args)
    lines += reference_markdown(rows, flops, args)
    lines += flops_markdown(flops, pass_checks)
    if args.details:
        lines += details_markdown(rows, args)
    if args.measure:
        models = [m for m in args.models.split(",") if m]
        lines += measure_markdown(flops, models, args.measure_batch, args.measure_repeats)
    lines.append(f"_{time.time() - t0:.1f} s; command: {' '.join(sys.argv)}_")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
