"""The host side of a fleet: shipyard's runtime installed on each host, its agent reached over SSH, and
releases shipped there. shipyard/ssh/ owns the connections; this package decides what goes over them."""
