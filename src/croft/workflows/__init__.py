"""Workflows: templates in the site's workflows/ folder, rendered per machine, and their state."""
