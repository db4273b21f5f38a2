"""Top-k mixture-of-experts feed-forward layer with static-shape dense dispatch.

Every expert runs on every token and the outputs are combined with gates that are zero outside
each token's top-k experts. Shapes never depend on the routing (so it jits and shards), no token
is ever dropped for lack of capacity, and unselected experts receive exactly zero gradient from a
token, as with sparse dispatch. The price is E/k times the expert FLOPs of sparse dispatch (2× at
4 experts top-2), a few per cent of this model's step on CPU (BENCHMARKS.md).

The load-balancing loss is Switch Transformer's E·Σ_i f_i·P_i: f_i is the fraction of routing
slots (token × k) that go to expert i and P_i the mean router probability of expert i, over
valid patch tokens only. It is 1 for perfectly uniform routing (its minimum when f = P) and E when
all tokens go to one expert. f carries no gradient; P does.

Experts are two-layer MLPs (GELU) or, optionally, two KAN layers (`kan.py`).

Shapes: b batch, l tokens, d model width, e experts, h expert hidden width.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Bool, Float

from caltransfer_jax.models.kan import KANExperts


def switch_balance_loss(
    router_probs: Float[Array, "t e"], selected: Float[Array, "t e"], weights: Float[Array, " t"]
) -> Float[Array, ""]:
    """Switch-style load-balance loss E·Σ_i f_i·P_i over weighted tokens.

    Args:
        router_probs: (t, e) full softmax of the router logits.
        selected: (t, e) 1 where an expert is among the token's top-k, else 0.
        weights: (t,) 1 for tokens that count, 0 for the rest.

    Returns:
        Scalar loss: 1 when routing is uniform (f_i = P_i = 1/E), up to E when every token goes
        to one expert with probability 1.
    """
    num_experts = router_probs.shape[-1]
    total = jnp.maximum(weights.sum(), 1.0)
    # f: share of the routing slots (token × k), a count, so it carries no gradient.
    slots = jnp.maximum((selected.sum(-1) * weights).sum(), 1.0)
    fraction = jax.lax.stop_gradient((selected * weights[:, None]).sum(0) / slots)
    mean_prob = (router_probs * weights[:, None]).sum(0) / total
    return num_experts * jnp.sum(fraction * mean_prob)


class MoE(nnx.Module):
    """Pre-norm residual MoE feed-forward: x + Dropout(Σ_e gate_e · Expert_e(LayerNorm(x)))."""

    def __init__(
        self,
        d_model: int,
        num_experts: int,
        top_k: int,
        d_expert: int,
        dropout: float,
        kan_grid_size: int | None = None,
        kan_spline_order: int | None = None,
        *,
        rngs: nnx.Rngs,
    ):
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be in [1, {num_experts}], got {top_k}")
        self.top_k = top_k
        self.num_experts = num_experts
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.router = nnx.Linear(d_model, num_experts, use_bias=False, rngs=rngs)
        self.use_kan = kan_grid_size is not None
        if self.use_kan:
            self.layer1 = KANExperts(
                num_experts, d_model, d_expert, kan_grid_size, kan_spline_order, rngs=rngs
            )
            self.layer2 = KANExperts(
                num_experts, d_expert, d_model, kan_grid_size, kan_spline_order, rngs=rngs
            )
        else:
            init = nnx.initializers.lecun_normal(in_axis=-2, out_axis=-1, batch_axis=(0,))
            self.w1 = nnx.Param(init(rngs.params(), (num_experts, d_model, d_expert)))
            self.b1 = nnx.Param(jnp.zeros((num_experts, d_expert)))
            self.w2 = nnx.Param(init(rngs.params(), (num_experts, d_expert, d_model)))
            self.b2 = nnx.Param(jnp.zeros((num_experts, d_model)))
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def _experts(self, h: Float[Array, "t d"]) -> Float[Array, "e t d"]:
        # Expert-major (e, t, ·) layouts make both products plain batched matmuls; a token-major
        # (t, e, ·) hidden made XLA transpose the largest activation of the layer.
        if self.use_kan:
            hidden = self.layer1(h, shared_input=True)
            return self.layer2(hidden, shared_input=False)
        hidden = jax.nn.gelu(jnp.einsum("td,edh->eth", h, self.w1[...]) + self.b1[...][:, None])
        return jnp.einsum("eth,ehd->etd", hidden, self.w2[...]) + self.b2[...][:, None]

    def __call__(
        self, x: Float[Array, "b l d"], balance_mask: Bool[Array, "b l"]
    ) -> tuple[Float[Array, "b l d"], Float[Array, ""]]:
        """Routes every token to its top-k experts.

        Args:
            x: (b, l, d) tokens.
            balance_mask: (b, l) tokens counted by the balance loss (valid patch tokens; the
                special tokens and padding are still transformed but not counted).

        Returns:
            The updated tokens (b, l, d) and the scalar balance loss.
        """
        batch, length, width = x.shape
        h = self.norm(x).reshape(batch * length, width)
        # Routing in float32: the top-k choice and the softmax are sensitive to rounding.
        logits = self.router(h).astype(jnp.float32)
        probs = jax.nn.softmax(logits, axis=-1)
        top_logits, top_index = jax.lax.top_k(logits, self.top_k)
        selected = jax.nn.one_hot(top_index, self.num_experts, dtype=jnp.float32).sum(1)  # (t,e)
        # Softmax over the k chosen logits, scattered back onto the expert axis.
        gates = jnp.einsum(
            "tk,tke->te",
            jax.nn.softmax(top_logits, axis=-1),
            jax.nn.one_hot(top_index, self.num_experts, dtype=jnp.float32),
        )
        out = jnp.einsum("te,etd->td", gates.astype(x.dtype), self._experts(h))
        loss = switch_balance_loss(probs, selected, balance_mask.reshape(-1).astype(jnp.float32))
        out = out.reshape(batch, length, width)
        return x + self.dropout(out), loss
