"""The embedded default's class colours stay apart in figures (notebook 06's legend, the prediction panels)."""
import itertools

import numpy as np

from prolab.datasets import load_class_names, palette


def _lab(rgb) -> np.ndarray:
    """sRGB (0-255) to CIELAB (D65), for colour differences as people see them."""
    c = np.asarray(rgb, float) / 255
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def test_every_pair_of_classes_differs_visibly():
    names, lab = load_class_names("synthetic_outdoor"), _lab(palette("synthetic_outdoor"))
    assert len(lab) == len(names)
    closest = min((float(np.linalg.norm(lab[i] - lab[j])), names[i], names[j])
                  for i, j in itertools.combinations(range(len(names)), 2))
    assert closest[0] >= 20, f"{closest[1]} and {closest[2]} are only Delta E {closest[0]:.1f} apart"
