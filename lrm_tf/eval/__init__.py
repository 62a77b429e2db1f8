"""Evaluation tools built on the attacks: accuracy under attack, robustness curves, the
gradient-masking audit, black-box transfer and the papers' analyses."""
