"""Using a model: predict, classify a catalogue, the results table, runs split into parts."""
