"""PGD cost against its floor: R_pgd(k) = time(PGD-k) / (k x one forward+backward).

Measured in one run, on one machine, with medians over repeated rounds; every round runs
every configuration once, in the same order, so load changes (other processes on a shared
machine) hit all configurations alike instead of biasing one of them.

What is timed (all on the same random batch, model in inference mode, as the attacks run):
  fwd+bwd       d(sum of cross-entropies)/d(input): the work of one PGD step. Measured as a
                tf.function without and with XLA (jit_compile=True); the denominator of R is
                the faster of the two at that batch size: the fastest lrm_tf can run a step.
  pgd-k         lrm_tf.attacks.build_attack('pgd<k>_xent') in a tf.function, as evaluation
                runs it: a tf.while_loop over the steps. 'xla=off': plain TF graph; 'xla=on':
                Threat(attack_xla_step=True), i.e. the loop body (forward, backward, projection) is an
                XLA-compiled function called from the (uncompiled) while loop.
  trace         seconds of `get_concrete_function` (Python tracing + graph construction) and
                first call minus the steady-state median (graph optimisation, XLA compilation).
  memory        peak resident set size (getrusage ru_maxrss) of a fresh process per (k, xla):
                after one fwd+bwd (baseline) and after one PGD-k call. RSS is the honest CPU
                measure (TF's allocator is invisible to tracemalloc; tf.config.experimental.
                get_memory_info is GPU-only); growth = after - baseline.
  --torch       torchattacks.PGD on a PyTorch copy of the model (same layers and shapes), in a
                separate interpreter (--torch_python), once per round, interleaved with the rest.

Wall time is the primary figure; process CPU time (all threads) is printed beside it because
on a contended machine it is much less noisy (a process that gets one core of two shows
wall ~ cpu). Ratios from either should approach 1.

k=1000 at batch 128 costs ~10 minutes per call on a 2-core CPU: --k_batch and --k_repeats
give large k a smaller batch (its R uses a fwd+bwd measured at that batch) and fewer rounds.

    python benchmarks/bench_attacks.py --ks 10,100,1000 --k_batch 1000=16 --k_repeats 1000=1
    python benchmarks/bench_attacks.py --ks 10 --repeats 5 --torch       # quick check vs PyTorch
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
EPS, EPS_STEP = 8 / 255, 2 / 255


def _int_map(text):
    """'1000=16,100=64' -> {1000: 16, 100: 64}."""
    out = {}
    for part in filter(None, (text or "").split(",")):
        k, v = part.split("=")
        out[int(k)] = int(v)
    return out


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    _ = out.numpy() if hasattr(out, "numpy") else out
    return time.perf_counter() - t0, time.process_time() - c0


def _rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# --------------------------------------------------------------------------- TensorFlow side


def _tf_setup(model_name, batch, seed=0):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # before TensorFlow: the CPU kernels lrm_tf.main uses
    import tensorflow as tf

    from lrm_tf import models

    tf.get_logger().setLevel("ERROR")
    net = models.build_model(model_name, (32, 32, 3), 10, seed=seed)
    return tf, net


class Batch:
    """One random CIFAR-shaped batch (x float [batch, 32, 32, 3] in [0, 1], labels, seed) and
    the timed work on it: `fwd_bwd` (one PGD step's pass) and `pgd` (PGD-k as evaluation
    runs it). Also used by gpu_check.py."""

    def __init__(self, tf, net, batch, seed=0):
        self.tf, self.net, self.batch = tf, net, batch
        self.x = tf.random.stateless_uniform([batch, 32, 32, 3], [seed, 1])
        self.y = tf.random.stateless_uniform([batch], [seed, 2], 0, 10, tf.int64)
        self.seed = tf.constant([seed, 0], tf.int64)

    def fwd_bwd(self, xla):
        tf, net, y = self.tf, self.net, self.y

        def grad(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(y, net(x, training=False))
                )
            return tape.gradient(loss, x)

        fn = tf.function(grad, jit_compile=bool(xla))
        return lambda: fn(self.x)

    def pgd(self, k, xla):
        """(traced call, trace seconds): the attack as lrm_tf.eval.evaluation runs it."""
        from lrm_tf import attacks
        from lrm_tf.config import Threat

        tf = self.tf
        attack = attacks.build_attack(
            f"pgd{k}_xent",
            lambda z: self.net(z, training=False),
            Threat(eps=EPS, eps_step=EPS_STEP, attack_xla_step=bool(xla)),
        )
        fn = tf.function(attack)
        t0 = time.perf_counter()
        concrete = fn.get_concrete_function(self.x, self.y, self.seed)
        trace = time.perf_counter() - t0
        return (lambda: concrete(self.x, self.y, self.seed)), trace, concrete


def _xla_modes(flag):
    return {"off": [False], "on": [True], "both": [False, True]}[flag]


def _proc_status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB
    return float("nan")


def _reset_peak_rss() -> bool:
    """Resets the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _memory_child(args):
    """One fresh process: RSS after a fwd+bwd, then the peak RSS while tracing and running PGD-k.

    The peak mark is reset after the baseline, so the import-time peak of TensorFlow (which
    exceeds what PGD needs) cannot hide growth; without /proc/self/clear_refs it falls back to
    ru_maxrss over the process lifetime and says so."""
    tf, net = _tf_setup(args.model, args.memory_batch)
    b = Batch(tf, net, args.memory_batch)
    _timed(b.fwd_bwd(bool(args.child_xla)))
    base = _proc_status_mib("VmRSS")
    reset = _reset_peak_rss()
    peak = (lambda: _proc_status_mib("VmHWM")) if reset else _rss_mib
    call, trace, _ = b.pgd(args.child_k, args.child_xla)
    traced = peak()
    seconds, _ = _timed(call)
    print(
        json.dumps(
            {
                "k": args.child_k,
                "xla": bool(args.child_xla),
                "batch": args.memory_batch,
                "rss_base_mib": base,
                "rss_traced_mib": traced,
                "rss_peak_mib": peak(),
                "rss_end_mib": _proc_status_mib("VmRSS"),
                "peak_reset": reset,
                "seconds": seconds,
            }
        )
    )


def _memory(args, ks, modes):
    rows = []
    for k in ks:
        for xla in modes:
            cmd = [
                sys.executable,
                HERE,
                "--_child",
                "memory",
                "--model",
                args.model,
                "--memory_batch",
                str(args.memory_batch),
                "--_k",
                str(k),
                "--_xla",
                str(int(xla)),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                print(f"memory child k={k} xla={xla} failed:\n{proc.stderr[-2000:]}")
                continue
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return rows


def _print_memory(args, ks, modes):
    mem = _memory(args, sorted({min(ks), max(ks)}), modes)
    print(
        f"\n## RSS of a fresh process per row, batch {args.memory_batch}: baseline = RSS after "
        "one fwd+bwd; then the peak mark (VmHWM) is reset and read after tracing PGD-k and "
        "after one PGD-k call"
    )
    print(
        "| k | xla | baseline MiB | peak while tracing MiB | peak after call MiB | "
        "growth MiB | RSS at end MiB | peak reset | seconds |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---|---:|")
    for m in mem:
        print(
            f"| {m['k']} | {'on' if m['xla'] else 'off'} | {m['rss_base_mib']:.0f} | "
            f"{m['rss_traced_mib']:.0f} | {m['rss_peak_mib']:.0f} | "
            f"{m['rss_peak_mib'] - m['rss_base_mib']:.0f} | {m['rss_end_mib']:.0f} | "
            f"{'yes' if m['peak_reset'] else 'no (ru_maxrss)'} | {m['seconds']:.1f} |"
        )
    return mem


# --------------------------------------------------------------------------- PyTorch side

TORCH_CHILD = r"""
import json, sys, time, torch, torch.nn as nn, torch.nn.functional as F, torchattacks
torch.set_num_threads(int(sys.argv[1])); batches = json.loads(sys.argv[2])  # {k: batch}
fb_batches = sorted(set(batches.values()))
torch.manual_seed(0)

class Std(nn.Module):  # tf.image.per_image_standardization
    def forward(self, x):
        n = x[0].numel(); m = x.mean(dim=(1, 2, 3), keepdim=True)
        s = torch.maximum(x.std(dim=(1, 2, 3), keepdim=True, unbiased=False),
                          torch.tensor(1.0 / n ** 0.5))
        return (x - m) / s

class Unit(nn.Module):  # Madry's residual unit, as lrm_tf.models._madry_unit
    def __init__(s, i, o, stride, before):
        super().__init__(); s.before, s.i, s.o, s.stride = before, i, o, stride
        s.bn0, s.c1 = nn.BatchNorm2d(i, eps=1e-3), nn.Conv2d(i, o, 3, stride, 1, bias=False)
        s.bn1, s.c2 = nn.BatchNorm2d(o, eps=1e-3), nn.Conv2d(o, o, 3, 1, 1, bias=False)
    def forward(s, x):
        a = F.leaky_relu(s.bn0(x), 0.1)
        short = a if s.before else x
        y = s.c2(F.leaky_relu(s.bn1(s.c1(a)), 0.1))
        if s.i != s.o:
            short = F.avg_pool2d(short, s.stride, s.stride)
            p = (s.o - s.i) // 2; short = F.pad(short, (0, 0, 0, 0, p, p))
        return y + short

def madry_resnet(units=5, f=(16, 16, 32, 64)):
    layers = [Std(), nn.Conv2d(3, 16, 3, 1, 1, bias=False)]
    for st, (stride, before) in enumerate(zip([1, 2, 2], [True, False, False])):
        for u in range(units):
            layers.append(Unit(f[st] if u == 0 else f[st + 1], f[st + 1],
                               stride if u == 0 else 1, before and u == 0))
    layers += [nn.BatchNorm2d(f[3], eps=1e-3), nn.LeakyReLU(0.1), nn.AdaptiveAvgPool2d(1),
               nn.Flatten(), nn.Linear(f[3], 10)]
    return nn.Sequential(*layers).eval()

model = madry_resnet()
out = {"params": sum(p.numel() for p in model.parameters()), "fwd_bwd": {}, "pgd": {}}
def data(b):
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 3, 32, 32, generator=g), torch.randint(0, 10, (b,), generator=g)
def fb(x, y):
    x = x.clone().requires_grad_(True)
    F.cross_entropy(model(x), y, reduction="sum").backward()
    return x.grad
def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time(); fn()
    return [time.perf_counter() - t0, time.process_time() - c0]
for b in fb_batches:
    x, y = data(b); fb(x, y); fb(x, y)
    out["fwd_bwd"][b] = sorted(timed(lambda: fb(x, y)) for _ in range(3))[1]
for k, b in batches.items():
    x, y = data(b)
    atk = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=int(k), random_start=True)
    out["pgd"][k] = [b] + timed(lambda: atk(x, y))
print(json.dumps(out))
"""


def _torch_round(args, k_batches):
    proc = subprocess.run(
        [
            args.torch_python,
            "-c",
            TORCH_CHILD,
            str(args.torch_threads or os.cpu_count()),
            json.dumps({str(k): b for k, b in k_batches.items()}),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        print(f"torch round failed (skipped): {proc.stderr.strip()[-500:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _torch_available(python):
    try:
        proc = subprocess.run(
            [python, "-c", "import torch, torchattacks; print(torch.__version__)"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


# --------------------------------------------------------------------------- main


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet_simple", help="a 32x32x3 model of lrm_tf.models")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--ks", default="10,100,1000", help="PGD step counts")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (medians are reported)")
    p.add_argument("--k_batch", default="1000=16", help="per-k batch override, e.g. 1000=16")
    p.add_argument("--k_repeats", default="1000=1", help="per-k rounds override, e.g. 1000=1")
    p.add_argument("--xla", choices=["on", "off", "both"], default="both")
    p.add_argument(
        "--memory",
        choices=["on", "off"],
        default="on",
        help="peak RSS of PGD-min(ks) vs PGD-max(ks), fresh process each",
    )
    p.add_argument("--memory_batch", type=int, default=16)
    p.add_argument("--memory_only", action="store_true", help="skip the timings")
    p.add_argument("--torch", action="store_true", help="also time torchattacks PGD-k")
    p.add_argument(
        "--torch_python",
        default="/work/torchvenv/bin/python",
        help="an interpreter with torch and torchattacks",
    )
    p.add_argument("--torch_ks", default="", help="step counts timed with torch (default: --ks)")
    p.add_argument(
        "--torch_threads",
        type=int,
        default=0,
        help="torch.set_num_threads (0: all CPUs; torch's OpenMP pool suffers more "
        "than TF's from a contended machine, 1 can be faster there)",
    )
    p.add_argument("--json", default="", help="also write every sample to this file")
    p.add_argument("--_child", default="", help=argparse.SUPPRESS)
    p.add_argument("--_k", dest="child_k", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--_xla", dest="child_xla", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child == "memory":
        return _memory_child(args)

    ks = [int(k) for k in args.ks.split(",") if k]
    k_batch = {k: _int_map(args.k_batch).get(k, args.batch) for k in ks}
    k_rep = {k: _int_map(args.k_repeats).get(k, args.repeats) for k in ks}
    modes = _xla_modes(args.xla)
    fb_modes = [False, True]  # the denominator is the faster of the two, always measure both
    torch_version = _torch_available(args.torch_python) if args.torch else None
    if args.torch and not torch_version:
        print(
            f"--torch: {args.torch_python} cannot import torch and torchattacks; skipped "
            "(python3 -m venv /work/torchvenv && /work/torchvenv/bin/pip install "
            "torch==2.13.0 torchattacks numpy)"
        )

    if args.memory_only:
        return _print_memory(args, ks, modes)
    tf, net = _tf_setup(args.model, args.batch)
    print(
        f"# bench_attacks: {args.model} ({net.count_params()} params), TF {tf.__version__}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start"
    )
    batches = {b: Batch(tf, net, b) for b in sorted(set(k_batch.values()))}
    fns, trace, first = {}, {}, {}
    batches[min(batches)].pgd(1, False)  # one-off costs of the first trace (imports, caches)
    for b, bb in batches.items():
        for xla in fb_modes:
            fns[("fb", xla, b)] = bb.fwd_bwd(xla)
    for k in ks:
        for xla in modes:
            call, t, _ = batches[k_batch[k]].pgd(k, xla)
            fns[("pgd", xla, k)] = call
            trace[(k, xla)] = t
    # First calls (graph optimisation / XLA compilation); kept apart from the timed rounds.
    for key, fn in fns.items():
        first[key] = _timed(fn)[0]
    samples = {key: [] for key in fns}
    torch_samples = []
    rounds = max([args.repeats, *k_rep.values()])
    for r in range(rounds):
        for key, fn in fns.items():
            if key[0] == "pgd" and r >= k_rep[key[2]]:
                continue
            samples[key].append(_timed(fn))
        if torch_version:
            tks = [int(k) for k in args.torch_ks.split(",") if k] or ks
            out = _torch_round(
                args, {k: k_batch.get(k, args.batch) for k in tks if r < k_rep.get(k, args.repeats)}
            )
            if out:
                torch_samples.append(out)
        print(f"# round {r + 1}/{rounds} done, load average {os.getloadavg()[0]:.1f}", flush=True)

    med = lambda key, i: statistics.median(s[i] for s in samples[key])
    print(f"\n## forward+backward (input gradient, inference mode); medians of {args.repeats} rounds")
    print("| batch | xla | wall s | cpu s | first call s |")
    print("|---:|---|---:|---:|---:|")
    floor = {}
    for b in batches:
        for xla in fb_modes:
            key = ("fb", xla, b)
            print(
                f"| {b} | {'on' if xla else 'off'} | {med(key, 0):.3f} | {med(key, 1):.3f} | "
                f"{first[key]:.2f} |"
            )
        # Wall and CPU floors separately: the faster mode can differ between the two.
        floor[b] = tuple(min(med(("fb", x, b), i) for x in fb_modes) for i in (0, 1))
    print(
        "\n## PGD-k: R = time / (k x fastest fwd+bwd at that batch, wall and cpu floors taken "
        "separately); R_same = over the fwd+bwd of the same xla mode"
    )
    print(
        "| k | batch | xla | rounds | wall s | cpu s | R (wall) | R (cpu) | R_same (wall) | "
        "R_same (cpu) | trace s | first - steady s |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in ks:
        b = k_batch[k]
        for xla in modes:
            key = ("pgd", xla, k)
            wall, cpu = med(key, 0), med(key, 1)
            same = (med(("fb", xla, b), 0), med(("fb", xla, b), 1))
            print(
                f"| {k} | {b} | {'on' if xla else 'off'} | {len(samples[key])} | {wall:.2f} | "
                f"{cpu:.2f} | {wall / (k * floor[b][0]):.3f} | {cpu / (k * floor[b][1]):.3f} | "
                f"{wall / (k * same[0]):.3f} | {cpu / (k * same[1]):.3f} | "
                f"{trace[(k, xla)]:.2f} | {first[key] - wall:.2f} |"
            )
    if torch_samples:
        print(
            f"\n## torchattacks PGD-k (torch {torch_version}, same architecture, "
            f"{args.torch_threads or os.cpu_count()} threads), "
            f"medians of {len(torch_samples)} rounds; R over torch's own fwd+bwd"
        )
        print("| k | batch | wall s | cpu s | R (wall) | torch fwd+bwd wall s | lrm_tf best wall s |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for k in sorted({int(k) for s in torch_samples for k in s["pgd"]}):
            rows = [s["pgd"][str(k)] for s in torch_samples if str(k) in s["pgd"]]
            if not rows:
                continue
            b = rows[0][0]
            fbw = statistics.median(s["fwd_bwd"][str(b)][0] for s in torch_samples if str(b) in s["fwd_bwd"])
            wall = statistics.median(r[1] for r in rows)
            cpu = statistics.median(r[2] for r in rows)
            best = min(med(("pgd", x, k), 0) for x in modes) if k in ks else float("nan")
            print(f"| {k} | {b} | {wall:.2f} | {cpu:.2f} | {wall / (k * fbw):.3f} | {fbw:.3f} | {best:.2f} |")
    mem = _print_memory(args, ks, modes) if args.memory == "on" and ks else []
    print(f"\n# load average at end {os.getloadavg()[0]:.1f}; command: {' '.join(sys.argv)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "samples": {"|".join(map(str, k)): v for k, v in samples.items()},
                    "first": {"|".join(map(str, k)): v for k, v in first.items()},
                    "trace": {f"{k}|{x}": v for (k, x), v in trace.items()},
                    "torch": torch_samples,
                    "memory": mem,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
