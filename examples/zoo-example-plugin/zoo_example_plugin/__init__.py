"""Example zoo plugin package: one component per module, each published in the entry-point group ``zoo``.

- :mod:`zoo_example_plugin.resnet9`: generator ``resnet9``, pix2pix's ResNet-9-blocks generator;
- :mod:`zoo_example_plugin.pixel`: discriminator ``pixel``, pix2pix's 1x1 PixelGAN;
- :mod:`zoo_example_plugin.sn_patch`: discriminator ``sn_patch``, a PatchGAN with spectral normalization;

(Its former ``hinge`` loss is now zoo's built-in ``hinge``, in the asymmetric form contract 2 makes possible.)
"""
__version__ = "0.1.0"
