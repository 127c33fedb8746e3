"""Datasets: the files they come in (readers), grey pixels in [0, 1] split three ways (datasets), and
which likelihood scores which pixels (pixels)."""

from pyro_vae._moved import forward

# pyro_vae.data was the module now at pyro_vae.data.datasets: its names answer here until 0.3.0
__getattr__ = forward("pyro_vae.data", "pyro_vae.data.datasets", (
    "MNIST5K_TEST", "VALID_FRACTION", "DEBIAN_FASHION_MNIST", "BINARIZED_MNIST_URL", "BINARIZED_MNIST_SPLITS",
    "BINARIZED_MNIST_SIZES", "Dataset", "hold_out", "IDX_FILES", "IMAGE_SHAPE", "load_mnist",
    "load_fashion_mnist", "load_binarized_mnist", "load_mnist5k", "DATASETS", "load_dataset"))
