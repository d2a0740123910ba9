"""The site: the repository that describes every machine (model.py), loaded and validated (load.py).

Import from the submodules: this package stays empty so that importing it costs nothing.
"""
