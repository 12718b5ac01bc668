"""MT-Bench (FastChat ``llm_judge``) single-answer grading: the roleplay category and the full benchmark."""
