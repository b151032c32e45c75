"""The VQGAN loader against the reference taming-transformers code on a tiny random VQGAN."""

from __future__ import annotations

import argparse

import pytest
import torch
import yaml
from torch import nn

from dassl.utils import UserInputError, load_checkpoint
from datafree.generators import load_vqgan
from datafree.vqgan import VQGANError

DDCONFIG = {
    "double_z": False,
    "z_channels": 8,
    "resolution": 16,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 32,
    "ch_mult": [1, 2],
    "num_res_blocks": 1,
    "attn_resolutions": [8],
    "dropout": 0.0,
}
EMBED_DIM, N_EMBED = 4, 12


class TamingVQModel(nn.Module):
    """taming.models.vqgan.VQModel's modules (its Lightning wrapper is not needed)."""

    def __init__(self) -> None:
        super().__init__()
        from taming.modules.diffusionmodules.model import Decoder, Encoder
        from taming.modules.vqvae.quantize import VectorQuantizer

        self.encoder = Encoder(**DDCONFIG)
        self.decoder = Decoder(**DDCONFIG)
        self.quantize = VectorQuantizer(N_EMBED, EMBED_DIM, beta=0.25)
        self.quant_conv = nn.Conv2d(DDCONFIG["z_channels"], EMBED_DIM, 1)
        self.post_quant_conv = nn.Conv2d(EMBED_DIM, DDCONFIG["z_channels"], 1)
        # stands in for the perceptual + discriminator loss a real checkpoint carries
        self.loss = nn.ModuleDict({"discriminator": nn.Conv2d(3, 4, 3)})

    def decode(self, quant: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(quant))


@pytest.fixture(scope="module")
def tiny_vqgan(tmp_path_factory):
    torch.manual_seed(0)
    ref = TamingVQModel().eval()
    with torch.no_grad():  # non-trivial norms and biases so that every key matters
        for name, p in ref.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.normal_(0, 0.05)
    d = tmp_path_factory.mktemp("vqgan")
    cfg = {
        "model": {
            "base_learning_rate": 4.5e-6,
            "target": "taming.models.vqgan.VQModel",
            "params": {
                "embed_dim": EMBED_DIM,
                "n_embed": N_EMBED,
                "ddconfig": DDCONFIG,
                "lossconfig": {
                    "target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator"
                },
            },
        }
    }
    (d / "model.yaml").write_text(yaml.safe_dump(cfg))
    ckpt = {  # Lightning layout; the Namespace is a pickled non-tensor object as in old files
        "epoch": 3,
        "global_step": 1000,
        "pytorch-lightning_version": "1.0.8",
        "state_dict": ref.state_dict(),
        "hparams": argparse.Namespace(lr=4.5e-6),
        "optimizer_states": [],
        "lr_schedulers": [],
    }
    torch.save(ckpt, d / "last.ckpt")
    return ref, str(d / "model.yaml"), str(d / "last.ckpt")


def test_decode_latent_equals_reference(tiny_vqgan):
    ref, cfg, ckpt = tiny_vqgan
    model = load_vqgan(cfg, ckpt)
    assert model.latent_shape == (EMBED_DIM, 8, 8)
    z = torch.randn(2, EMBED_DIM, 8, 8)
    with torch.no_grad():
        expected = ((ref.decode(ref.quantize(z)[0]) + 1) / 2).clamp(0, 1)
        got = model.decode_latent(z)
    assert got.shape == (2, 3, 16, 16)
    assert 0.05 < got.std() and 0 < (expected > 0).float().mean() < 1  # not degenerate
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # the encoder is converted too (a strict load covers every key)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            model.vq.quant_conv(model.vq.encoder(x)),
            ref.quant_conv(ref.encoder(x)),
            atol=1e-5,
            rtol=1e-5,
        )


def test_straight_through_gradient(tiny_vqgan):
    _, cfg, ckpt = tiny_vqgan
    model = load_vqgan(cfg, ckpt)
    z = torch.randn(1, EMBED_DIM, 8, 8, requires_grad=True)
    model.decode_latent(z, clamp=False).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_bad_vqgan_inputs(tiny_vqgan, tmp_path):
    _, cfg, ckpt = tiny_vqgan
    with pytest.raises(UserInputError, match="checkpoint not found"):
        load_vqgan(cfg, str(tmp_path / "missing.ckpt"))
    with pytest.raises(UserInputError, match="config not found"):
        load_vqgan(str(tmp_path / "missing.yaml"), ckpt)
    sd = load_checkpoint(ckpt, legacy=True)["state_dict"]
    del sd["decoder.conv_out.weight"]
    torch.save({"state_dict": sd}, tmp_path / "broken.ckpt")
    with pytest.raises(VQGANError, match="missing .*decoder.conv_out.weight"):
        load_vqgan(cfg, str(tmp_path / "broken.ckpt"))


def test_vqgan_generator_in_a_synthesis_step(tiny_vqgan):
    from datafree.generators import VQGANGenerator
    from datafree.synthesis import Cutouts, Synthesizer
    from datafree.teacher import load_teacher

    _, cfg, ckpt = tiny_vqgan
    gen = VQGANGenerator(load_vqgan(cfg, ckpt))
    (z,) = gen.init_params([5, 6])
    (z6,) = gen.init_params([6])
    torch.testing.assert_close(z[1:], z6)  # seeded per image
    book = gen.decoder.codebook
    dist = torch.cdist(z.detach().permute(0, 2, 3, 1).reshape(-1, EMBED_DIM), book.detach())
    assert dist.min(dim=1).values.max() < 1e-4  # every latent starts at a codebook entry
    teacher = load_teacher("toy-teacher", ["red circle", "blue square"])
    synth = Synthesizer(teacher, gen, Cutouts(2, 32), steps=2, lr=0.1, range_weight=1.0)
    out = synth.run(teacher.class_vectors, torch.tensor([0, 1]), [5, 6], batch_seed=0)
    assert out.images.shape == (2, 16, 16, 3) and out.images.dtype.name == "uint8"
    assert len(out.probs) == 2 and all(0 < p < 1 for p in out.probs)
