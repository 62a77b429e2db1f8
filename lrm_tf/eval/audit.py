"""Gradient-masking audit of a trained model: one command, plain-language verdicts.

A defense that only breaks the attacker's gradients (Athalye et al. 2018, "Obfuscated
gradients give a false sense of security"; Carlini et al. 2019, "On evaluating adversarial
robustness", section 5) shows typical signs that cheap extra attacks reveal. Each check
compares two accuracies measured on the same examples and flags a sign when the stronger
attack wins by more than `tolerance` (absolute accuracy):

* `steps`: PGD with many steps (default 1000) against the evaluation's PGD (default 20)
  at the same eps and step. Engstrom/Shafahi-style masking: accuracy keeps falling with k.
* `restarts`: PGD with R random restarts (worst case kept) against one start.
* `spsa`: the gradient-free SPSA (Uesato et al. 2018) against PGD on the same subsample; a
  gradient-free attack beating a white-box gradient attack means the gradients mislead.
* `single_step`: FGSM against PGD; a one-step attack must not beat an iterative one.
* `unbounded`: PGD at eps = the whole input range with Madry's step 2.5 eps / steps (Shafahi
  et al. table 9); every image is reachable, so accuracy must reach ~0 (at most
  `unbounded_max`).

`masking_audit` returns a JSON-ready dict; `write_audit` writes audit.json and audit.md.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Dict, List, Optional

import numpy as np
import tensorflow as tf

from lrm_tf.eval import curves
from lrm_tf.eval.evaluation import ThreatModel
from lrm_tf.report.rundir import write_json_atomic, write_text_atomic

@dataclasses.dataclass(frozen=True)
class AuditConfig:
    steps_low: int = 20
    steps_high: int = 1000
    restarts: int = 10
    spsa_examples: int = 100
    spsa_iterations: int = 100
    unbounded_steps: int = 100
    attack_loss: str = "xent"
    tolerance: float = 0.03
    unbounded_max: float = 0.01

    def __post_init__(self):
        if not 1 <= self.steps_low < self.steps_high:
            raise ValueError(f"audit steps need 1 <= low < high, got {self.steps_low}, "
                             f"{self.steps_high}")
        if self.restarts < 2:
            raise ValueError(f"audit restarts must be >= 2 to compare with one start, got "
                             f"{self.restarts}")
        if self.spsa_examples < 0 or self.spsa_iterations < 1 or self.unbounded_steps < 1:
            raise ValueError("audit spsa_examples must be >= 0 (0 skips SPSA), spsa_iterations "
                             "and unbounded_steps >= 1")
        if self.attack_loss not in ("xent", "cw"):
            raise ValueError(f"audit attack_loss must be xent or cw, got {self.attack_loss!r}")
        if not 0 <= self.tolerance < 1 or not 0 <= self.unbounded_max < 1:
            raise ValueError("audit tolerance and unbounded_max must be in [0, 1)")


def _measure(model, images, labels, attack, threat, batch_size, seed, strategy, log):
    entry = curves.accuracy_point(model, images, labels, attack, threat, batch_size, seed,
                                  strategy)
    log(f"  {attack:<18} eps={threat.eps:.4g} step={threat.eps_step:.4g} "
        f"restarts={threat.restarts}: {100 * entry['accuracy']:6.2f}% of {entry['examples']} "
        f"({entry['seconds']:.0f}s)")
    return entry


def _check(name, weaker, stronger, tolerance, what):
    """A sign of masking when `stronger` (the audit's extra attack) lowers accuracy by more
    than `tolerance` below `weaker` (the reference attack on the same examples)."""
    drop = weaker["accuracy"] - stronger["accuracy"]
    sign = drop > tolerance
    change = f"{-100 * drop:+.2f} points" if drop else "no change"
    detail = (f"{what}: {100 * weaker['accuracy']:.2f}% -> {100 * stronger['accuracy']:.2f}% "
              f"({change}, tolerance {100 * tolerance:.1f})")
    return {"check": name, "masking_sign": bool(sign), "drop": drop, "detail": detail}


def masking_audit(model, images: np.ndarray, labels: np.ndarray, threat: ThreatModel,
                  config: AuditConfig = AuditConfig(), batch_size: int = 500, seed: int = 0,
                  strategy: Optional[tf.distribute.Strategy] = None,
                  log: Callable[[str], None] = print) -> Dict:
    """Runs the audit's attacks on (images, labels) under `threat` (eps, step, input range;
    its `restarts` is ignored: the audit sets its own). Returns measurements, checks and a
    verdict."""
    loss = config.attack_loss
    one = dataclasses.replace(threat, restarts=1)
    run = lambda attack, t, x=images, y=labels: _measure(model, x, y, attack, t, batch_size, seed,
                                                         strategy, log)
    log(f"gradient-masking audit on {len(labels)} examples, eps={threat.eps:.4g}, "
        f"step={threat.eps_step:.4g}, loss={loss}")
    low, high = f"pgd{config.steps_low}_{loss}", f"pgd{config.steps_high}_{loss}"
    m: Dict[str, dict] = {"clean": run("clean", one), "fgsm": run(f"fgsm_{loss}", one),
                          "pgd_low": run(low, one), "pgd_high": run(high, one),
                          "pgd_low_restarts": run(low, dataclasses.replace(
                              threat, restarts=config.restarts))}
    range_eps = threat.clip_max - threat.clip_min
    unbounded_steps = config.unbounded_steps
    m["pgd_unbounded"] = run(f"pgd{unbounded_steps}_{loss}", dataclasses.replace(
        one, eps=range_eps, eps_step=curves.proportional_eps_step(range_eps, unbounded_steps)))
    checks: List[dict] = [
        _check("steps", m["pgd_low"], m["pgd_high"], config.tolerance,
               f"PGD-{config.steps_low} -> PGD-{config.steps_high}"),
        _check("restarts", m["pgd_low"], m["pgd_low_restarts"], config.tolerance,
               f"PGD-{config.steps_low}: 1 -> {config.restarts} restarts"),
    ]
    if config.spsa_examples:
        n = min(config.spsa_examples, len(labels))
        spsa_threat = dataclasses.replace(one, spsa_examples=n)
        m["pgd_low_spsa_subset"] = run(low, one, images[:n], labels[:n])
        m["spsa"] = run(f"spsa{config.spsa_iterations}", spsa_threat, images[:n], labels[:n])
        checks.append(_check("spsa", m["pgd_low_spsa_subset"], m["spsa"], config.tolerance,
                             f"PGD-{config.steps_low} -> SPSA-{config.spsa_iterations} "
                             f"({threat.spsa_samples} samples) on the first {n} examples"))
    checks.append(_check("single_step", m["pgd_low"], m["fgsm"], config.tolerance,
                         f"PGD-{config.steps_low} -> FGSM"))
    unbounded = m["pgd_unbounded"]["accuracy"]
    checks.append({"check": "unbounded", "masking_sign": bool(unbounded > config.unbounded_max),
                   "drop": m["clean"]["accuracy"] - unbounded,
                   "detail": f"PGD-{unbounded_steps} at eps={range_eps:g} (the whole input range): "
                             f"{100 * unbounded:.2f}% (must be <= {100 * config.unbounded_max:.1f}%)"})
    signs = [c for c in checks if c["masking_sign"]]
    if signs:
        verdict = ("SIGNS OF GRADIENT MASKING: " + "; ".join(c["detail"] for c in signs) +
                   f". Do not trust the PGD-{config.steps_low} accuracy "
                   f"({100 * m['pgd_low']['accuracy']:.2f}%); report the lowest accuracy "
                   f"measured ({100 * min(e['accuracy'] for k, e in m.items() if k != 'clean'):.2f}%"
                   " over the audit's attacks) and attack further.")
    else:
        verdict = (f"No sign of gradient masking in these {len(checks)} checks: more steps, "
                   "restarts" + (", SPSA" if config.spsa_examples else "") +
                   " and FGSM do not beat the evaluation's PGD by more than "
                   f"{100 * config.tolerance:.1f} points, and the unbounded attack reaches "
                   f"{100 * unbounded:.2f}%. (Absence of these signs is not proof of robustness.)")
    log(verdict)
    return {"threat": dataclasses.asdict(threat), "config": dataclasses.asdict(config),
            "seed": seed, "measurements": m, "checks": checks,
            "masking_signs": [c["check"] for c in signs], "verdict": verdict}


def audit_markdown(audit: Dict, title: str = "Gradient-masking audit") -> str:
    t = audit["threat"]
    lines = [f"# {title}", "", f"Threat: eps={t['eps']:.4g}, step={t['eps_step']:.4g}, input "
             f"range [{t['clip_min']:g}, {t['clip_max']:g}], seed {audit['seed']}.", "",
             "| measurement | attack | eps | restarts | accuracy | examples | seconds |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for key, e in audit["measurements"].items():
        lines.append(f"| {key} | {e['attack']} | {e['eps']:.4g} | {e['restarts']} | "
                     f"{100 * e['accuracy']:.2f}% | {e['examples']} | {e['seconds']:.0f} |")
    lines += ["", "| check | sign of masking | evidence |", "|---|---|---|"]
    for c in audit["checks"]:
        lines.append(f"| {c['check']} | {'YES' if c['masking_sign'] else 'no'} | {c['detail']} |")
    lines += ["", f"**Verdict.** {audit['verdict']}", ""]
    return "\n".join(lines)


def write_audit(out_dir: str, audit: Dict, title: str = "Gradient-masking audit"):
    """audit.json and audit.md in `out_dir` (atomic writes); returns their paths."""
    json_path, md_path = os.path.join(out_dir, "audit.json"), os.path.join(out_dir, "audit.md")
    write_json_atomic(json_path, audit)
    write_text_atomic(md_path, audit_markdown(audit, title))
    return json_path, md_path
