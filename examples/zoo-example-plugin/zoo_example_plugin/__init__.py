"""Example zoo plugin package: one component per module, each published in the entry-point group ``zoo``.

- :mod:`zoo_example_plugin.resnet9`: generator ``resnet9``, pix2pix's ResNet-9-blocks generator;
- :mod:`zoo_example_plugin.pixel`: discriminator ``pixel``, pix2pix's 1x1 PixelGAN;
- :mod:`zoo_example_plugin.sn_patch`: discriminator ``sn_patch``, a PatchGAN with spectral normalization;
- :mod:`zoo_example_plugin.hinge`: GAN loss ``hinge``.
"""
__version__ = "0.1.0"
