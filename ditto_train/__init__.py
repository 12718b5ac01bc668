"""The Ditto recipe: character knowledge, dialogue simulation and SFT."""
