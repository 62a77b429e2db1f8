"""lrm_tf: logit-regularization defenses and CleverHans-style evaluation in Keras 3."""
__version__ = "0.1.0"
