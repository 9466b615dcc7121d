"""Built-in loss terms (kind ``loss``): regularisers and auxiliary objectives listed in a spec's ``losses``."""
