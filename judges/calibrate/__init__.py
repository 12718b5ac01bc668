"""``ditto-bench calibrate``: how much a replacement judge agrees with a reference judge, and what it does to
the numbers (MT-Bench against FastChat's published GPT-4 ratings; WikiRoleEval run against run)."""
