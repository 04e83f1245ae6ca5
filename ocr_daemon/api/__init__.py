"""The HTTP API and the web page: uploads become documents of a watch, read back by id."""
