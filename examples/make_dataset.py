"""Regenerate examples/datasets/digits/: the held-out digits as 8-bit PNG files.

Needs scikit-learn and OpenCV (`pip install scikit-learn opencv-python-headless`):

    python examples/make_dataset.py

The split is the one examples/make_models.py holds out from training, so accuracy
measured on this dataset is test accuracy. One directory per class (`0` ... `9`), which
sort in class order; the matching preprocessing spec is examples/digits_preprocess.toml.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "datasets" / "digits"
SEED = 7


def digits():
    """Digits as 0-255 pixel images scaled to [0, 1], with a held-out test split."""
    # Imported here: the planted models in make_models.py need no scikit-learn.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = (data.images * (255.0 / 16.0)).round().astype(np.float32) / 255.0
    return train_test_split(images[..., None], data.target, test_size=0.2, random_state=SEED,
                            stratify=data.target)


def main() -> None:
    import cv2

    _, x_test, _, y_test = digits()
    for index, (image, label) in enumerate(zip(x_test, y_test)):
        directory = OUT / str(label)
        directory.mkdir(parents=True, exist_ok=True)
        pixels = np.round(image[..., 0] * 255.0).astype(np.uint8)
        cv2.imwrite(str(directory / f"{index:04d}.png"), pixels)
    print(f"{len(y_test)} images in {OUT}")


if __name__ == "__main__":
    main()
