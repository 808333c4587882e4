"""needle.data: loader order, transforms, idx parsing, embedded files, CIFAR unpickler, PTB."""
import gzip
import hashlib
import os
import pickle

import numpy as np
import pytest

import needle as ndl
from needle.data import (
    DataLoader,
    NDArrayDataset,
    RandomCrop,
    RandomFlipHorizontal,
    batchify,
    get_batch,
)
from needle.data.datasets import embedded

SHA256 = {
    "t10k-images-idx3-ubyte.gz":
        "8be8d0bbf1280248939ffa7126e45f0af5476d9b7e23398415c58ac9976591df",
    "t10k-labels-idx1-ubyte.gz":
        "dea1acd74f516a7fe5404d4f2afa815fd3da07dceb42585f6a240c3a81bf1b85",
    "ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}


@pytest.mark.parametrize("name", sorted(SHA256))
def test_embedded_files_match_recorded_sha256(name):
    with open(os.path.join(embedded.EMBEDDED_DIR, name), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == SHA256[name]


def test_dataloader_order_without_shuffle():
    X = np.arange(10, dtype=np.float32).reshape(10, 1)
    y = np.arange(10, dtype=np.int32)
    batches = list(DataLoader(NDArrayDataset(X, y), batch_size=4))
    assert [b[1].numpy().tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all(isinstance(t, ndl.Tensor) for b in batches for t in b)
    assert batches[0][0].dtype == "float32" and batches[0][1].dtype == "int32"


def test_dataloader_shuffle_follows_numpy_rng_per_epoch():
    y = np.arange(7, dtype=np.float32)
    loader = DataLoader(NDArrayDataset(y), batch_size=3, shuffle=True)
    np.random.seed(2)
    first, second = np.random.permutation(7), np.random.permutation(7)
    np.random.seed(2)
    for expected in (first, second):
        got = np.concatenate([b[0].numpy() for b in loader])
        np.testing.assert_array_equal(got, expected)
    assert len(loader) == 3


def test_dataloader_narrows_64_bit_arrays():
    ds = NDArrayDataset(np.zeros((2, 3)), np.array([1, 2], dtype=np.int64))
    x, y = next(iter(DataLoader(ds, batch_size=2)))
    assert x.dtype == "float32" and y.dtype == "int32"


def test_transforms_follow_numpy_rng():
    img = np.arange(4 * 5 * 2, dtype=np.float32).reshape(4, 5, 2)
    np.random.seed(0)
    flip = np.random.rand() < 0.5
    np.random.seed(0)
    out = RandomFlipHorizontal(0.5)(img)
    np.testing.assert_array_equal(out, img[:, ::-1] if flip else img)
    np.testing.assert_array_equal(RandomFlipHorizontal(1.0)(img), img[:, ::-1])
    np.random.seed(1)
    sx, sy = np.random.randint(-2, 3, size=2)
    np.random.seed(1)
    out = RandomCrop(2)(img)
    padded = np.pad(img, ((2, 2), (2, 2), (0, 0)))
    np.testing.assert_array_equal(out, padded[2 + sx: 6 + sx, 2 + sy: 7 + sy])
    with pytest.raises(ValueError, match="H x W x C"):
        RandomCrop(1)(img[0])


def _write_idx(path, magic, dims, data):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    with gzip.open(path, "wb") as f:
        f.write(header + bytes(data))


def test_mnist_dataset_reads_idx_and_applies_transforms(tmp_path):
    pixels = np.arange(3 * 28 * 28) % 256
    _write_idx(tmp_path / "img.gz", 2051, (3, 28, 28), pixels.astype(np.uint8))
    _write_idx(tmp_path / "lab.gz", 2049, (3,), [4, 1, 9])
    ds = ndl.data.MNISTDataset(str(tmp_path / "img.gz"), str(tmp_path / "lab.gz"),
                               transforms=[RandomFlipHorizontal(1.0)])
    x, y = ds[1]
    assert x.shape == (28, 28, 1) and y == 1
    expected = pixels.reshape(3, 28, 28, 1)[1, :, ::-1] / 255.0
    np.testing.assert_allclose(x, expected.astype(np.float32))
    xb, yb = ds[np.array([0, 2])]
    assert xb.shape == (2, 28, 28, 1) and yb.tolist() == [4, 9]


def test_idx_wrong_magic_and_corrupt_gzip_name_the_file(tmp_path):
    _write_idx(tmp_path / "lab.gz", 2049, (1,), [3])
    with pytest.raises(ValueError, match=r"lab\.gz.*expected idx magic 2051, found 2049"):
        ndl.data.MNISTDataset(str(tmp_path / "lab.gz"), str(tmp_path / "lab.gz"))
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"bad\.gz"):
        ndl.data.read_idx(str(tmp_path / "bad.gz"), 2049)
    _write_idx(tmp_path / "short.gz", 2049, (5,), [1, 2])
    with pytest.raises(ValueError, match=r"short\.gz.*5"):
        ndl.data.read_idx(str(tmp_path / "short.gz"), 2049)
    with pytest.raises(FileNotFoundError, match="missing"):
        ndl.data.read_idx(str(tmp_path / "missing.gz"), 2049)


def test_load_mnist_split_shapes_and_classes():
    X, y = ndl.data.load_mnist_split("train")
    Xh, yh = ndl.data.load_mnist_split("heldout", flat=True)
    assert X.shape == (8000, 28, 28, 1) and Xh.shape == (2000, 784)
    assert X.dtype == np.float32 and y.dtype == np.int32 and 0 <= X.min() and X.max() <= 1
    counts = np.bincount(np.concatenate([y, yh]), minlength=10)
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    with pytest.raises(ValueError, match="heldout"):
        ndl.data.load_mnist_split("test")


def test_embedded_ptb_corpus_batchify_get_batch():
    corpus = ndl.data.embedded_ptb(max_lines=20)
    with open(os.path.join(embedded.EMBEDDED_DIR, "ptb.valid.txt")) as f:
        first_line = f.readline().split()
    assert [corpus.dictionary.idx2word[i] for i in corpus.train[:len(first_line)]] == first_line
    eos = corpus.dictionary.word2idx["<eos>"]
    assert corpus.train.count(eos) == 20 and corpus.test.count(eos) == 20
    full = ndl.data.embedded_ptb()
    assert len(full.train) == 73760 and len(full.test) == 82430
    assert len(full.dictionary) == 7595 + 1  # distinct words + "<eos>"
    batches = batchify(list(range(23)), 4, device=None, dtype="float32")
    assert batches.shape == (5, 4) and batches[:, 1].tolist() == [5, 6, 7, 8, 9]
    data, target = get_batch(batches, 3, bptt=3)
    assert data.shape == (1, 4) and target.shape == (4,)
    np.testing.assert_array_equal(target.numpy(), batches[4])
    data, target = get_batch(batches, 0, bptt=2, dtype="int32")
    assert data.dtype == "int32" and target.numpy().tolist() == batches[1:3].reshape(-1).tolist()


def test_dictionary_assigns_ids_in_first_seen_order():
    d = ndl.data.Dictionary()
    assert [d.add_word(w) for w in ["a", "b", "a", "c"]] == [0, 1, 0, 2] and len(d) == 3


def _cifar_batch(path, n, rng):
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"labels": [int(v) for v in rng.integers(0, 10, n)], b"batch_label": b"x"}
    path.write_bytes(pickle.dumps(batch, protocol=2))  # the course's on-disk format
    return batch


def test_cifar10_dataset_loads_with_restricted_unpickler(tmp_path):
    rng = np.random.default_rng(0)
    parts = [_cifar_batch(tmp_path / f"data_batch_{i}", 3, rng) for i in range(1, 6)]
    _cifar_batch(tmp_path / "test_batch", 2, rng)
    ds = ndl.data.CIFAR10Dataset(str(tmp_path), train=True)
    assert len(ds) == 15 and ds.X.shape == (15, 3, 32, 32)
    x, y = ds[4]
    np.testing.assert_allclose(x, parts[1][b"data"][1].reshape(3, 32, 32) / 255.0, rtol=1e-6)
    assert y == parts[1][b"labels"][1]
    assert len(ndl.data.CIFAR10Dataset(str(tmp_path), train=False)) == 2


def test_cifar10_refuses_code_in_pickles(tmp_path):
    evil = tmp_path / "test_batch"
    evil.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")  # protocol-0 call of os.system
    with pytest.raises(ValueError, match=r"test_batch.*refusing to load global os\.system"):
        ndl.data.CIFAR10Dataset(str(tmp_path), train=False)
