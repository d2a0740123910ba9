"""`croft serve`: the provisioning server. dnsmasq answers DHCP (or proxyDHCP) and TFTP; one
aiohttp process serves iPXE scripts, artifacts, metadata, the agent API and the admin API."""
