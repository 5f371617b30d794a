"""Input: safe image decoding, data sources and the decoded-pixel cache."""
