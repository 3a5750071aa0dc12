"""haqsim."""
