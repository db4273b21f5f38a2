"""Pre-LayerNorm Transformer encoder blocks with a key padding mask.

The attention projections are separate `nnx.Linear` modules named q_proj, k_proj, v_proj and
out_proj, so LoRA can target them by name. Padded tokens are masked as keys; their own outputs are
computed but never read.

Shapes: b batch, l tokens, d model width, h heads.
"""

from __future__ import annotations

import jax
from flax import nnx
from jaxtyping import Array, Bool, Float


class MultiHeadAttention(nnx.Module):
    """Multi-head scaled dot-product self-attention."""

    def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs):
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q_proj = nnx.Linear(d_model, d_model, rngs=rngs)
        self.k_proj = nnx.Linear(d_model, d_model, rngs=rngs)
        self.v_proj = nnx.Linear(d_model, d_model, rngs=rngs)
        self.out_proj = nnx.Linear(d_model, d_model, rngs=rngs)

    def __call__(
        self, x: Float[Array, "b l d"], token_mask: Bool[Array, "b l"]
    ) -> Float[Array, "b l d"]:
        """Attends from every token to the valid ones."""
        batch, length, width = x.shape

        def heads(t):
            return t.reshape(batch, length, self.num_heads, width // self.num_heads)

        out = jax.nn.dot_product_attention(
            heads(self.q_proj(x)),
            heads(self.k_proj(x)),
            heads(self.v_proj(x)),
            mask=token_mask[:, None, None, :],
        )
        return self.out_proj(out.reshape(batch, length, width))


class TransformerBlock(nnx.Module):
    """x + Dropout(MHA(LN(x))), then x + Dropout(FFN(LN(x))) with a GELU feed-forward."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float, *, rngs: nnx.Rngs):
        self.attn_norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.attn = MultiHeadAttention(d_model, num_heads, rngs=rngs)
        self.ffn_norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.ffn_in = nnx.Linear(d_model, d_ff, rngs=rngs)
        self.ffn_out = nnx.Linear(d_ff, d_model, rngs=rngs)
        self.attn_dropout = nnx.Dropout(dropout, rngs=rngs)
        self.ffn_dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(
        self, x: Float[Array, "b l d"], token_mask: Bool[Array, "b l"]
    ) -> Float[Array, "b l d"]:
        """Applies the block."""
        x = x + self.attn_dropout(self.attn(self.attn_norm(x), token_mask))
        hidden = jax.nn.gelu(self.ffn_in(self.ffn_norm(x)))
        return x + self.ffn_dropout(self.ffn_out(hidden))


class TransformerEncoder(nnx.Module):
    """A stack of pre-LN Transformer blocks followed by a LayerNorm."""

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        num_heads: int,
        d_ff: int,
        dropout: float,
        *,
        rngs: nnx.Rngs,
    ):
        self.blocks = nnx.List(
            [
                TransformerBlock(d_model, num_heads, d_ff, dropout, rngs=rngs)
                for _ in range(num_layers)
            ]
        )
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)

    def __call__(
        self, x: Float[Array, "b l d"], token_mask: Bool[Array, "b l"]
    ) -> Float[Array, "b l d"]:
        """Runs every block, then the final norm."""
        for block in self.blocks:
            x = block(x, token_mask)
        return self.norm(x)
