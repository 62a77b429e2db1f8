"""lrm_tf: logit-regularization defenses and CleverHans-style evaluation in Keras 3.

Importing the package changes nothing in the process (no environment variables, no Keras
global state); the command line (`python -m lrm_tf.main`) sets what it needs.
"""

__version__ = "0.1.0"
