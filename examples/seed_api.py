"""The original proposal's two API snippets, run on the pretrained zoo MLP and embedded MNIST.

Run: ``python examples/seed_api.py``. The snippets are kept as the proposal wrote them, with
three marked changes: the typo ``insert_obserserver`` is fixed (the old spelling is also an
alias); ``calibrate`` is given the observed model and the data loader (the snippet calls it
with the float model and no loader, although its own definition takes one); and a final
``quantization.convert`` turns the calibrated model into the int8 one.
"""
import numpy as np

from needle import quantization
from needle.data import DataLoader, NDArrayDataset, load_mnist_split
from needle_qc.tools import zoo
from needle_qc.tools.compare import deviation

model = zoo.load_pretrained("mlp")  # MLP 784-256-256-10 trained on embedded MNIST
X_train, y_train = load_mnist_split("train")
X_test, y_test = load_mnist_split("heldout")
dataloader = DataLoader(NDArrayDataset(X_train[:1024], y_train[:1024]), batch_size=128)

# ----- the proposal, case 1 ---------------------------------------------------------------
# case 1. quantizing weights only
quantized_model = model.quantize(data_type="int8")  # weight quantization
case1 = quantized_model


# ----- the proposal, case 2 ---------------------------------------------------------------
# case 2. quantizing weights and activation
def calibrate(model, dataloader):
    for batch in dataloader:
        _ = model(batch)  # internally gathers statistics
    return model


quantized_model = quantization.quantize(data_type="int8")  # a recipe (no model given)
quantized_model = quantization.insert_observer(model)  # changed: typo fixed
quantized_model = calibrate(quantized_model, dataloader)  # changed: observed model + loader
quantized_model = quantization.convert(quantized_model)  # added: observed -> int8
case2 = quantized_model


# ----- what they did ---------------------------------------------------------------------
def accuracy(fn):
    return float(np.mean(np.asarray(fn(X_test)).argmax(axis=1) == y_test))


def main():
    reference = np.asarray(model(_tensor(X_test)).numpy())
    print(f"float32: held-out accuracy {accuracy(lambda x: model(_tensor(x)).numpy()):.4f}")
    for title, qm in (("case 1: weight-only int8", case1),
                      ("case 2: static int8 (weights + activations)", case2)):
        out = np.asarray(qm(X_test))
        d = deviation(reference, out)
        print(f"\n{title}: {qm}")
        print(f"  held-out accuracy {accuracy(qm):.4f}; vs float32: SQNR {d['sqnr_db']:.1f} dB, "
              f"cosine {d['cosine']:.6f}, max abs {d['max_abs']:.4f}, "
              f"top-1 agreement {100 * d['top1_agreement']:.2f}%")
        print("  " + str(qm.memory_report()).replace("\n", "\n  "))
    print("\nper-node error of case 2 (local = the node alone, prop = the whole graph):")
    print(case2.compare([X_test[:500]]))


def _tensor(x):
    import needle as ndl

    return ndl.Tensor(x, device=model.parameters()[0].device)


if __name__ == "__main__":
    main()
