"""Sequence/layout steps: a constant's broadcast view is kept per batch size and still gives
the reference target's numbers when the batch changes between calls."""

import numpy as np

import needle_qc as qc


def test_constant_broadcast_kept_per_batch_gives_the_reference_numbers():
    name = "transformer_lm"
    model, entry = qc.zoo.load_pretrained(name), qc.zoo.get(name)
    g = qc.trace(model, qc.zoo.example_input(name, 2), batch_dims=entry.input.batch_dim)
    qc.run_passes(g, qc.FLOAT_PIPELINE)
    cm, ref = qc.compile(g), qc.compile(g, target="reference")
    row = cm.explain().row("const_bcast")
    assert "kept per batch size" in row["why"]
    for batch in (1, 3, 1, 2, 3):  # cached views for 1 and 3 are reused, never mixed up
        x = np.asarray(qc.zoo.example_input(name, batch, seed=batch), np.float32)
        got, want = cm(x), ref(x)
        got, want = [np.asarray(v[0] if isinstance(v, (list, tuple)) else v) for v in (got, want)]
        assert got.shape[0] == x.shape[0] * batch  # (T * N, vocab) logits
        np.testing.assert_array_equal(got, want)
