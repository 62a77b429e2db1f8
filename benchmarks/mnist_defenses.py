"""Short CPU runs on real MNIST showing the papers' ordering of defenses (issue: every objective).

Every defense trains the same model (Madry's MNIST CNN) for the same number of steps with the
same optimiser, then is attacked with PGD-40 (eps 0.3, step 0.01, random start), FGSM and the
clean test set on the first --examples test images. Prints a Markdown table with the commands
and times; results stay in --out/<name>/ (run directories of lrm_tf.main).

    python benchmarks/mnist_defenses.py --data ../shared/data/mnist --steps 800 --out runs/bench
"""

import argparse
import json
import os
import subprocess
import sys

COMMON = [
    "--dataset=mnist",
    "--model=mnist_cnn",
    "--optimizer=adam",
    "--lr_values=0.001",
    "--lr_boundaries=",
    "--weight_decay=0",
    "--batch_size=64",
    "--eps=0.3",
    "--eps_step=0.01",
    "--eval_attacks=clean,fgsm_xent,pgd40_xent",
    "--verbose=2",
]

# Training attacks use 10 steps of 0.04 instead of Madry's 40 x 0.01 to fit a CPU budget.
DEFENSES = {
    "regular": [],
    "label_smoothing+noise": [
        "--label_smoothing_form=shafahi",
        "--label_smoothing=0.95",
        "--noise_sigma=0.3",
    ],
    "logit_squeeze+noise": ["--logit_squeeze_form=batch", "--logit_squeeze=0.5", "--noise_sigma=0.5"],
    "pgd_training": ["--adv_train=pgd10_xent", "--adv_train_eps_step=0.04", "--adv_alpha=0.5"],
    "alp": ["--adv_train=pgd10_xent", "--adv_train_eps_step=0.04", "--adv_alpha=0.5", "--alp_weight=1.0"],
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder with the MNIST idx .gz files")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--examples", type=int, default=1000)
    p.add_argument("--out", default="runs/bench_mnist_defenses")
    p.add_argument("--only", default="", help="comma list of defenses to run (default: all)")
    args = p.parse_args()
    names = args.only.split(",") if args.only else list(DEFENSES)
    for name in names:
        model_dir = os.path.join(args.out, name.replace("+", "_"))
        cmd = [
            sys.executable,
            "-m",
            "lrm_tf.main",
            *COMMON,
            *DEFENSES[name],
            f"--local_data={args.data}",
            f"--train_steps={args.steps}",
            f"--eval_examples={args.examples}",
            f"--model_dir={model_dir}",
            "--overwrite",
        ]
        subprocess.run(cmd, check=True)
    # The table covers every defense with a finished run in --out (earlier --only runs too).
    print("\n| defense | clean | FGSM | PGD-40 | train s | eval s | flags |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, flags in DEFENSES.items():
        model_dir = os.path.join(args.out, name.replace("+", "_"))
        if not os.path.exists(os.path.join(model_dir, "results.json")):
            continue
        with open(os.path.join(model_dir, "results.json")) as f:
            res = json.load(f)
        with open(os.path.join(model_dir, "run_state.json")) as f:
            train_seconds = json.load(f).get("train_seconds")
        acc = lambda k: f"{100 * res[k]['accuracy']:.1f}%"
        eval_seconds = sum(r.get("seconds", 0) for r in res.values())
        print(
            f"| {name} | {acc('clean')} | {acc('fgsm_xent')} | {acc('pgd40_xent')} | "
            f"{train_seconds} | {eval_seconds:.0f} | `{' '.join(flags)}` |"
        )
    print(f"\ncommon flags: `{' '.join(COMMON)} --train_steps={args.steps} --eval_examples={args.examples}`")


if __name__ == "__main__":
    main()
