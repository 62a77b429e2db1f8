"""Gradient-masking audit of a trained model: one command, plain-language verdicts.

A defense that only breaks the attacker's gradients (Athalye et al. 2018, "Obfuscated
gradients give a false sense of security"; Carlini et al. 2019, "On evaluating adversarial
robustness", section 5) shows typical signs that cheap extra attacks reveal. Each check
compares two accuracies measured on the same examples and flags a sign when the stronger
attack wins by more than `audit_tolerance` (absolute accuracy; the settings are
`lrm_tf.config.AuditConfig`):

* `steps`: PGD (Madry et al. 2018) with many steps (default 1000) against the evaluation's
  PGD (default 20) at the same eps and step. Engstrom/Shafahi-style masking: accuracy keeps
  falling with k.
* `restarts`: PGD with R random restarts (worst case kept) against one start.
* `spsa`: the gradient-free SPSA (Uesato et al. 2018) against PGD on the same subsample; a
  gradient-free attack beating a white-box gradient attack means the gradients mislead.
* `single_step`: FGSM (Goodfellow et al. 2015) against PGD; a one-step attack must not beat
  an iterative one.
* `unbounded`: PGD at eps = the whole input range with Madry's step 2.5 eps / steps (Shafahi
  et al. table 9); every image is reachable, so accuracy must reach ~0 (at most
  `audit_unbounded_max`).

`masking_audit` returns a JSON-ready dict; `write_audit` writes audit.json and audit.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from lrm_tf import attacks
from lrm_tf.attacks.pgd import pgd_spec, proportional_eps_step
from lrm_tf.config import AuditConfig, SpsaOptions, Threat
from lrm_tf.eval.evaluation import accuracy_point
from lrm_tf.report.writer import write_report


def _measure(model, images, labels, spec, threat, batch_size, seed, strategy, log, spsa=None):
    entry = accuracy_point(model, images, labels, spec, threat, batch_size, seed, strategy, spsa)
    log(
        f"  {spec.name:<18} eps={threat.eps:.4g} step={threat.eps_step:.4g} "
        f"restarts={threat.restarts}: {100 * entry['accuracy']:6.2f}% of {entry['examples']} "
        f"({entry['seconds']:.0f}s)"
    )
    return entry


def _check(name, weaker, stronger, tolerance, what):
    """A sign of masking when `stronger` (the audit's extra attack) lowers accuracy by more
    than `tolerance` below `weaker` (the reference attack on the same examples)."""
    drop = weaker["accuracy"] - stronger["accuracy"]
    sign = drop > tolerance
    change = f"{-100 * drop:+.2f} points" if drop else "no change"
    detail = (
        f"{what}: {100 * weaker['accuracy']:.2f}% -> {100 * stronger['accuracy']:.2f}% "
        f"({change}, tolerance {100 * tolerance:.1f})"
    )
    return {"check": name, "masking_sign": bool(sign), "drop": drop, "detail": detail}


def masking_audit(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    threat: Threat,
    config: AuditConfig | None = None,
    batch_size: int = 500,
    seed: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    spsa: SpsaOptions | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Runs the audit's attacks on (images, labels) and judges each check.

    Args:
      model: a Keras model, a loaded SavedModel or a callable images -> logits.
      images: float [N, H, W, C] in the threat's range ([0, 1]); labels: int [N].
      threat: eps, step, input range and label choice; its `restarts` is ignored (the audit
        compares one start with `config.audit_restarts`).
      config: the audit's attacks and thresholds (`lrm_tf.config.AuditConfig`; None: its
        defaults).
      batch_size, seed, strategy: as for `evaluation.attack_accuracy`.
      spsa: SPSA's options (None: `SpsaOptions()`); its `spsa_examples` is replaced by
        `config.audit_spsa_examples`.
      log: where the measurements and the verdict go.

    Returns:
      A JSON-able dict: threat, config, spsa (options), seed, measurements (name ->
      `evaluation.accuracy_point` record), checks (check, masking_sign, drop, detail),
      masking_signs (the names of the checks that found a sign) and the verdict.
    """
    config = config or AuditConfig()
    loss = config.audit_loss
    low_steps, high_steps = (int(k) for k in config.audit_steps)
    one = threat.replace(restarts=1)
    run = lambda spec, t, x=images, y=labels, **kw: _measure(
        model, x, y, spec, t, batch_size, seed, strategy, log, **kw
    )
    log(
        f"gradient-masking audit on {len(labels)} examples, eps={threat.eps:.4g}, "
        f"step={threat.eps_step:.4g}, loss={loss}"
    )
    low, high = pgd_spec(low_steps, loss), pgd_spec(high_steps, loss)
    fgsm = attacks.parse_attack("fgsm_xent").replace(loss=loss)
    m: dict[str, dict] = {
        "clean": run(attacks.parse_attack("clean"), one),
        "fgsm": run(fgsm, one),
        "pgd_low": run(low, one),
        "pgd_high": run(high, one),
        "pgd_low_restarts": run(low, threat.replace(restarts=config.audit_restarts)),
    }
    range_eps = threat.clip_max - threat.clip_min
    unbounded_steps = config.audit_unbounded_steps
    m["pgd_unbounded"] = run(
        pgd_spec(unbounded_steps, loss),
        one.replace(eps=range_eps, eps_step=proportional_eps_step(range_eps, unbounded_steps)),
    )
    checks: list[dict] = [
        _check(
            "steps",
            m["pgd_low"],
            m["pgd_high"],
            config.audit_tolerance,
            f"PGD-{low_steps} -> PGD-{high_steps}",
        ),
        _check(
            "restarts",
            m["pgd_low"],
            m["pgd_low_restarts"],
            config.audit_tolerance,
            f"PGD-{low_steps}: 1 -> {config.audit_restarts} restarts",
        ),
    ]
    spsa = spsa or SpsaOptions()
    if config.audit_spsa_examples:
        n = min(config.audit_spsa_examples, len(labels))
        spsa = spsa.replace(spsa_examples=n)
        spsa_spec = attacks.parse_attack("spsa1").replace(steps=config.audit_spsa_iterations)
        m["pgd_low_spsa_subset"] = run(low, one, images[:n], labels[:n])
        m["spsa"] = run(spsa_spec, one, images[:n], labels[:n], spsa=spsa)
        checks.append(
            _check(
                "spsa",
                m["pgd_low_spsa_subset"],
                m["spsa"],
                config.audit_tolerance,
                f"PGD-{low_steps} -> SPSA-{config.audit_spsa_iterations} "
                f"({spsa.spsa_samples} samples) on the first {n} examples",
            )
        )
    checks.append(
        _check("single_step", m["pgd_low"], m["fgsm"], config.audit_tolerance, f"PGD-{low_steps} -> FGSM")
    )
    unbounded = m["pgd_unbounded"]["accuracy"]
    limit = config.audit_unbounded_max
    checks.append(
        {
            "check": "unbounded",
            "masking_sign": bool(unbounded > limit),
            "drop": m["clean"]["accuracy"] - unbounded,
            "detail": f"PGD-{unbounded_steps} at eps={range_eps:g} (the whole input range): "
            f"{100 * unbounded:.2f}% (must be <= {100 * limit:.1f}%)",
        }
    )
    signs = [c for c in checks if c["masking_sign"]]
    if signs:
        verdict = (
            "SIGNS OF GRADIENT MASKING: "
            + "; ".join(c["detail"] for c in signs)
            + f". Do not trust the PGD-{low_steps} accuracy "
            f"({100 * m['pgd_low']['accuracy']:.2f}%); report the lowest accuracy "
            f"measured ({100 * min(e['accuracy'] for k, e in m.items() if k != 'clean'):.2f}%"
            " over the audit's attacks) and attack further."
        )
    else:
        verdict = (
            f"No sign of gradient masking in these {len(checks)} checks: more steps, "
            "restarts"
            + (", SPSA" if config.audit_spsa_examples else "")
            + " and FGSM do not beat the evaluation's PGD by more than "
            f"{100 * config.audit_tolerance:.1f} points, and the unbounded attack reaches "
            f"{100 * unbounded:.2f}%. (Absence of these signs is not proof of robustness.)"
        )
    log(verdict)
    return {
        "threat": dataclasses.asdict(threat),
        "config": dataclasses.asdict(config),
        "spsa": dataclasses.asdict(spsa),
        "seed": seed,
        "measurements": m,
        "checks": checks,
        "masking_signs": [c["check"] for c in signs],
        "verdict": verdict,
    }


def audit_markdown(audit: dict, title: str = "Gradient-masking audit") -> str:
    """audit.md: the threat, one row per measurement, one per check, and the verdict.

    Args:
      audit: `masking_audit`'s output.
      title: the heading.

    Returns:
      The Markdown text.
    """
    t = audit["threat"]
    lines = [
        f"# {title}",
        "",
        f"Threat: eps={t['eps']:.4g}, step={t['eps_step']:.4g}, input "
        f"range [{t['clip_min']:g}, {t['clip_max']:g}], seed {audit['seed']}.",
        "",
        "| measurement | attack | eps | restarts | accuracy | examples | seconds |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key, e in audit["measurements"].items():
        lines.append(
            f"| {key} | {e['attack']} | {e['eps']:.4g} | {e['restarts']} | "
            f"{100 * e['accuracy']:.2f}% | {e['examples']} | {e['seconds']:.0f} |"
        )
    lines += ["", "| check | sign of masking | evidence |", "|---|---|---|"]
    for c in audit["checks"]:
        lines.append(f"| {c['check']} | {'YES' if c['masking_sign'] else 'no'} | {c['detail']} |")
    lines += ["", f"**Verdict.** {audit['verdict']}", ""]
    return "\n".join(lines)


def write_audit(out_dir: str, audit: dict, title: str = "Gradient-masking audit") -> tuple[str, str]:
    """Writes audit.json and audit.md in `out_dir` (atomically).

    Args:
      out_dir: the directory (created if missing).
      audit: `masking_audit`'s output.
      title: the heading of audit.md.

    Returns:
      (json_path, md_path).
    """
    return write_report(out_dir, "audit", audit, audit_markdown(audit, title))
