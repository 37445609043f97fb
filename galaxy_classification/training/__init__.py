"""Training: the plan, the loop, distribution over devices and machines, calibration, the whole run."""
