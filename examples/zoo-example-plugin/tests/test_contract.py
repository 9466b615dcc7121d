"""Every component of this package keeps zoo's plugin contract (zoo.testing)."""
import pytest

import zoo.testing

COMPONENTS = [
    ("generator", "resnet9", [{"ngf": 8, "n_blocks": 2}, {"ngf": 8, "n_blocks": 1, "norm": "instance", "dropout": 0}]),
    ("discriminator", "pixel", [{"ndf": 8}, {"ndf": 8, "norm": "none"}]),
    ("discriminator", "sn_patch", [{"ndf": 8, "n_layers": 2}]),
]


@pytest.mark.parametrize("kind,name,option_sets", COMPONENTS, ids=[c[1] for c in COMPONENTS])
def test_contract(kind, name, option_sets):
    zoo.testing.check_component(kind, name, image_size=32, option_sets=option_sets)
