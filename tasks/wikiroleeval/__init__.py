"""WikiRoleEval (Lu et al., 2024): the Ditto paper's multi-turn role-play benchmark."""
