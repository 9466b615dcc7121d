"""PatchGAN discriminator with spectral normalization (Miyato et al., "Spectral Normalization for Generative
Adversarial Networks", arXiv:1802.05957) in place of batch norm. The PatchGAN is pix2pix's (Isola et al.,
arXiv:1611.07004): with ``n_layers=3`` each logit sees a 70x70 patch, and a 256x256 image gives 30x30 logits.

Every conv, the last included, is wrapped in ``torch.nn.utils.parametrizations.spectral_norm`` (one power
iteration per training forward): each layer is 1-Lipschitz, which keeps D from overpowering G without a norm
layer, so D's output does not depend on the other images of the batch. The engine's N(0, 0.02) weight init
does not change such a layer: spectral norm divides the weight by its largest singular value anyway.
"""
from pydantic import Field
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

import zoo


class SnPatchOptions(zoo.Options):
    """PatchGAN with spectral normalization on every conv and no norm layers."""

    ndf: int = Field(64, ge=4, le=512, description="filters of the first conv; doubled per layer up to 8*ndf")
    n_layers: int = Field(3, ge=1, le=6, description="conv blocks after the first conv; 3 gives a 70x70 "
                                                     "receptive field")


def build(options: SnPatchOptions, context: zoo.BuildContext) -> nn.Module:
    """Lab (B, 3, H, W) -> logits (B, 1, H/2**n_layers - 2, W/2**n_layers - 2); no activation. H, W >= 3*2**n_layers
    (declared with register: zoo checks it before building)."""
    n = options.n_layers

    def conv(c_in, c_out, stride):  # k4 p1: (B, c_in, S, S) -> (B, c_out, S/2, S/2) or (B, c_out, S-1, S-1)
        return spectral_norm(nn.Conv2d(c_in, c_out, 4, stride, 1))

    channels = [options.ndf * 2 ** min(i, 3) for i in range(n + 1)]
    return nn.Sequential(
        conv(3, channels[0], 2), nn.LeakyReLU(0.2),  # (B, ndf, H/2, W/2)
        *(nn.Sequential(conv(channels[i], channels[i + 1], 1 if i == n - 1 else 2), nn.LeakyReLU(0.2))
          for i in range(n)),  # ..., (B, c, H/2**n - 1, W/2**n - 1)
        conv(channels[n], 1, 1),  # (B, 1, H/2**n - 2, W/2**n - 2)
    )


@zoo.hookimpl
def register_discriminators(register):
    # Declared, so zoo refuses a too small image before building and can lower n_layers to fit one.
    register("sn_patch", build, SnPatchOptions, min_image_size=lambda o: 3 * 2 ** o.n_layers, depth_option="n_layers",
             test_options=[{"ndf": 8, "n_layers": 2}])
