"""needle.nn modules against numpy and torch (2.13, CPU) on every device."""
import numpy as np
import pytest
import torch

import needle as ndl
import needle.nn as nn
from tests.devices import DEVICES

RTOL, ATOL = 1e-4, 1e-4


def _t(x, device, requires_grad=True):
    return ndl.Tensor(np.asarray(x, np.float32), device=device, requires_grad=requires_grad)


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _close(a, b, rtol=RTOL, atol=ATOL):
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
    np.testing.assert_allclose(a.numpy(), b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("device", DEVICES)
def test_linear_init_order_shapes_and_forward(device):
    np.random.seed(0)
    b_w = np.sqrt(2) * np.sqrt(3 / 5)
    w = np.random.rand(5, 3).astype(np.float32) * 2 * b_w - b_w
    b_b = np.sqrt(2) * np.sqrt(3 / 3)
    b = (np.random.rand(3, 1).astype(np.float32) * 2 * b_b - b_b).reshape(1, 3)
    np.random.seed(0)
    layer = nn.Linear(5, 3, device=device)
    assert layer.weight.shape == (5, 3) and layer.bias.shape == (1, 3)
    np.testing.assert_allclose(layer.weight.numpy(), w, rtol=1e-5)
    np.testing.assert_allclose(layer.bias.numpy(), b, rtol=1e-5)
    x = _rand(np.random.default_rng(1), 4, 5)
    _close(layer(_t(x, device)), x @ w + b)
    x3 = _rand(np.random.default_rng(2), 2, 4, 5)
    _close(layer(_t(x3, device)), x3 @ w + b)


@pytest.mark.parametrize("device", DEVICES)
def test_activations_flatten_identity_residual(device):
    x = _rand(np.random.default_rng(0), 2, 3, 4)
    xt = _t(x, device)
    _close(nn.ReLU()(xt), np.maximum(x, 0))
    _close(nn.Tanh()(xt), np.tanh(x))
    _close(nn.Sigmoid()(xt), 1 / (1 + np.exp(-x)))
    _close(nn.Flatten()(xt), x.reshape(2, 12))
    _close(nn.Identity()(xt), x)
    _close(nn.Residual(nn.ReLU())(xt), np.maximum(x, 0) + x)
    seq = nn.Sequential(nn.ReLU(), nn.Flatten())
    _close(seq(xt), np.maximum(x, 0).reshape(2, 12))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("label_dtype", ["float32", "int32"])
def test_softmax_loss_matches_torch_value_and_grad(device, label_dtype):
    rng = np.random.default_rng(0)
    logits, y = _rand(rng, 6, 4) * 3, np.array([0, 3, 1, 2, 3, 0])
    z = _t(logits, device)
    loss = nn.SoftmaxLoss()(z, ndl.Tensor(y, device=device, dtype=label_dtype))
    loss.backward()
    zt = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(zt, torch.tensor(y))
    ref.backward()
    _close(loss, ref)
    _close(z.grad, zt.grad)


def test_softmax_loss_rejects_bad_labels():
    z = _t(np.zeros((2, 3)), ndl.cpu_numpy())
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        nn.SoftmaxLoss()(z, ndl.Tensor(np.array([0, 5], np.float32)))
    with pytest.raises(ValueError, match=r"\(2,\)"):
        nn.SoftmaxLoss()(z, ndl.Tensor(np.array([0, 1, 2], np.float32)))


@pytest.mark.parametrize("device", DEVICES)
def test_batchnorm1d_train_eval_running_stats(device):
    x = _rand(np.random.default_rng(0), 8, 3) * 2 + 1
    bn = nn.BatchNorm1d(3, momentum=0.2, device=device)
    xt = _t(x, device)
    y = bn(xt)
    mean, var = x.mean(0), x.var(0)
    _close(y, (x - mean) / np.sqrt(var + 1e-5))
    # biased variance in the running estimate, as the hw2 goldens
    _close(bn.running_mean, 0.2 * mean)
    _close(bn.running_var, 0.8 + 0.2 * var)
    (y * y).sum().backward()
    xr = torch.tensor(x, requires_grad=True)
    yr = torch.nn.functional.batch_norm(xr, None, None, training=True, eps=1e-5)
    (yr * yr).sum().backward()
    _close(xt.grad, xr.grad, atol=1e-3)
    bn.eval()
    _close(bn(_t(x, device)), (x - 0.2 * mean) / np.sqrt(0.8 + 0.2 * var + 1e-5))


@pytest.mark.parametrize("device", DEVICES)
def test_batchnorm2d_matches_torch_nchw(device):
    x = _rand(np.random.default_rng(1), 2, 3, 4, 5)
    bn = nn.BatchNorm2d(3, device=device)
    ref = torch.nn.functional.batch_norm(torch.tensor(x), None, None, training=True, eps=1e-5)
    _close(bn(_t(x, device)), ref)
    _close(bn.running_mean, 0.1 * x.mean(axis=(0, 2, 3)))


@pytest.mark.parametrize("device", DEVICES)
def test_layernorm1d_matches_torch_value_and_grad(device):
    x = _rand(np.random.default_rng(2), 5, 6) * 3
    ln = nn.LayerNorm1d(6, device=device)
    xt = _t(x, device)
    y = ln(xt)
    (y * y * y).sum().backward()
    xr = torch.tensor(x, requires_grad=True)
    yr = torch.nn.functional.layer_norm(xr, (6,), eps=1e-5)
    (yr ** 3).sum().backward()
    _close(y, yr)
    _close(xt.grad, xr.grad, atol=1e-3)
    x3 = _rand(np.random.default_rng(3), 2, 3, 6)
    _close(ln(_t(x3, device)), torch.nn.functional.layer_norm(torch.tensor(x3), (6,)))


@pytest.mark.parametrize("device", DEVICES)
def test_dropout_train_mask_scale_and_eval_identity(device):
    x = np.ones((50, 40), np.float32)
    drop = nn.Dropout(0.25)
    np.random.seed(7)
    keep = (np.random.rand(50, 40) <= 0.75).astype(np.float32)
    np.random.seed(7)
    _close(drop(_t(x, device)), keep / 0.75)
    drop.eval()
    _close(drop(_t(x, device)), x)
    with pytest.raises(ValueError, match="Dropout"):
        nn.Dropout(1.5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("k,stride", [(3, 1), (3, 2), (1, 1), (5, 2)])
def test_conv_matches_torch_nchw(device, k, stride):
    rng = np.random.default_rng(k * 10 + stride)
    x = _rand(rng, 2, 3, 9, 9)
    conv = nn.Conv(3, 4, k, stride=stride, device=device)
    xt = _t(x, device)
    y = conv(xt)
    y.sum().backward()
    w = torch.tensor(conv.weight.numpy().transpose(3, 2, 0, 1), requires_grad=True)
    b = torch.tensor(conv.bias.numpy(), requires_grad=True)
    xr = torch.tensor(x, requires_grad=True)
    yr = torch.nn.functional.conv2d(xr, w, b, stride=stride, padding=k // 2)
    yr.sum().backward()
    assert y.shape == tuple(yr.shape)
    _close(y, yr)
    _close(xt.grad, xr.grad)
    _close(conv.weight.grad, w.grad.numpy().transpose(2, 3, 1, 0), atol=1e-3)
    _close(conv.bias.grad, b.grad)


def _torch_rnn(module, cells, kind):
    ref = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM}[kind](
        module.input_size, module.hidden_size, module.num_layers)
    with torch.no_grad():
        for k, cell in enumerate(cells):
            getattr(ref, f"weight_ih_l{k}").copy_(torch.tensor(cell.W_ih.numpy().T))
            getattr(ref, f"weight_hh_l{k}").copy_(torch.tensor(cell.W_hh.numpy().T))
            getattr(ref, f"bias_ih_l{k}").copy_(torch.tensor(cell.bias_ih.numpy()))
            getattr(ref, f"bias_hh_l{k}").copy_(torch.tensor(cell.bias_hh.numpy()))
    return ref


@pytest.mark.parametrize("device", DEVICES)
def test_rnn_matches_torch(device):
    rng = np.random.default_rng(4)
    x, h0 = _rand(rng, 5, 3, 4), _rand(rng, 2, 3, 6)
    rnn = nn.RNN(4, 6, num_layers=2, device=device)
    out, h_n = rnn(_t(x, device), _t(h0, device))
    ref_out, ref_h = _torch_rnn(rnn, rnn.rnn_cells, "rnn")(torch.tensor(x), torch.tensor(h0))
    _close(out, ref_out)
    _close(h_n, ref_h)
    cell = nn.RNNCell(4, 6, nonlinearity="relu", device=device)
    _close(cell(_t(x[0], device)),
           np.maximum(x[0] @ cell.W_ih.numpy() + cell.bias_ih.numpy() + cell.bias_hh.numpy(), 0))


@pytest.mark.parametrize("device", DEVICES)
def test_lstm_matches_torch_forward_and_grads(device):
    rng = np.random.default_rng(5)
    x = _rand(rng, 4, 2, 3)
    h0, c0 = _rand(rng, 2, 2, 5), _rand(rng, 2, 2, 5)
    lstm = nn.LSTM(3, 5, num_layers=2, device=device)
    out, (h_n, c_n) = lstm(_t(x, device), (_t(h0, device), _t(c0, device)))
    (out.sum() + (c_n * c_n).sum()).backward()
    ref = _torch_rnn(lstm, lstm.lstm_cells, "lstm")
    r_out, (r_h, r_c) = ref(torch.tensor(x), (torch.tensor(h0), torch.tensor(c0)))
    (r_out.sum() + (r_c * r_c).sum()).backward()
    for a, b in [(out, r_out), (h_n, r_h), (c_n, r_c)]:
        _close(a, b)
    _close(lstm.lstm_cells[0].W_ih.grad, ref.weight_ih_l0.grad.numpy().T, atol=1e-3)
    _close(lstm.lstm_cells[1].bias_hh.grad, ref.bias_hh_l1.grad, atol=1e-3)
    out0, _ = lstm(_t(x, device))
    assert out0.shape == (4, 2, 5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("id_dtype", ["float32", "int32"])
def test_embedding_looks_up_rows(device, id_dtype):
    emb = nn.Embedding(7, 3, device=device)
    ids = np.array([[1, 6], [0, 1], [5, 5]])
    out = emb(ndl.Tensor(ids, device=device, dtype=id_dtype))
    _close(out, emb.weight.numpy()[ids])
    with pytest.raises(ValueError, match=r"\[0, 7\)"):
        emb(ndl.Tensor(np.array([[7]]), device=device, dtype=id_dtype))


def _torch_attention(q, k, v, causal):
    return torch.nn.functional.scaled_dot_product_attention(
        torch.tensor(q), torch.tensor(k), torch.tensor(v), is_causal=causal)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("causal", [False, True])
def test_multihead_attention_matches_torch(device, causal):
    rng = np.random.default_rng(6)
    q, k, v = (_rand(rng, 2, 3, 5, 4) for _ in range(3))
    mha = nn.MultiHeadAttention(causal=causal, device=device)
    out, probs = mha(_t(q, device), _t(k, device), _t(v, device))
    _close(out, _torch_attention(q, k, v, causal))
    np.testing.assert_allclose(probs.numpy().sum(-1), 1.0, rtol=1e-5)
    if causal:
        assert np.all(probs.numpy()[..., 0, 1:] == 0)


def test_causal_mask_is_bottom_right_aligned():
    mask = nn.MultiHeadAttention().create_causal_mask(2, 4, None)
    assert mask.shape == (1, 1, 2, 4)
    assert np.array_equal(mask[0, 0] < 0, [[0, 0, 0, 1], [0, 0, 0, 0]])


def _layer_norm(x):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_attention_layer_matches_numpy(device):
    rng = np.random.default_rng(7)
    x = _rand(rng, 2, 5, 6)
    layer = nn.AttentionLayer(6, 2, 3, causal=True, device=device)
    y = layer(_t(x, device))
    n = _layer_norm(x)

    def heads(w):
        return (n @ w.numpy()).reshape(2, 5, 2, 3).transpose(0, 2, 1, 3)

    att = _torch_attention(heads(layer.q_projection.weight), heads(layer.k_projection.weight),
                           heads(layer.v_projection.weight), True).numpy()
    merged = att.transpose(0, 2, 1, 3).reshape(2, 5, 6)
    _close(y, merged @ layer.out_projection.weight.numpy())


@pytest.mark.parametrize("device", DEVICES)
def test_transformer_shapes_and_backward(device):
    np.random.seed(0)
    model = nn.Transformer(8, 16, 2, num_head=2, dim_head=4, dropout=0.1, device=device,
                           sequence_len=10)
    x = _t(_rand(np.random.default_rng(8), 6, 3, 8), device)
    out, state = model(x)
    assert out.shape == (6, 3, 8) and state.shape == (6, 3, 8)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert x.grad.shape == (6, 3, 8)
    with pytest.raises(ValueError, match="sequence_len"):
        model(_t(np.zeros((11, 1, 8)), device))
