"""``python -m zoo`` (also what ``torchrun -m zoo`` runs)."""
from zoo.cli import entry

entry()
