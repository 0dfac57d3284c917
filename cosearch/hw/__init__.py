"""Gemmini hardware model: configs (gemmini), workloads (workload), the analytical cost
model (cost_model) and its calibration (calibrate), the Timeloop backend (timeloop), and
LUTs with the fast arch coster (lut)."""
