"""The command line of the replica scripts: `python <script> MODEL.keras REPLICAS` prints the
script's `measure(model, strategy)` as JSON, under a MirroredStrategy of REPLICAS logical CPUs
(configured before TensorFlow initialises, hence a fresh process and no TensorFlow import here)."""

import json
import os
import sys


def run(measure):
    from lrm_tf.training.distribute import split_logical_cpus

    devices = split_logical_cpus(int(sys.argv[2]))
    import tensorflow as tf

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from eval_test_utils import load_model

    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        model = load_model(sys.argv[1])
    print(json.dumps(measure(model, strategy)))
