"""Training-step cost of every objective against its ideal (SPEC 6), and the input pipeline.

Three ratios, each from medians over rounds that run every configuration once in the same
order (interleaved), so load changes on a shared machine hit all configurations alike:

  cheap defenses       step(defense) / step(regular)                         target <= 1.05
                       label smoothing, logit squeeze (example, batch), logit similarity,
                       Gaussian noise, clean logit pairing
  adversarial ones     step(defense) / (attack + step on the clean+adv batch)  target <= 1.10
                       PGD-k training (M-PGD and adversarial-only), ALP, decoupled pairing, LRM.
                       attack = the training attack alone (lrm_tf.attacks, model in inference
                       mode, as compose runs it) in a tf.function on the same batch; the step =
                       a regular training step on the 2B concatenated batch (B when the
                       objective uses no clean logits).
  input pipeline       fit over N batches of lrm_tf.data.train_dataset (shuffled, augmented
                       uint8 -> float) / fit over N copies of one float batch already in memory
                       (tf.data.Dataset.from_tensors(...).repeat(N)), regular step   <= 1.05

Steps are timed by calling the trainer's `train_function` (what `fit` runs per step: the
compiled strategy.run(train_step)) on one fixed batch, for trainers from
lrm_tf.training.build_trainer; wall time is primary, process CPU time (all
threads) is printed beside it as the less contention-sensitive figure.

    python benchmarks/bench_train.py                                   # resnet_simple, B=128, PGD-7
    python benchmarks/bench_train.py --model resnet8 --batch 64 --repeats 7

--torch (issue 14, scope 6) times instead lrm_tf against a PyTorch copy of the same network
(benchmarks/torch_models.py, the same initial weights) doing the same work: a regular step
and a PGD-k adversarial-training step (Madry's objective: the loss on adversarial examples
only; L-inf eps 8/255, step 2/255, random start; the attack runs the model in inference mode,
as lrm_tf's training attack does), SGD with momentum 0.9 and weight decay 2e-4 on the kernels
(LRM's recipe), batch norm in training mode for the step; and the attack alone. Each torch
configuration runs at every --torch_threads value (torch.set_num_threads before each call);
rounds interleave all configurations, alternating their order. Needs torch, so run it with
the peers interpreter (it sees lrm_tf's TensorFlow):

    ../peers/bin/python benchmarks/bench_train.py --torch --torch_threads 1,2 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # lrm_tf from this checkout, whatever the interpreter (--torch: peers)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))  # torch_models

EPS, EPS_STEP = 8 / 255, 2 / 255


def objectives(attack):
    from lrm_tf.config import Objective

    cheap = {
        "regular": Objective(),
        "label_smoothing": Objective(label_smoothing=0.1),
        "logit_squeeze_example": Objective(logit_squeeze=0.05, logit_squeeze_form="example"),
        "logit_squeeze_batch": Objective(logit_squeeze=0.05, logit_squeeze_form="batch"),
        "logit_similarity": Objective(logit_similarity=0.1),
        "noise": Objective(noise_sigma=0.03),
        "clean_pairing": Objective(clean_pairing=0.5),
    }
    adversarial = {
        "pgd_training_mpgd": Objective(adv_train=attack, adv_alpha=0.5),
        "pgd_training_adv_only": Objective(adv_train=attack, adv_alpha=0.0),
        "alp": Objective(adv_train=attack, adv_alpha=0.5, alp_weight=0.5),
        "decoupled_pairing": Objective(
            adv_train=attack, adv_alpha=0.0, pairing_ratio=0.125, pairing_beta=1e-3
        ),
        "lrm": Objective(
            adv_train=attack,
            adv_alpha=0.0,
            label_smoothing=0.1,
            mixup="vh_mixup",
            pairing_ratio=0.125,
            pairing_beta=1e-3,
        ),
    }
    return cheap, adversarial


def timed(fn):
    """(wall s, process CPU s) of one call of fn, a returned tensor read back (so the device
    has finished)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    if hasattr(out, "numpy"):
        out.numpy()
    return time.perf_counter() - t0, time.process_time() - c0


def fitted_trainer(net, objective, cfg, threat, x=None, y=None):
    """A trainer from lrm_tf.training.build_trainer for `net`; given a batch (x, y), one `fit`
    on it builds everything and creates the trainer's `train_function` (its first step)."""
    import tensorflow as tf

    from lrm_tf import training

    classes = int(net.output_shape[-1])
    tr = training.build_trainer(net, objective, classes, cfg, steps_per_epoch=100, threat=threat)
    if x is not None:
        tr.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, verbose=0, shuffle=False)
    return tr


def train_step_fn(trainer, x, y):
    """fit's compiled step (strategy.run(train_step) + metric reduction), fed one batch: a
    callable returning the loss tensor."""
    return lambda: trainer.train_function([(x, y)])["loss"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet_simple")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--attack", default="pgd7_xent", help="the training attack")
    p.add_argument("--repeats", type=int, default=5, help="rounds for cheap steps and pipeline")
    p.add_argument("--adv_repeats", type=int, default=3, help="rounds for adversarial steps")
    p.add_argument("--pipeline_steps", type=int, default=20, help="batches per timed epoch")
    p.add_argument("--only", default="", help="comma list of objectives (default: all)")
    p.add_argument(
        "--jit",
        action="store_true",
        help="TrainConfig.jit_compile (XLA on the whole "
        "train step; for adversarial objectives this compiles PGD's while loop too)",
    )
    p.add_argument(
        "--torch",
        action="store_true",
        help="only lrm_tf vs a PyTorch copy: regular and PGD "
        "(--attack) training steps and the attack alone (needs torch: ../peers/bin/python)",
    )
    p.add_argument(
        "--torch_threads", default="1,2", help="--torch: comma list of torch.set_num_threads values"
    )
    args = p.parse_args()

    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # before TensorFlow: the CPU kernels lrm_tf.main uses
    if args.torch:
        torch_comparison(args)
        return
    import keras
    import tensorflow as tf

    from lrm_tf import attacks, data, models, training
    from lrm_tf.config import Objective, Threat
    from lrm_tf.objectives.terms import needs_clean_logits

    threat = Threat(eps=EPS, eps_step=EPS_STEP)
    tf.get_logger().setLevel("ERROR")

    info = data.dataset_info("cifar10")
    cheap, adversarial = objectives(args.attack)
    if args.only:
        keep = set(args.only.split(",")) | {"regular"}
        cheap = {k: v for k, v in cheap.items() if k in keep}
        adversarial = {k: v for k, v in adversarial.items() if k in keep}
    b = args.batch
    cfg = training.TrainConfig(
        batch_size=b, lr_values=(0.01,), lr_boundaries=(), seed=0, jit_compile=args.jit, verbose=0
    )

    def trainer_for(objective, xb=None, yb=None):
        net = models.build_model(args.model, info.image_shape, info.num_classes, seed=0)
        return fitted_trainer(net, objective, cfg, threat, xb, yb)

    arrays = data.synthetic_arrays("cifar10", b * args.pipeline_steps, 16, seed=0)
    x = data.to_float(arrays.x_train[:b])
    y = tf.constant(arrays.y_train[:b])
    x2, y2 = tf.concat([x, x], 0), tf.concat([y, y], 0)

    fns = {}
    for name, obj in {**cheap, **adversarial}.items():
        fns[("step", name)] = train_step_fn(trainer_for(obj, x, y), x, y)
    fns[("step2B", "regular")] = train_step_fn(trainer_for(Objective(), x2, y2), x2, y2)
    attack_net = models.build_model(args.model, info.image_shape, info.num_classes, seed=0)
    attack = tf.function(attacks.build_attack(args.attack, lambda z: attack_net(z, training=False), threat))
    seed = tf.constant([0, 37], tf.int64)
    if adversarial:
        fns[("attack", args.attack)] = lambda: attack(x, y, seed)

    pipe_trainer = trainer_for(Objective())
    memory_ds = tf.data.Dataset.from_tensors((x, y)).repeat(args.pipeline_steps)

    def pipeline_epoch(epoch=[0]):  # noqa: B006 - the counter persists across calls on purpose
        epoch[0] += 1
        ds = data.train_dataset(arrays, b, seed=0, epoch=epoch[0])
        pipe_trainer.fit(ds, epochs=1, verbose=0, shuffle=False)

    def memory_epoch():
        pipe_trainer.fit(memory_ds, epochs=1, verbose=0, shuffle=False)

    def pipeline_only(epoch=[0]):  # noqa: B006 - the counter persists across calls on purpose
        epoch[0] += 1
        for _ in data.train_dataset(arrays, b, seed=0, epoch=epoch[0]):
            pass

    fns[("epoch", "tf.data pipeline")] = pipeline_epoch
    fns[("epoch", "in-memory batches")] = memory_epoch
    fns[("epoch", "pipeline alone (no training)")] = pipeline_only

    print(
        f"# bench_train: {args.model}, batch {b}, attack {args.attack}, jit_compile={args.jit}, "
        f"TF {tf.__version__}, keras {keras.__version__}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at start",
        flush=True,
    )
    first = {}
    for key, fn in fns.items():  # tracing and first runs, outside the timed rounds
        first[key] = timed(fn)[0]
    samples = {key: [] for key in fns}
    rounds = max(args.repeats, args.adv_repeats)
    adv_keys = {("step", n) for n in adversarial} | {("attack", args.attack)}
    for r in range(rounds):
        for key, fn in fns.items():
            if r >= (args.adv_repeats if key in adv_keys else args.repeats):
                continue
            samples[key].append(timed(fn))
        print(f"# round {r + 1}/{rounds} done, load average {os.getloadavg()[0]:.1f}", flush=True)

    med = lambda key, i: statistics.median(s[i] for s in samples[key])
    rows = []

    def row(name, kind, num, den, target, n):
        ratio_w, ratio_c = num[0] / den[0], num[1] / den[1]
        miss = f"{100 * (ratio_w / target - 1):+.1f}%" if ratio_w > target else "met"
        rows.append(
            f"| {name} | {kind} | {num[0]:.3f} | {den[0]:.3f} | {ratio_w:.3f} | "
            f"{ratio_c:.3f} | {target:.2f} | {miss} | {n} |"
        )

    reg = (med(("step", "regular"), 0), med(("step", "regular"), 1))
    for name in cheap:
        if name == "regular":
            continue
        key = ("step", name)
        row(name, "cheap / regular", (med(key, 0), med(key, 1)), reg, 1.05, len(samples[key]))
    if adversarial:
        atk = (med(("attack", args.attack), 0), med(("attack", args.attack), 1))
        step2 = (med(("step2B", "regular"), 0), med(("step2B", "regular"), 1))
        for name, obj in adversarial.items():
            key = ("step", name)
            step = step2 if needs_clean_logits(obj) else reg
            ideal = (atk[0] + step[0], atk[1] + step[1])
            row(
                name,
                "adv / (attack + step" + ("2B" if needs_clean_logits(obj) else "B") + ")",
                (med(key, 0), med(key, 1)),
                ideal,
                1.10,
                len(samples[key]),
            )
    pipe = (med(("epoch", "tf.data pipeline"), 0), med(("epoch", "tf.data pipeline"), 1))
    mem = (med(("epoch", "in-memory batches"), 0), med(("epoch", "in-memory batches"), 1))
    row(
        f"input pipeline ({args.pipeline_steps} steps)",
        "tf.data / in-memory",
        pipe,
        mem,
        1.05,
        len(samples[("epoch", "tf.data pipeline")]),
    )

    print("\n## components (medians; seconds)")
    print("| what | wall s | cpu s | first call s | rounds |")
    print("|---|---:|---:|---:|---:|")
    for key in fns:
        print(
            f"| {key[0]} {key[1]} | {med(key, 0):.3f} | {med(key, 1):.3f} | {first[key]:.2f} | "
            f"{len(samples[key])} |"
        )
    print("\n## ratios (wall time is primary; cpu = process CPU time ratio)")
    print(
        "| objective | ratio of | measured s | ideal s | ratio (wall) | ratio (cpu) | target | "
        "missed by | rounds |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|---:|")
    print("\n".join(rows))
    print(f"\n# load average at end {os.getloadavg()[0]:.1f}; command: {' '.join(sys.argv)}")


def torch_comparison(args):
    """--torch: lrm_tf's regular and PGD training steps (and the attack alone) against the
    PyTorch copy doing the same work; medians of interleaved rounds."""
    import keras
    import tensorflow as tf
    import torch
    from torch_models import nchw, pgd, sgd, torch_copy, train_step

    from lrm_tf import attacks, data, models, training
    from lrm_tf.config import Objective, Threat

    spec = attacks.parse_attack(args.attack)
    if (spec.family, spec.norm, spec.loss, spec.target) != ("pgd", "linf", "xent", "none"):
        raise SystemExit(
            f"--torch: the torch side runs untargeted L-inf PGD on cross-entropy, not {args.attack}"
        )
    threads = [int(t) for t in args.torch_threads.split(",") if t]
    tf.get_logger().setLevel("ERROR")
    threat = Threat(eps=EPS, eps_step=EPS_STEP)
    info = data.dataset_info("cifar10")
    b, lr = args.batch, 0.01
    cfg = training.TrainConfig(
        batch_size=b, lr_values=(lr,), lr_boundaries=(), seed=0, jit_compile=args.jit, verbose=0
    )
    arrays = data.synthetic_arrays("cifar10", b, 16, seed=0)
    x, y = data.to_float(arrays.x_train[:b]), tf.constant(arrays.y_train[:b])
    xt, yt = nchw(x.numpy()), torch.from_numpy(arrays.y_train[:b].astype("int64"))
    generator = torch.Generator().manual_seed(0)

    fns, first_loss = {}, {}  # (tool, work) -> (threads or None, fn)
    objectives = {
        "regular step": Objective(),
        f"{spec.name} step": Objective(adv_train=args.attack, adv_alpha=0.0),
    }
    for work, objective in objectives.items():
        net = models.build_model(args.model, info.image_shape, info.num_classes, seed=0)
        copy = torch_copy(net, tf_sums=False).train()  # same initial weights; torch's own sums
        trainer = training.build_trainer(
            net, objective, info.num_classes, cfg, steps_per_epoch=100, threat=threat
        )
        logs = trainer.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, verbose=0, shuffle=False).history
        first_loss[("lrm_tf", work)] = logs["loss"][0] - logs["weight_decay"][0]
        fns[("lrm_tf", work)] = (None, lambda trainer=trainer: trainer.train_function([(x, y)])["loss"])
        optimizer = sgd(copy, lr, cfg.momentum, cfg.weight_decay)
        if objective.adversarial:

            def step(copy=copy, optimizer=optimizer):
                x_adv = pgd(copy, xt, yt, EPS, EPS_STEP, spec.steps, generator)
                return train_step(copy, optimizer, x_adv, yt)

        else:

            def step(copy=copy, optimizer=optimizer):
                return train_step(copy, optimizer, xt, yt)

        first_loss[("torch", work)] = float(step())
        for t in threads:
            fns[(f"torch {t} thr", work)] = (t, step)
    attack_net = models.build_model(args.model, info.image_shape, info.num_classes, seed=0)
    attack_copy = torch_copy(attack_net, tf_sums=False)
    attack = tf.function(attacks.build_attack(args.attack, lambda z: attack_net(z, training=False), threat))
    seed = tf.constant([0, 37], tf.int64)
    work = f"{spec.name} attack alone"
    fns[("lrm_tf", work)] = (None, lambda: attack(x, y, seed))
    for t in threads:
        fns[(f"torch {t} thr", work)] = (
            t,
            lambda: pgd(attack_copy, xt, yt, EPS, EPS_STEP, spec.steps, generator),
        )

    def run(key):
        t, fn = fns[key]
        if t is not None:
            torch.set_num_threads(t)  # outside the timed call
        return timed(fn)

    print(
        f"# bench_train --torch: {args.model}, batch {b}, {spec.name} (eps 8/255, step 2/255, random "
        f"start), SGD lr {lr} momentum {cfg.momentum} weight decay {cfg.weight_decay}; TF {tf.__version__}, "
        f"keras {keras.__version__} (intra-op threads "
        f"{tf.config.threading.get_intra_op_parallelism_threads()} = default: all cores), "
        f"jit_compile={args.jit}; torch {torch.__version__}, threads {threads}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
        flush=True,
    )
    regular, adv = "regular step", f"{spec.name} step"
    print(
        f"# same work: first regular step cross-entropy lrm_tf {first_loss[('lrm_tf', regular)]:.6f}, torch "
        f"{first_loss[('torch', regular)]:.6f} (same weights and batch); first {spec.name} step lrm_tf "
        f"{first_loss[('lrm_tf', adv)]:.4f}, torch {first_loss[('torch', adv)]:.4f}"
        " (random starts differ)",
        flush=True,
    )
    first = {key: run(key)[0] for key in fns}  # tracing and first calls, untimed
    samples = {key: [] for key in fns}
    for r in range(args.repeats):
        order = list(fns) if r % 2 == 0 else list(reversed(fns))
        for key in order:
            samples[key].append(run(key))
        print(f"# round {r + 1}/{args.repeats} done, load average {os.getloadavg()[0]:.1f}", flush=True)

    med = lambda key, i: statistics.median(s[i] for s in samples[key])  # noqa: E731
    print(f"\n## lrm_tf vs PyTorch (medians of {args.repeats} interleaved rounds; seconds)")
    head = "| work | lrm_tf wall s | lrm_tf cpu s |"
    rule = "|---|---:|---:|"
    for t in threads:
        head += f" torch {t} thr wall s | torch {t} thr cpu s | lrm_tf / torch {t} thr (wall) | (cpu) |"
        rule += "---:|---:|---:|---:|"
    print(head + "\n" + rule)
    for work in [*objectives, f"{spec.name} attack alone"]:
        ours = (med(("lrm_tf", work), 0), med(("lrm_tf", work), 1))
        line = f"| {work} | {ours[0]:.3f} | {ours[1]:.3f} |"
        for t in threads:
            key = (f"torch {t} thr", work)
            theirs = (med(key, 0), med(key, 1))
            ratios = f"{ours[0] / theirs[0]:.2f} | {ours[1] / theirs[1]:.2f}"
            line += f" {theirs[0]:.3f} | {theirs[1]:.3f} | {ratios} |"
        print(line)
    print("\nfirst calls (tracing), s: " + ", ".join(f"{k[0]} {k[1]} {v:.2f}" for k, v in first.items()))
    print(f"\n# load average at end {os.getloadavg()[0]:.1f}; command: {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
