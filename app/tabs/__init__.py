"""One module per tab, each with build() (components) and wire() (events)."""
