"""Values: the environment snapshot, versions, arches, wheel variants and their JSON codec."""
