"""triumvir's agent: the trio program around the sans-IO protocol."""
