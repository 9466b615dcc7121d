"""LossWatch: the losses stay on the device between reads, and a NaN is reported at the step it happened."""
import math

import torch

from zoo.losswatch import LossWatch, NonFiniteLoss


def _losses(**values):
    return {k: torch.tensor(v) for k, v in values.items()}


def test_read_gives_the_last_step_and_nothing_bad_for_finite_losses():
    watch = LossWatch()
    assert watch.read() == ({}, None)
    watch.add(_losses(d_real=0.5, g_gan=2.0), 1)
    watch.add(_losses(d_real=0.25, g_gan=1.5), 2)
    assert watch.read() == ({"d_real": 0.25, "g_gan": 1.5}, None)


def test_the_first_non_finite_loss_of_the_window_is_reported_with_its_step_and_value():
    watch = LossWatch()
    watch.add(_losses(d_real=0.5, g_gan=2.0), 7)
    watch.add(_losses(d_real=0.5, g_gan=math.inf), 8)
    watch.add(_losses(d_real=math.nan, g_gan=math.nan), 9)
    watch.add(_losses(d_real=0.125, g_gan=0.375), 10)  # a later finite step does not hide it
    last, bad = watch.read()
    assert last == {"d_real": 0.125, "g_gan": 0.375}
    assert bad == NonFiniteLoss("g_gan", 8, math.inf)
    watch.add(_losses(d_real=0.125, g_gan=0.375), 11)
    assert watch.read()[1] is None  # each read starts a new window


def test_a_nan_before_a_change_of_loss_names_is_not_lost():
    watch = LossWatch()
    watch.add(_losses(g_pixel=math.nan), 3)  # pretraining stage
    watch.add(_losses(d_real=0.5, g_pixel=0.125), 4)  # GAN stage: other names
    last, bad = watch.read()
    assert last == {"d_real": 0.5, "g_pixel": 0.125}
    assert bad.name == "g_pixel" and bad.step == 3 and math.isnan(bad.value)
