"""croft's provisioning agent: runs in the netboot environment, asks croft serve for its
workflow's actions one by one, runs them under their timeouts and reports.

Standard library only (it runs in a small in-memory system), and imports within the package are
relative: the agent overlay installs it as the package croft_agent.
"""
