"""Data on disk and the input pipeline: files, fields of view and crops, image stores, batches."""
