"""The deploy: delta transfer over SSH into a new generation, an atomic switch, unit handling."""
