"""The spectral foundation model: embedding → BiMamba → MoE → Transformer → VIB → heads.

Built from the model config (`configs/model.py`); every field of it is read here. The encoder
pools [CLS] together with the mean over valid patch tokens (not [CLS] alone) into the
bottleneck, so the pooled code sees every token even before attention.

Shapes: b batch, l points, P = l / patch_size patches, T = P + 2 tokens, d model width,
c = z_chem, i = z_inst, k instruments, t targets.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import ml_collections
from flax import nnx
from jaxtyping import Array, Bool, Float, Int

from caltransfer_jax.models.embedding import NUM_SPECIAL_TOKENS, SpectralEmbedding, hide_points
from caltransfer_jax.models.fno import FNOTransferHead
from caltransfer_jax.models.heads import ReconstructionHead
from caltransfer_jax.models.mamba import MambaBackbone
from caltransfer_jax.models.moe import MoE
from caltransfer_jax.models.transformer import TransformerEncoder
from caltransfer_jax.models.vib import VariationalBottleneck

HEADS = ("reconstruction", "transfer")


def masked_mean(x: Float[Array, "b l d"], mask: Bool[Array, "b l"]) -> Float[Array, "b d"]:
    """Mean of x over the tokens where mask is True (zeros where none is)."""
    weights = mask[..., None].astype(x.dtype)
    return jnp.sum(x * weights, axis=1) / jnp.maximum(weights.sum(axis=1), 1.0)


class SpectralModel(nnx.Module):
    """Spectral foundation model for calibration transfer (see DESIGN.md, "Model")."""

    def __init__(self, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
        """Builds the model from `configs/model.py:get_config(...)`.

        Args:
            config: the model ConfigDict.
            rngs: parameter, dropout and noise (VIB sampling) streams; unnamed streams fall back
                to `default`.
        """
        d = config.d_model
        emb, mamba, moe = config.embedding, config.mamba, config.moe
        tr, vib, heads, fno = config.transformer, config.vib, config.heads, config.fno
        self.patch_size = emb.patch_size
        self.embedding = SpectralEmbedding(
            d,
            emb.patch_size,
            emb.wavelet,
            emb.wavelet_levels,
            emb.num_modalities,
            emb.pe_frequencies,
            tuple(emb.wavenumber_range),
            config.dropout,
            rngs=rngs,
        )
        self.backbone = MambaBackbone(
            mamba.num_layers,
            d,
            d_state=mamba.d_state,
            d_conv=mamba.d_conv,
            expand=mamba.expand,
            dt_rank=mamba.dt_rank,
            dt_min=mamba.dt_min,
            dt_max=mamba.dt_max,
            discretization=mamba.discretization,
            scan_impl=mamba.scan_impl,
            dropout=config.dropout,
            rngs=rngs,
        )
        kan = moe.get("kan")
        self.moe = MoE(
            d,
            moe.num_experts,
            moe.top_k,
            moe.d_expert,
            config.dropout,
            kan_grid_size=kan.grid_size if kan else None,
            kan_spline_order=kan.spline_order if kan else None,
            rngs=rngs,
        )
        self.transformer = TransformerEncoder(
            tr.num_layers, d, tr.num_heads, tr.d_ff, config.dropout, rngs=rngs
        )
        self.vib = VariationalBottleneck(
            2 * d,
            vib.z_chem,
            vib.z_inst,
            vib.num_instruments,
            vib.classifier_hidden,
            vib.grl_scale,
            rngs=rngs,
        )
        self.reconstruction_head = ReconstructionHead(
            d, vib.z_chem + vib.z_inst, heads.reconstruction_hidden, emb.patch_size, rngs=rngs
        )
        self.transfer_head = FNOTransferHead(
            d, fno.width, fno.modes, fno.num_layers, emb.patch_size, rngs=rngs
        )

    def encode(
        self,
        values: Float[Array, "b l"],
        wavenumber: Float[Array, "b l"],
        valid: Bool[Array, "b l"],
        modality: Int[Array, " b"],
        hidden: Bool[Array, "b l"] | None = None,
    ) -> dict[str, Array]:
        """Runs the encoder and the bottleneck.

        Args:
            values: (b, l) intensities; l must be a multiple of the patch size.
            wavenumber: (b, l) axis positions in cm⁻¹.
            valid: (b, l) True for real points, False for padding.
            modality: (b,) index into `caltransfer_jax.data.spectra.MODALITIES`.
            hidden: (b, l) points hidden for masked pretraining, or None. No output depends on a
                hidden point's value.

        Returns:
            tokens (b, T, d), token_mask (b, T), pooled (b, 2d), moe_balance_loss (scalar), and
            the VIB outputs: z_chem (b, c), z_inst (b, i), chem_mean, chem_logvar, inst_mean,
            inst_logvar, kl_chem (b,), kl_inst (b,), inst_logits (b, k), adv_logits (b, k).
        """
        tokens, token_mask = self.embedding(values, wavenumber, valid, modality, hidden)
        tokens = self.backbone(tokens, token_mask)
        patch_mask = token_mask.at[:, :NUM_SPECIAL_TOKENS].set(False)
        tokens, balance_loss = self.moe(tokens, patch_mask)
        tokens = self.transformer(tokens, token_mask)
        pooled = jnp.concatenate([tokens[:, 0], masked_mean(tokens, patch_mask)], axis=-1)
        return {
            "tokens": tokens,
            "token_mask": token_mask,
            "pooled": pooled,
            "moe_balance_loss": balance_loss,
            **self.vib(pooled),
        }

    def __call__(
        self,
        values: Float[Array, "b l"],
        wavenumber: Float[Array, "b l"],
        valid: Bool[Array, "b l"],
        modality: Int[Array, " b"],
        hidden: Bool[Array, "b l"] | None = None,
        heads: Sequence[str] = HEADS,
    ) -> dict[str, Array]:
        """Encodes and runs the requested heads.

        Args:
            values, wavenumber, valid, modality, hidden: as in `encode`.
            heads: any of "reconstruction", "transfer" (all by default).

        Returns:
            `encode`'s dict plus, per requested head: reconstruction (b, l) predicted values at
            every point (train on hidden points only), transfer
            (b, l) the spectrum mapped to the master instrument on the same grid.
        """
        unknown = set(heads) - set(HEADS)
        if unknown:
            raise ValueError(f"unknown heads {sorted(unknown)}; expected a subset of {HEADS}")
        out = self.encode(values, wavenumber, valid, modality, hidden)
        patch_tokens = out["tokens"][:, NUM_SPECIAL_TOKENS:]
        if "reconstruction" in heads:
            latent = jnp.concatenate([out["z_chem"], out["z_inst"]], axis=-1)
            out["reconstruction"] = self.reconstruction_head(patch_tokens, latent)
        if "transfer" in heads:
            visible, hidden_points = hide_points(values, valid, hidden)
            observed = valid & ~hidden_points
            patch_mask = out["token_mask"][:, NUM_SPECIAL_TOKENS:]
            out["transfer"] = self.transfer_head(patch_tokens, patch_mask, visible, observed)
        return out


def build_model(config: ml_collections.ConfigDict, seed: int = 0) -> SpectralModel:
    """Builds a `SpectralModel` with parameter, dropout and noise streams derived from `seed`."""
    return SpectralModel(config, rngs=nnx.Rngs(params=seed, dropout=seed + 1, noise=seed + 2))
