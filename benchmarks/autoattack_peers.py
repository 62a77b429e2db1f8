"""lrm_tf's AutoAttack against the reference AutoAttack and torchattacks, on the same weights.

Issue 13, scope 5 (acceptance criteria 2 and 5). Given an lrm_tf run directory of an
`mnist_cnn` (any model made of Conv2D, MaxPooling2D, Flatten, Dense and ReLU layers) or of a
Madry CIFAR ResNet (`resnet_simple`, `resnet8`, `wide_resnet`, e.g. a run trained with
--dataset=cifar10 --model=resnet_simple), this builds a PyTorch copy of the same weights
(benchmarks/torch_models.py), checks that its logits equal the Keras model's (max
|difference| <= --logit_tolerance on the evaluated images), then runs on the same N test
images and the same eps, in one process and interleaved (attack by attack, the tools in
alternating order, so a change of load on a shared machine hits them alike):

  reference   pyautoattack (fra31/auto-attack packaged on PyPI, what RobustBench depends on):
              AutoAttack(version='standard', seed=0); 'apgd-ce', 'apgd-t', 'fab-t', 'square'
              each on its own (as `run_standard_evaluation_individual`: attacks_to_run=[name],
              points clean-misclassified count as broken), then the full ensemble.
  torchattacks  torchattacks.AutoAttack(version='standard', n_classes=K, seed=0) (its
              defaults: 10 APGD/FAB steps, K-1 targets, rescaled Square schedule; AUTOATTACK.md).
  lrm_tf      lrm_tf.eval.evaluation.attack_accuracy with apgd_ce, apgd_t, fab_t, square and
              autoattack (same batch size as the reference's; the time includes tracing, as a
              user's first call; both tools are warmed up once on 4 images first).

--attacks picks the rows (e.g. `--attacks autoattack`: the ensembles only; the individual
attacks double the cost) and --tools the tools (e.g. `--tools reference,lrm_tf`).

Prints one table per eps (robust accuracy and wall time per attack and tool, lrm_tf's time
over the reference's) and exits 1 when an lrm_tf attack's robust accuracy differs from the
reference's by more than --tolerance points.

PyTorch, pyautoattack and torchattacks are never lrm_tf dependencies: run this in the peers
environment (BUILD_NOTES.md, "Peers (separate environments)"), a venv that sees lrm_tf's
TensorFlow through a .pth file, with a CPU torch installed first:

    ../peers/bin/pip install torch==2.13.0
    ../peers/bin/pip install --no-deps pyautoattack==0.2.0 torchattacks
    python -m lrm_tf.main --flagfile=flags/quickstart.cfg --model_dir=/tmp/qs_aa
    ../peers/bin/python benchmarks/autoattack_peers.py --run /tmp/qs_aa --eps 0.3,0.1
    ../peers/bin/python benchmarks/autoattack_peers.py --run <cifar10 resnet_simple run> \
        --local_data ../shared/data/cifar10-jpeg --examples 1000 --eps 0.031373 --attacks autoattack
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # lrm_tf from this checkout, whatever the environment
sys.path.insert(0, os.path.join(REPO, "benchmarks"))  # torch_models, however this is started

# (label, reference AutoAttack name, lrm_tf attack name); None: not run by that tool.
ATTACKS = (
    ("APGD-CE", "apgd-ce", "apgd_ce"),
    ("APGD-T", "apgd-t", "apgd_t"),
    ("FAB-T", "fab-t", "fab_t"),
    ("Square", "square", "square"),
    ("AutoAttack", "standard", "autoattack"),
)
TOOLS = ("reference", "lrm_tf", "torchattacks")  # torchattacks runs the ensemble only


def _key(name):
    return name.lower().replace("-", "").replace("_", "")


def select_attacks(text):
    """The ATTACKS rows named in a comma list; each by its label, reference or lrm_tf name,
    in any case ('AutoAttack', 'standard', 'autoattack', 'apgd-ce', 'APGD_CE')."""
    names = {_key(n) for n in text.split(",") if n.strip()}
    known = {_key(n) for row in ATTACKS for n in row}
    if names - known:
        labels = ", ".join(a[0] for a in ATTACKS)
        raise SystemExit(f"--attacks: unknown {', '.join(sorted(names - known))}; choose from {labels}")
    return [row for row in ATTACKS if names & {_key(n) for n in row}]


# --------------------------------------------------------------------------- the tools


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


class Reference:
    """pyautoattack's AutoAttack, standard version; each attack alone or the ensemble."""

    def __init__(self, model, eps, seed, batch_size):
        from pyautoattack import AutoAttack

        self.aa = AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=seed, device="cpu")
        self.standard = list(self.aa.attacks_to_run)
        self.batch_size = batch_size

    def __call__(self, name, xt, yt):
        self.aa.attacks_to_run = self.standard if name == "standard" else [name]
        _, y_adv = self.aa.run_standard_evaluation(xt, yt, batch_size=self.batch_size)
        self.aa.attacks_to_run = self.standard
        return int((y_adv == yt).sum()) / len(yt)  # exact, not a float32 mean


def torchattacks_autoattack(model, eps, seed, classes, batch_size, xt, yt):
    import torch
    import torchattacks

    attack = torchattacks.AutoAttack(
        model, norm="Linf", eps=eps, version="standard", n_classes=classes, seed=seed
    )
    correct = 0
    for i in range(0, len(xt), batch_size):
        x, y = xt[i : i + batch_size], yt[i : i + batch_size]
        adv = attack(x, y)
        with torch.no_grad():
            correct += int((model(adv).argmax(1) == y).sum())
    return correct / len(xt)


def lrm_tf_attack(model, x, y, name, eps, batch_size):
    """(robust accuracy, stage accuracies or None) of lrm_tf's attack `name`."""
    from lrm_tf.config import Threat
    from lrm_tf.eval import evaluation

    threat = Threat(eps=eps, eps_step=eps / 4)  # APGD, FAB and Square set their own steps
    outcome_fn = getattr(evaluation, "attack_outcome", None)
    if outcome_fn is None:
        accuracy, _ = evaluation.attack_accuracy(
            model, x, y, name, threat, batch_size=batch_size, progress=False
        )
        return accuracy, None
    outcome = outcome_fn(model, x, y, name, threat, batch_size, progress=False, log=lambda _line: None)
    stages = outcome.details.get("stages") if outcome.details else None
    return float(outcome.correct.mean()), stages


# --------------------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="an lrm_tf run directory (model.keras, flags.json)")
    parser.add_argument("--eps", default="0.3", help="comma-separated L-inf budgets in the [0, 1] scale")
    parser.add_argument("--examples", type=int, default=0, help="first N test images (0: all)")
    parser.add_argument("--local_data", default="", help="as lrm_tf's --local_data (digits: none)")
    parser.add_argument(
        "--batch_size", type=int, default=250, help="every tool's batch (AutoAttack's default)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tolerance", type=float, default=1.0, help="points lrm_tf may differ from the reference"
    )
    parser.add_argument("--logit_tolerance", type=float, default=1e-4)
    parser.add_argument(
        "--attacks",
        default="APGD-CE,APGD-T,FAB-T,Square,AutoAttack",
        help="rows to run, by label or lrm_tf name, any case (autoattack: the ensembles only)",
    )
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"comma list of {', '.join(TOOLS)}")
    parser.add_argument(
        "--no_torchattacks", action="store_true", help="same as leaving torchattacks out of --tools"
    )
    parser.add_argument("--torch_threads", type=int, default=0, help="torch.set_num_threads (0: all CPUs)")
    parser.add_argument("--json", default="", help="also write the rows to this file")
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf
    import torch
    from torch_models import torch_copy

    import lrm_tf  # noqa: F401  (registers lrm_tf's layers for load_model)
    from lrm_tf import data

    selected = select_attacks(args.attacks)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if set(tools) - set(TOOLS) or not tools:
        raise SystemExit(f"--tools: choose from {', '.join(TOOLS)}, got {args.tools!r}")
    if args.no_torchattacks and "torchattacks" in tools:
        tools.remove("torchattacks")
    torch.set_num_threads(args.torch_threads or os.cpu_count())
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    with open(os.path.join(args.run, "flags.json")) as f:
        flags = json.load(f)
    arrays = data.load_arrays(flags["dataset"], local_data=args.local_data or None)
    n = args.examples or len(arrays.y_test)
    x = data.to_float(arrays.x_test[:n]).numpy().astype(np.float32)
    y = arrays.y_test[:n].astype(np.int64)
    model = keras.models.load_model(os.path.join(args.run, "model.keras"), compile=False)
    net = torch_copy(model)
    xt, yt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y)  # NCHW for torch

    keras_logits = np.asarray(model(x, training=False))
    with torch.no_grad():
        torch_logits = net(xt).numpy()
    diff = float(np.max(np.abs(keras_logits - torch_logits)))
    classes = keras_logits.shape[1]
    clean = float(np.mean(keras_logits.argmax(1) == y))
    print(
        f"# {args.run}: {flags.get('model')} on {n} {flags['dataset']} test images, "
        f"clean {100 * clean:.2f}%; "
        f"max |logit difference| Keras vs PyTorch copy {diff:.2e} (largest |logit| "
        f"{np.abs(keras_logits).max():.1f}); TF {tf.__version__}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    if diff > args.logit_tolerance or not np.array_equal(keras_logits.argmax(1), torch_logits.argmax(1)):
        print(f"PyTorch copy differs from the Keras model by {diff:.2e} > {args.logit_tolerance:g}")
        sys.exit(2)

    # Warm-up, untimed: one-off costs of each library's first call (thread pools, kernels).
    if "reference" in tools:
        Reference(net, 0.1, args.seed, args.batch_size)("apgd-ce", xt[:4], yt[:4])
    if "lrm_tf" in tools:
        lrm_tf_attack(model, x[:4], y[:4], "apgd_ce", 0.1, args.batch_size)

    rows, failures = [], []
    for eps in [float(e) for e in args.eps.split(",") if e]:
        reference = Reference(net, eps, args.seed, args.batch_size) if "reference" in tools else None
        table = []
        for i, (label, ref_name, ours) in enumerate(selected):
            runs = {
                "reference": lambda ref_name=ref_name: (reference(ref_name, xt, yt), None),
                "lrm_tf": lambda ours=ours, eps=eps: lrm_tf_attack(model, x, y, ours, eps, args.batch_size),
                "torchattacks": lambda eps=eps: (
                    torchattacks_autoattack(net, eps, args.seed, classes, args.batch_size, xt, yt),
                    None,
                ),
            }
            runs = {
                t: fn
                for t, fn in runs.items()
                if t in tools and (t != "torchattacks" or ref_name == "standard")
            }
            order = list(runs) if i % 2 == 0 else list(reversed(runs))  # alternate who goes first
            result = {}
            for tool in order:
                (accuracy, stages), seconds = _timed(runs[tool])
                result[tool] = (accuracy, seconds, stages)
                print(
                    f"#   eps {eps:g} {label:<10} {tool:<12} {100 * accuracy:6.2f}%  {seconds:8.1f} s",
                    flush=True,
                )
            table.append((label, result))
            rows.append(
                {
                    "eps": eps,
                    "attack": label,
                    "n": n,
                    **{f"{t}_accuracy": r[0] for t, r in result.items()},
                    **{f"{t}_seconds": r[1] for t, r in result.items()},
                    "lrm_tf_stages": result["lrm_tf"][2] if "lrm_tf" in result else None,
                }
            )
        print(f"\n## eps {eps:g}, {n} images, batch {args.batch_size}, seed {args.seed}\n")
        print(
            "| attack | reference acc | lrm_tf acc | lrm_tf - ref (points) | torchattacks acc | "
            "reference s | lrm_tf s | torchattacks s | lrm_tf / ref time |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for label, result in table:
            ref, ours, ta = (result.get(t) for t in TOOLS)  # (accuracy, seconds, stages) or None
            stages = ours[2] if ours else None
            delta, ratio = "-", "-"
            if ref and ours:
                points = round(100 * (ours[0] - ref[0]), 6) + 0.0  # 1 example of 100 is 1.0, not 1.0000001
                delta = f"{points:+.2f}" + (" **" if abs(points) > args.tolerance else "")
                ratio = f"{ours[1] / ref[1]:.2f}"
                if abs(points) > args.tolerance:
                    failures.append(
                        f"eps {eps:g} {label}: lrm_tf {100 * ours[0]:.2f}% vs reference {100 * ref[0]:.2f}%"
                    )
            acc = lambda r: f"{100 * r[0]:.2f}%" if r else "-"  # noqa: E731
            sec = lambda r: f"{r[1]:.1f}" if r else "-"  # noqa: E731
            print(
                f"| {label} | {acc(ref)} | {acc(ours)} | {delta} | {acc(ta)} | {sec(ref)} | {sec(ours)} | "
                f"{sec(ta)} | {ratio} |"
            )
            if stages:
                text = ", ".join(
                    f"{s.get('attack')} {100 * s.get('robust_accuracy', float('nan')):.2f}%" for s in stages
                )
                print(f"|  lrm_tf stages: {text} | | | | | | | | |")
        print(flush=True)
    print(f"# load average at end {os.getloadavg()[0]:.1f}; command: {' '.join(sys.argv)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if failures:
        print(f"\nMISMATCH beyond {args.tolerance:g} points:\n  " + "\n  ".join(failures))
        sys.exit(1)
    if {"reference", "lrm_tf"} <= set(tools):
        print(f"\nevery lrm_tf attack within {args.tolerance:g} points of the reference")
    else:
        print("\nno accuracy comparison: --tools leaves out the reference or lrm_tf")


if __name__ == "__main__":
    main()
