"""The national catalog of health units (CLUES) and the nearest-unit lookup."""
