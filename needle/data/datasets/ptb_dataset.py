"""Penn Treebank: word Dictionary, Corpus of id lists, batchify and get_batch (time-major)."""
import os

import numpy as np

from needle.autograd import Tensor

__all__ = ["Dictionary", "Corpus", "batchify", "get_batch"]


class Dictionary:
    """Bidirectional word <-> id map; ids are assigned in first-seen order."""

    def __init__(self):
        self.word2idx = {}
        self.idx2word = []

    def add_word(self, word):
        """Id of ``word``, adding it if new."""
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]

    def __len__(self):
        return len(self.idx2word)


class Corpus:
    """Token ids of a train and a test file, one ``<eos>`` appended per line.

    Parameters
    ----------
    base_dir : str
        Folder holding the files.
    max_lines : int, optional
        Read at most this many lines of each file.
    train_file, test_file : str
        File names inside ``base_dir`` (course: train.txt / test.txt).
    """

    def __init__(self, base_dir, max_lines=None, train_file="train.txt", test_file="test.txt"):
        self.dictionary = Dictionary()
        self.train = self.tokenize(os.path.join(base_dir, train_file), max_lines)
        self.test = self.tokenize(os.path.join(base_dir, test_file), max_lines)

    def tokenize(self, path, max_lines=None):
        """List of ids of the words of ``path`` (adds new words to the dictionary)."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"PTB text file not found: {path}")
        ids = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f):
                if max_lines is not None and n >= max_lines:
                    break
                ids.extend(self.dictionary.add_word(w) for w in line.split() + ["<eos>"])
        return ids


def batchify(data, batch_size, device=None, dtype=None):
    """(nbatch, batch_size) numpy array of ids; column j is the j-th contiguous chunk."""
    nbatch = len(data) // batch_size
    if nbatch == 0:
        raise ValueError(f"batchify: {len(data)} tokens are fewer than batch_size {batch_size}")
    ids = np.asarray(data[: nbatch * batch_size], dtype=np.float32 if dtype is None else dtype)
    return ids.reshape(batch_size, nbatch).T.copy()


def get_batch(batches, i, bptt, device=None, dtype=None):
    """(data (L, bs), target (L*bs,)) Tensors with L = min(bptt, nbatch - 1 - i)."""
    seq_len = min(bptt, len(batches) - 1 - i)
    if seq_len <= 0:
        raise IndexError(f"get_batch: start {i} leaves no target in {len(batches)} rows")
    data = batches[i: i + seq_len]
    target = batches[i + 1: i + 1 + seq_len].reshape(-1)
    kw = dict(device=device, dtype=dtype, requires_grad=False)
    return Tensor(np.ascontiguousarray(data), **kw), Tensor(np.ascontiguousarray(target), **kw)
