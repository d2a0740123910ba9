"""The site's own APT repository: packages/NAME.toml built into .debs, indexed, signed with the
site's key, and the apt source (with that key) every machine gets."""
