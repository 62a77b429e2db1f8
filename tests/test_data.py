import numpy as np
import pytest
import tensorflow as tf

from lrm_tf import data


def test_mnist_local_reads_upstream_idx(mnist_dir):
    a = data.load_arrays("mnist", local_data=mnist_dir)
    assert a.x_train.shape == (60000, 28, 28, 1) and a.x_test.shape == (10000, 28, 28, 1)
    assert a.x_train.dtype == np.uint8 and a.x_train.max() == 255
    # The upstream files start with the labels 5, 0, 4, 1 (train) and 7, 2, 1, 0 (test).
    assert list(a.y_train[:4]) == [5, 0, 4, 1] and list(a.y_test[:4]) == [7, 2, 1, 0]
    assert np.bincount(a.y_test).tolist()[:3] == [980, 1135, 1032]


def test_cifar10_local_reads_python_batches(cifar10_dir):
    a = data.load_arrays("cifar10", local_data=cifar10_dir)
    assert a.x_train.shape == (50000, 32, 32, 3) and a.x_test.shape == (10000, 32, 32, 3)
    assert np.bincount(a.y_train).tolist() == [5000] * 10
    # First test label of upstream CIFAR-10 is 3 (cat); channel-major rows became HWC.
    assert a.y_test[0] == 3
    assert a.x_test[0].std() > 10


def test_digits_is_embedded_and_split():
    a = data.load_arrays("digits")
    assert a.x_train.shape == (1437, 8, 8, 1) and a.x_test.shape == (360, 8, 8, 1)
    assert a.x_train.max() == 255 and set(np.unique(a.y_test)) == set(range(10))


def test_synthetic_shapes_for_every_dataset():
    for name, info in data.DATASETS.items():
        a = data.synthetic_arrays(name, 8, 4)
        assert a.x_train.shape == (8, *info.image_shape)
        assert a.y_train.max() < info.num_classes


def test_missing_dataset_message_names_flags(tmp_path):
    with pytest.raises(data.DataError, match="--local_data"):
        data.load_arrays("cifar100", data_dir=str(tmp_path), download=False)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="choose one of"):
        data.dataset_info("imagenet")


def test_train_pipeline_range_order_and_augmentation():
    a = data.synthetic_arrays("cifar10", 64, 8)
    ds = data.train_dataset(a, 16, seed=1, epoch=0)
    batches = list(ds)
    assert len(batches) == 4
    x, y = batches[0]
    assert x.dtype == tf.float32 and x.shape == (16, 32, 32, 3)
    assert float(tf.reduce_min(x)) >= 0.0 and float(tf.reduce_max(x)) <= 1.0
    # Same (seed, epoch) -> same batches; another epoch -> another order.
    again = list(data.train_dataset(a, 16, seed=1, epoch=0))
    other = list(data.train_dataset(a, 16, seed=1, epoch=1))
    np.testing.assert_array_equal(batches[0][0], again[0][0])
    assert not np.array_equal(batches[0][1], other[0][1])
    # Same order without augmentation; every augmented image is a crop of the zero-padded
    # (possibly flipped) original, and most differ from it.
    plain = np.concatenate([x for x, _ in data.train_dataset(a, 16, seed=1, epoch=0, augment=False)])
    aug = np.concatenate([x for x, _ in batches])
    changed = 0
    for p, q in zip(plain, aug):
        padded = [np.pad(v, ((4, 4), (4, 4), (0, 0))) for v in (p, p[:, ::-1])]
        assert any(
            np.array_equal(v[i : i + 32, j : j + 32], q) for v in padded for i in range(9) for j in range(9)
        )
        changed += not np.array_equal(p, q)
    assert changed > 32


def test_eval_pipeline_is_unaugmented_and_limited():
    a = data.synthetic_arrays("mnist", 8, 10)
    xs = np.concatenate([x for x, _ in data.eval_dataset(a, 4, limit=6)])
    np.testing.assert_allclose(xs, a.x_test[:6] / 255.0, atol=1e-7)


def _write_svhn(folder, name, n, first_label):
    from scipy.io import savemat

    x = np.full((32, 32, 3, n), first_label, np.uint8)  # upstream layout: HWCN
    y = (np.arange(n) % 10 + first_label) % 10 + 1  # labels 1..10, 10 meaning the digit 0
    savemat(str(folder / name), {"X": x, "y": y.reshape(-1, 1)})


def test_svhn_local_with_and_without_extra(tmp_path):
    _write_svhn(tmp_path, "train_32x32.mat", 6, 0)
    _write_svhn(tmp_path, "extra_32x32.mat", 4, 3)
    _write_svhn(tmp_path, "test_32x32.mat", 5, 7)
    plain = data.load_arrays("svhn_cropped", local_data=str(tmp_path))
    extra = data.load_arrays("svhn_cropped", local_data=str(tmp_path), svhn_extra=True)
    assert plain.x_train.shape == (6, 32, 32, 3) and extra.x_train.shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(extra.x_train[:6], plain.x_train)
    assert (extra.x_train[6:] == 3).all()  # the extra images follow the train images
    assert extra.y_train.min() >= 0 and extra.y_train.max() <= 9  # 10 -> 0 as in TFDS
    assert len(extra.y_test) == len(plain.y_test) == 5


def test_svhn_extra_is_for_svhn_only():
    with pytest.raises(ValueError, match="svhn_extra"):
        data.load_arrays("digits", svhn_extra=True)


def test_registry_split_sizes():
    """Split sizes live in the registry only; the embedded set's split follows them."""
    from lrm_tf.data import registry

    sizes = {name: (i.train_size, i.test_size, i.extra_size) for name, i in registry.DATASETS.items()}
    assert sizes == {
        "mnist": (60000, 10000, 0),
        "cifar10": (50000, 10000, 0),
        "cifar100": (50000, 10000, 0),
        "svhn_cropped": (73257, 26032, 531131),
        "digits": (1437, 360, 0),
    }
    assert registry.training_images("svhn_cropped", extra=True) == 604388
    assert registry.training_images("cifar10") == 50000
    with pytest.raises(ValueError, match="no extra"):
        registry.training_images("mnist", extra=True)
    a = data.load_arrays("digits")
    info = data.dataset_info("digits")
    assert (len(a.y_train), len(a.y_test)) == (info.train_size, info.test_size)


def test_registry_is_tensorflow_free():
    import subprocess
    import sys

    code = "import sys, lrm_tf.data.registry; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.strip() == "False"
