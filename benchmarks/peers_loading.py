"""Other tools use lrm_tf's exported SavedModel as it is, and get lrm_tf's numbers.

Runs the recipes of README.md ("Attacking an exported model with other tools") on one run
directory: Keras' `TFSMLayer` (clean accuracy), ART's `TensorFlowV2Classifier` + FGSM and
foolbox's `TensorFlowModel` + FGSM, beside lrm_tf's own `clean` and `fgsm_xent` on the same
images and eps. Exits 1 if a peer's accuracy differs from lrm_tf's by more than `--tolerance`
(default: zero examples).

ART and foolbox are not lrm_tf dependencies: run this in a separate environment that has
them and TensorFlow (BUILD_NOTES.md, "Peers"), e.g.

    python3 -m venv ../peers
    echo "$PWD/.venv/lib/python3.11/site-packages" > ../peers/lib/python3.11/site-packages/tf.pth
    ../peers/bin/pip install adversarial-robustness-toolbox foolbox
    python -m lrm_tf.main --flagfile=flags/quickstart.cfg --model_dir=runs/quickstart
    ../peers/bin/python benchmarks/peers_loading.py --run runs/quickstart --eps 0.1
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # lrm_tf from this checkout, whatever the environment


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a run directory with saved_model/ and flags.json")
    parser.add_argument("--eps", type=float, default=0.1, help="FGSM eps in the [0, 1] input scale")
    parser.add_argument("--examples", type=int, default=0, help="first N test images (0: all)")
    parser.add_argument("--local_data", default="", help="as lrm_tf's --local_data (digits: none)")
    parser.add_argument("--tolerance", type=int, default=0, help="examples a peer may differ by")
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from lrm_tf import data
    from lrm_tf.config import Threat
    from lrm_tf.eval.evaluation import attack_accuracy

    with open(os.path.join(args.run, "flags.json")) as f:
        dataset = json.load(f)["dataset"]
    arrays = data.load_arrays(dataset, local_data=args.local_data or None)
    n = args.examples or len(arrays.y_test)
    x = data.to_float(arrays.x_test[:n]).numpy()
    y = arrays.y_test[:n].astype(np.int64)
    path = os.path.join(args.run, "saved_model")
    loaded = tf.saved_model.load(path)
    classes = int(loaded(x[:1]).shape[-1])
    threat = Threat(eps=args.eps, eps_step=args.eps)

    rows = []  # (tool, attack, accuracy)
    for attack in ("clean", "fgsm_xent"):
        accuracy, _ = attack_accuracy(loaded, x, y, attack, threat, progress=False)
        rows.append(("lrm_tf", attack, accuracy))

    # Keras: the SavedModel as a layer (inference only).
    layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
    logits = layer(x)["logits"]
    rows.append(("keras TFSMLayer", "clean", float(np.mean(np.argmax(logits, 1) == y))))

    # ART: the loaded object is the model; it calls model(x, training=False).
    from art.attacks.evasion import FastGradientMethod
    from art.estimators.classification import TensorFlowV2Classifier

    classifier = TensorFlowV2Classifier(
        model=loaded,
        nb_classes=classes,
        input_shape=x.shape[1:],
        loss_object=tf.keras.losses.CategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0),
    )
    rows.append(("ART", "clean", float(np.mean(np.argmax(classifier.predict(x), 1) == y))))
    x_adv = FastGradientMethod(classifier, norm=np.inf, eps=args.eps).generate(x, y=np.eye(classes)[y])
    rows.append(("ART", "fgsm_xent", float(np.mean(np.argmax(classifier.predict(x_adv), 1) == y))))

    # foolbox: the loaded object is a differentiable callable.
    import foolbox as fb

    fmodel = fb.TensorFlowModel(loaded, bounds=(0.0, 1.0))
    xt, yt = tf.constant(x), tf.constant(y)
    rows.append(("foolbox", "clean", float(fb.accuracy(fmodel, xt, yt))))
    _, _, success = fb.attacks.FGSM()(fmodel, xt, yt, epsilons=args.eps)
    rows.append(("foolbox", "fgsm_xent", 1.0 - float(np.mean(success.numpy()))))

    ours = {attack: acc for tool, attack, acc in rows if tool == "lrm_tf"}
    print(f"{args.run}: {n} {dataset} test images, FGSM eps {args.eps:g}\n")
    print("| tool | attack | accuracy | lrm_tf | differing examples |\n|---|---|---:|---:|---:|")
    worst = 0
    for tool, attack, acc in rows:
        differ = round(abs(acc - ours[attack]) * n)
        worst = max(worst, differ)
        print(f"| {tool} | {attack} | {100 * acc:.2f}% | {100 * ours[attack]:.2f}% | {differ} |")
    if worst > args.tolerance:
        print(f"\nMISMATCH: a peer differs from lrm_tf by {worst} examples (tolerance {args.tolerance})")
        sys.exit(1)
    print("\nevery peer equals lrm_tf")


if __name__ == "__main__":
    main()
