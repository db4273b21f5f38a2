"""Choosing transfer samples: Kennard–Stone and uniform random draws."""

from __future__ import annotations

import numpy as np


def kennard_stone(X: np.ndarray, k: int) -> np.ndarray:
    """Indices of k rows of X chosen by the Kennard–Stone algorithm (Euclidean distance).

    Starts from the two most distant rows, then repeatedly adds the row farthest from those
    chosen. Deterministic; ties go to the lowest index.
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    if not 0 < k <= n:
        raise ValueError(f"cannot choose {k} of {n} samples")
    sq = np.sum(X**2, axis=1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2 * X @ X.T, 0.0)
    if k == 1:
        return np.array([int(np.argmin(np.sum(dist, axis=1)))])
    i, j = np.unravel_index(int(np.argmax(dist)), dist.shape)
    chosen = [min(i, j), max(i, j)]
    nearest = np.minimum(dist[chosen[0]], dist[chosen[1]])
    nearest[chosen] = -1.0
    while len(chosen) < k:
        nxt = int(np.argmax(nearest))
        chosen.append(nxt)
        nearest = np.minimum(nearest, dist[nxt])
        nearest[chosen] = -1.0
    return np.asarray(chosen[:k])


def random_draw(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct indices out of n, uniformly at random."""
    if not 0 < k <= n:
        raise ValueError(f"cannot choose {k} of {n} samples")
    return np.sort(rng.choice(n, size=k, replace=False))
