"""CPU-scale reproduction of the papers' MNIST rows on ../shared/data (issue: reproduce).

Runs each chosen flagfile from flags/ with its own hyper-parameters except a reduced number
of iterations (--steps) and evaluation on the first --examples test images, then writes
RESULTS.md with the measured numbers beside the published ones (lrm_tf.report.compare), the
commands and the times. Adversarially trained rows cost (k + 1) passes per step: give them a
smaller --adv_steps budget.

    python benchmarks/reproduce_mnist.py --data ../shared/data/mnist --steps 3000 \
        --adv_steps 300 --examples 1000 --out runs/repro_mnist --results RESULTS.md

--audit_stems runs the gradient-masking audit (`--mode=audit`) on those trained rows, on the
first --audit_examples test images, and adds its tables and verdicts. The written file keeps
whatever follows a line starting with CLAIMS_HEADING in the previous version (the reading of
the numbers against the papers' claims is written by a person, not generated).
"""

import argparse
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

CLAIMS_HEADING = "## Which of the papers' claims"
DEFAULT_STEMS = [
    "shafahi_t1_mnist_natural",
    "shafahi_t2_mnist_squeeze_b0.5_s0.5_k400k",
    "shafahi_t2_mnist_squeeze_b2_s0_k400k",
    "shafahi_t2_mnist_smooth_a0.95_s0.3_k100k",
    "shafahi_t2_mnist_smooth_a0.2_s0_k400k",
    "alp_t1_mnist_mpgd",
    "alp_t1_mnist_alp",
]


def is_adversarial(flagfile: str) -> bool:
    """Whether the flagfile (base recipes included) trains on adversarial examples."""
    from lrm_tf.cli.flagfile import read_flagfile

    return bool(read_flagfile(flagfile).get("adv_train"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder with the MNIST idx .gz files")
    p.add_argument("--steps", type=int, default=3000, help="iterations of cheap defenses")
    p.add_argument("--adv_steps", type=int, default=300, help="iterations of adversarial training")
    p.add_argument("--examples", type=int, default=1000)
    p.add_argument("--out", default="runs/repro_mnist")
    p.add_argument("--results", default="RESULTS.md")
    p.add_argument("--stems", default=",".join(DEFAULT_STEMS))
    p.add_argument("--audit_stems", default="", help="rows to audit for gradient masking")
    p.add_argument("--audit_examples", type=int, default=200)
    p.add_argument(
        "--audit_args",
        default="--audit_steps=40,400 --audit_restarts=10 "
        "--audit_spsa_examples=50 --audit_spsa_iterations=50",
        help="extra flags of the audit runs",
    )
    args = p.parse_args()
    from lrm_tf.report import compare  # noqa: E402  (after sys.path)

    commands, runs = [], []
    for stem in args.stems.split(","):
        flagfile = os.path.join(REPO, "flags", f"{stem}.cfg")
        steps = args.adv_steps if is_adversarial(flagfile) else args.steps
        model_dir = os.path.join(args.out, stem)
        cmd = [
            sys.executable,
            "-m",
            "lrm_tf.main",
            f"--flagfile={flagfile}",
            f"--local_data={args.data}",
            f"--train_steps={steps}",
            f"--eval_examples={args.examples}",
            f"--model_dir={model_dir}",
            "--overwrite",
            "--verbose=2",
        ]
        t0 = time.time()
        subprocess.run(cmd, check=True, cwd=REPO)
        minutes = (time.time() - t0) / 60
        commands.append(
            f"| `{stem}` | {steps} | {minutes:.1f} | "
            f"`python -m lrm_tf.main --flagfile=flags/{stem}.cfg --local_data=... "
            f"--train_steps={steps} --eval_examples={args.examples}` |"
        )
        runs.append(model_dir)
    audits = []
    for stem in filter(None, args.audit_stems.split(",")):
        model_dir = os.path.join(args.out, stem)
        cmd = [
            sys.executable,
            "-m",
            "lrm_tf.main",
            "--mode=audit",
            f"--load_from={model_dir}",
            "--dataset=mnist",
            f"--local_data={args.data}",
            f"--eval_examples={args.audit_examples}",
            *args.audit_args.split(),
        ]
        t0 = time.time()
        subprocess.run(cmd, check=True, cwd=REPO)
        with open(os.path.join(model_dir, "audit.md")) as f:
            table = f.read().split("\n", 1)[1].strip()
        audits += [
            f"### `{stem}` ({(time.time() - t0) / 60:.1f} min)",
            "",
            f"`python -m lrm_tf.main --mode=audit --load_from=runs/.../{stem} "
            f"--dataset=mnist --local_data=... --eval_examples={args.audit_examples} "
            f"{args.audit_args}`",
            "",
            table,
            "",
        ]
    claims = ""
    if os.path.exists(args.results):
        with open(args.results) as f:
            previous = f.read()
        if CLAIMS_HEADING in previous:
            claims = previous[previous.index(CLAIMS_HEADING) :]
    rows = compare.compare_runs(runs)
    text = "\n".join(
        [
            "# Reduced-scale MNIST reproduction",
            "",
            f"Machine: the 2-core CPU development machine. Iterations: {args.steps} for cheap "
            f"defenses, {args.adv_steps} for adversarial training (the papers: 100k-2M); "
            f"evaluation on the first {args.examples} MNIST test images.",
            "",
            "| flagfile | iterations | minutes | command |",
            "|---|---:|---:|---|",
            *commands,
            "",
            compare.compare_markdown(rows),
            "",
            *(["## Gradient-masking audit", ""] + audits if audits else []),
            claims,
        ]
    )
    with open(args.results, "w") as f:
        f.write(text.rstrip() + "\n")
    print(text)


if __name__ == "__main__":
    main()
