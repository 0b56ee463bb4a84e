"""One module per command (or pair of commands); ``stackbuild.cli`` loads each on first use."""
