"""Gradient-masking audit of a trained model: one command, plain-language verdicts.

A defense that only breaks the attacker's gradients (Athalye et al. 2018, "Obfuscated
gradients give a false sense of security"; Carlini et al. 2019, "On evaluating adversarial
robustness", section 5) shows typical signs that cheap extra attacks reveal; an attack that
has not converged shows others. The audit runs, on the same examples and at the
evaluation's eps unless stated (settings: `lrm_tf.config.AuditConfig`):

* the reference PGD (Madry et al. 2018; default 20 steps) and PGD with many steps (default
  1000) at the same eps and step, and the reference with R random restarts;
* APGD-CE (Croce & Hein 2020, arXiv:2003.01690; 100 iterations), which needs no step size;
* FGSM (Goodfellow et al. 2015), a single step;
* the gradient-free Square (Andriushchenko et al. 2020; `audit_square_queries` queries) and
  SPSA (Uesato et al. 2018) on the first `audit_spsa_examples` examples;
* PGD at eps = the whole input range with Madry's step 2.5 eps / steps (Shafahi et al.
  table 9): every image is in reach, accuracy must reach ~0.

Each attack's per-example outcome (`evaluation.attack_outcome`) feeds
`lrm_tf.eval.audit_verdict.judge`: paired McNemar exact tests, three verdicts (no sign,
attack not converged, signs of masking) and the number to report (the per-example worst
case at the evaluation's eps). `masking_audit` returns a JSON-ready dict; `write_audit`
writes audit.json and audit.md.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from lrm_tf import attacks
from lrm_tf.attacks.pgd import pgd_spec, proportional_eps_step
from lrm_tf.config import AuditConfig, SpsaOptions, Threat
from lrm_tf.eval import audit_verdict
from lrm_tf.eval.cost import attack_cost
from lrm_tf.eval.evaluation import attack_outcome
from lrm_tf.report import progress as progress_lines
from lrm_tf.report.progress import Report
from lrm_tf.report.writer import write_report


def _record(spec, threat: Threat, correct: np.ndarray, seconds: float) -> dict:
    return {
        "attack": spec.name,
        "eps": threat.eps,
        "eps_step": threat.eps_step,
        "restarts": threat.restarts,
        "accuracy": float(np.mean(correct)) if len(correct) else 0.0,
        "examples": int(len(correct)),
        "seconds": round(seconds, 2),
    }


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
    progress: bool | Report = True,
) -> dict:
    """Runs the audit's attacks on (images, labels) and judges them.

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
      progress: True: one progress line for the whole audit, per measurement and batch,
        weighted by each attack's cost (`lrm_tf.report.progress`); False: none; a
        report(fraction, note).

    Returns:
      A JSON-able dict: threat, config, spsa (options), seed, measurements (name -> record:
      attack, eps, eps_step, restarts, accuracy, examples, seconds) and what
      `audit_verdict.judge` returns (verdict_kind, verdict, checks with their paired counts
      and p-values, masking_signs, not_converged, too_weak, recommended, significance).

    Raises:
      ValueError: as for `evaluation.attack_accuracy` (bad images, options).
    """
    config = config or AuditConfig()
    spsa = spsa or SpsaOptions()
    loss = config.audit_loss
    low_steps, high_steps = (int(k) for k in config.audit_steps)
    one = threat.replace(restarts=1)
    m: dict[str, dict] = {}
    outcomes: dict[str, np.ndarray] = {}
    low = pgd_spec(low_steps, loss)
    plan = [  # (key, attack, threat, examples)
        ("clean", attacks.parse_attack("clean"), one, len(labels)),
        ("fgsm", attacks.parse_attack("fgsm_xent").replace(loss=loss), one, len(labels)),
        ("pgd_low", low, one, len(labels)),
        ("pgd_high", pgd_spec(high_steps, loss), one, len(labels)),
        ("pgd_low_restarts", low, threat.replace(restarts=config.audit_restarts), len(labels)),
        ("apgd_ce", attacks.parse_attack("apgd_ce"), one, len(labels)),
    ]
    if config.audit_square_queries:
        plan.append(
            ("square", attacks.parse_attack(f"square{config.audit_square_queries}"), one, len(labels))
        )
    if config.audit_spsa_examples:
        spsa = spsa.replace(spsa_examples=min(config.audit_spsa_examples, len(labels)))
        spsa_spec = attacks.parse_attack("spsa1").replace(steps=config.audit_spsa_iterations)
        plan.append(("spsa", spsa_spec, one, spsa.spsa_examples))
    range_eps = threat.clip_max - threat.clip_min
    steps = config.audit_unbounded_steps
    unbounded = one.replace(eps=range_eps, eps_step=proportional_eps_step(range_eps, steps))
    plan.append((audit_verdict.UNBOUNDED, pgd_spec(steps, loss), unbounded, len(labels)))

    log(
        f"gradient-masking audit on {len(labels)} examples, eps={threat.eps:.4g}, "
        f"step={threat.eps_step:.4g}, loss={loss}"
    )
    with progress_lines.reporting("audit", progress) as report:
        weights = [attack_cost(spec, t, spsa) * n for _, spec, t, n in plan]
        prefixes = [f"{i}/{len(plan)} {key} ({spec.name}): " for i, (key, spec, *_) in enumerate(plan, 1)]
        for (key, spec, t, n), part in zip(plan, progress_lines.split(report, weights, prefixes)):
            if key == "spsa":
                # The reference on the same subset: its per-example outcomes are the first n of
                # the full run (the attacks key their randomness per example).
                outcomes["pgd_low_spsa_subset"] = outcomes["pgd_low"][:n]
                m["pgd_low_spsa_subset"] = {**m["pgd_low"], **_record(low, one, outcomes["pgd_low"][:n], 0.0)}
            t0 = time.time()
            out = attack_outcome(
                model,
                images[:n],
                labels[:n],
                spec,
                t,
                batch_size,
                seed,
                strategy,
                part,
                spsa,
                log=lambda _: None,
            )
            outcomes[key] = np.asarray(out.correct, bool)
            m[key] = e = _record(spec, t, outcomes[key], time.time() - t0)
            progress_lines.say(
                report,
                f"  {key:<19} {spec.name:<14} eps={t.eps:.4g} step={t.eps_step:.4g} restarts={t.restarts}: "
                f"{100 * e['accuracy']:6.2f}% of {e['examples']} ({e['seconds']:.0f}s)",
                log,
            )
    verdict = audit_verdict.judge(
        m,
        outcomes,
        eps=threat.eps,
        eps_step=threat.eps_step,
        ref_steps=low_steps,
        level=config.audit_level,
        min_effect=config.audit_tolerance,
        unbounded_max=config.audit_unbounded_max,
    )
    log(verdict["verdict"])
    return {
        "threat": dataclasses.asdict(threat),
        "config": dataclasses.asdict(config),
        "spsa": dataclasses.asdict(spsa),
        "seed": seed,
        "measurements": m,
        **verdict,
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
    sig = audit["significance"]
    lines += [
        "",
        f"Rule: {sig['test']} at level {sig['level']:g}: b examples broken only by the attack "
        "checked, c only by the one it is compared with, p the two-sided binomial p-value of b "
        "in b + c at 1/2"
        + (
            f"; a masking sign also needs at least {100 * sig['min_effect']:.1f} points."
            if sig["min_effect"]
            else "."
        ),
        "",
        "| check | kind | finding | n | b | c | p | evidence |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for c in audit["checks"]:
        p = f"{c['p_value']:.3g}" if "p_value" in c else ""
        lines.append(
            f"| {c['check']} | {c['kind']} | {'YES' if c['finding'] else 'no'} | {c.get('n', '')} | "
            f"{c.get('b', '')} | {c.get('c', '')} | {p} | {c['detail']} |"
        )
    rec = audit["recommended"]
    lines += [
        "",
        f"**Verdict: {audit['verdict_kind']}.** {audit['verdict']}",
        "",
        f"**Report:** {100 * rec['accuracy']:.2f}% ({rec['how']}: {', '.join(rec['attacks'])}).",
        "",
    ]
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
