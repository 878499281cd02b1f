"""Turn the radiologist ROIs of the EMBED mammography dataset into patch shards."""
