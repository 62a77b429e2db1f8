"""lrm_tf: logit-regularization defenses and CleverHans-style evaluation in Keras 3."""
import os

# TensorFlow leaves its oneDNN CPU kernels off on CPUs without AVX-512 VNNI/BF16/AMX; on the
# 2-core AVX2 development machine they made a forward+backward pass of Madry's ResNet 1.9x
# faster (BUILD_NOTES.md, "oneDNN"). It only takes effect when lrm_tf is imported before
# tensorflow (as `python -m lrm_tf.main` does); an explicit TF_ENABLE_ONEDNN_OPTS wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
