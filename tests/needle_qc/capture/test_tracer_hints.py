"""Trace errors that tell the user what to pass: a language model traced without batch_dims."""
import pytest

import needle_qc as qc
from needle_qc.errors import TraceError


def test_language_model_without_batch_dims_is_told_to_pass_batch_dims_1():
    model = qc.zoo.load_pretrained("lstm_lm")
    ids = qc.zoo.example_input("lstm_lm", 4)  # (seq_len, batch) token ids
    with pytest.raises(TraceError, match=r"pass batch_dims=1"):
        qc.trace(model, ids)
    graph = qc.trace(model, ids, batch_dims=qc.zoo.get("lstm_lm").input.batch_dim)
    assert graph.placeholders[0].meta["shape"][1] == "N"
