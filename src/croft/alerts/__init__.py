"""The site's alerts: engine.py runs on the journal's collector (croft-alerts.service, made by
croft.systemd.alerts from alerts/*.toml)."""
