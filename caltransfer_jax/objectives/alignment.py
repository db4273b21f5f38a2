"""Sinkhorn divergence between instrument groups of z_chem over matched populations.

Aligning latent *distributions* across instruments is only right where the populations are the
same samples; across unpaired sources it would erase real chemical differences. The paired views
give exactly that: for instrument g, take every sample the batch measured on g; group g compares
those samples' z_chem on g (x) with the *same samples'* z_chem on their other instrument (y):

    L = Σ_g n_g · S_ε(x_g, y_g) / Σ_g n_g,  over groups with n_g ≥ min_group_size samples,

where S_ε is the debiased Sinkhorn divergence OT_ε(x, y) − ½OT_ε(x, x) − ½OT_ε(y, y) (ott-jax,
log-domain Sinkhorn, squared Euclidean cost). All groups run at once with static shapes: every
group sees all 2b (view, sample) points and its own weights (zero outside the group).

ε is relative to the cost: the three problems of a group share one cost scale, the weighted mean
cross cost Σ a_i b_j ‖x_i − y_j‖² (the points are divided by its square root). Sharing it keeps the
divergence a proper debiased one (ott's `scale_cost="mean"` would rescale the x–x and y–y costs
by their own, different means), and since it moves with z the term is invariant to the scale of
z, so shrinking the latent cloud does not lower it. (The seed's ε = 0.05 on costs ~300
underflowed to an identically zero term.)

Shapes: b batch, c z_chem, k instruments.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec
from jaxtyping import Array, Float, Int
from ott.geometry import pointcloud
from ott.tools import sinkhorn_divergence as ott_divergence


def _replicated(x: Array) -> Array:
    """x on every device when tracing under a mesh (`jax.set_mesh`): the Sinkhorn iterations on
    a few dozen points then run locally instead of exchanging partial sums every iteration."""
    if jax.sharding.get_abstract_mesh().empty:
        return x
    return jax.lax.with_sharding_constraint(x, PartitionSpec())


def sinkhorn_divergence(
    x: Float[Array, "n c"],
    y: Float[Array, "n c"],
    weights: Float[Array, " n"],
    epsilon: float,
    max_iterations: int,
    threshold: float,
) -> Float[Array, ""]:
    """Debiased Sinkhorn divergence between x and y carrying the same weights (summing to 1).

    Points with weight 0 are ignored (their gradient is 0). The cost is scaled by the weighted
    mean cross cost, so `epsilon` is relative to it.
    """
    cross = jnp.maximum(jnp.sum(x * x, -1)[:, None] + jnp.sum(y * y, -1)[None] - 2.0 * x @ y.T, 0.0)
    # Dividing the points by √scale divides the squared-Euclidean costs by scale. (Passing the
    # traced scale as ott's `scale_cost` leaks a tracer under vmap + grad: it is static there.)
    root = jnp.sqrt(jnp.maximum(weights @ cross @ weights, 1e-12))
    divergence, _ = ott_divergence.sinkhorn_divergence(
        pointcloud.PointCloud,
        x / root,
        y / root,
        a=weights,
        b=weights,
        epsilon=epsilon,
        scale_cost=1.0,
        solve_kwargs={
            "lse_mode": True,
            "max_iterations": max_iterations,
            "threshold": threshold,
        },
    )
    return divergence


def matched_group_weights(
    instrument: Int[Array, "b 2"], num_instruments: int, min_group_size: int
) -> tuple[Float[Array, "k n"], Float[Array, " k"]]:
    """Per-instrument group weights over the 2b (view, sample) points.

    Point p = v·b + i is view v of sample i; it belongs to group instrument[i, v], and its
    partner (the y point) is view 1 − v of the same sample.

    Returns:
        weights (k, 2b), uniform over each group's points (rows of empty or too small groups are
        0), and sizes (k,) the number of samples counted per group (0 for skipped groups).
    """
    own = jnp.concatenate([instrument[:, 0], instrument[:, 1]])
    members = (own[None, :] == jnp.arange(num_instruments)[:, None]).astype(jnp.float32)
    sizes = members.sum(-1)
    sizes = jnp.where(sizes >= min_group_size, sizes, 0.0)
    weights = members * (sizes > 0)[:, None] / jnp.maximum(sizes, 1.0)[:, None]
    return weights, sizes


def matched_sinkhorn_loss(
    z: Float[Array, "b 2 c"],
    instrument: Int[Array, "b 2"],
    num_instruments: int,
    *,
    epsilon: float,
    min_group_size: int,
    max_iterations: int,
    threshold: float,
) -> tuple[Float[Array, ""], Float[Array, " k"]]:
    """Size-weighted mean Sinkhorn divergence of the per-instrument matched groups.

    Args:
        z: (b, 2, c) z_chem of both views of every sample.
        instrument: (b, 2) instrument id of each view (the two differ).
        num_instruments: number of instrument ids (the group count).
        epsilon: entropic regularisation relative to the mean cross cost.
        min_group_size: smallest group (samples) that counts.
        max_iterations, threshold: Sinkhorn solver limits.

    Returns:
        The loss (0 if no group is large enough) and the number of samples counted per group
        (k,) (0 for skipped groups).
    """
    z, instrument = _replicated(z), _replicated(instrument)
    x = jnp.concatenate([z[:, 0], z[:, 1]])
    y = jnp.concatenate([z[:, 1], z[:, 0]])
    weights, sizes = matched_group_weights(instrument, num_instruments, min_group_size)

    def one(w):
        # An empty group gets uniform dummy weights (a well-posed problem) and is zeroed below.
        w = jnp.where(w.sum() > 0, w, jnp.full_like(w, 1.0 / w.shape[0]))
        return sinkhorn_divergence(x, y, w, epsilon, max_iterations, threshold)

    per_group = jnp.where(sizes > 0, jax.vmap(one)(weights), 0.0)
    loss = jnp.sum(sizes * per_group) / jnp.maximum(sizes.sum(), 1.0)
    return loss, sizes
