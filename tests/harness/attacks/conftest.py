"""Fixtures the white-box attack tests share: the trained reduced FCN-8s and a small batch of real images."""

import pytest


@pytest.fixture(scope="module")
def model(trained_model):
    return trained_model("fcn8s-vgg16")  # reduced: BatchNorm and dropout, so the mode matters


@pytest.fixture(scope="module")
def batch(synthetic_val):
    # 32 x 32 crops (the smallest size the FCNs take) keep these tests fast.
    images, labels = synthetic_val.tensors(slice(0, 4))
    images, labels = images[..., :32, :32].contiguous(), labels[..., :32, :32].contiguous()
    # Saturated pixels: the [0, 1] projection must hold where the ε-ball leaves the range.
    images[0, :, :6, :6] = 0.0
    images[1, :, :6, :6] = 1.0
    return images, labels
