"""Effects: build, fetch, install, smoke-test, write wheelhouses and indexes."""
