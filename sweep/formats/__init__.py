"""Readers (and writers) of the file formats users hand the tool, each the trust boundary
for its format."""
