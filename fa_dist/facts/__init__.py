"""Facts: observe the target interpreter and the host; never raise on what cannot be seen, never decide."""
